"""Constants shared by every stage: one place each."""

SAMPLE_RATE = 16000
"""Audio sample rate in Hz expected by every model (LibriSpeech, WSJ, TIMIT, the embedded corpus)."""

FRAME_STRIDE = 160
"""Samples per feature frame: the conv encoder's total stride, 10 ms at 16 kHz."""

FRAME_RATE = SAMPLE_RATE // FRAME_STRIDE
"""Frames (and unit tokens) per second: 100 Hz."""

LARGE_ENCODER = "[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), (512, 1, 1), (512, 1, 1), (512, 1, 1)]"
"""The vq-wav2vec encoder's conv layers ``[(dim, kernel, stride), ...]`` (the paper's and the
default): the manifest checks take its receptive field (465 samples) as the shortest usable file."""

WORD_BOUNDARY = "|"
"""Word separator in letter targets (fairseq's `.ltr` convention, also the CTC silence token)."""

SPLITS = ("train", "valid", "test")
"""The labeled splits of a prepared corpus (every layout of ``manifests``, the embedded corpus)."""

EVAL_SPLITS = ("valid", "test")
"""The splits decoded and scored: settings are chosen on the first, reported on both."""

PRETRAIN_SPLIT = "pretrain"
"""The embedded corpus's split for the self-supervised stages when it has unlabeled audio
(``manifests.synth --unlabeled-hours``): train's audio and the unlabeled hours."""
