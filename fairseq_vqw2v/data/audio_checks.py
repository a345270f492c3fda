"""Per-file audio checks for manifests: is a file readable, long enough, 16 kHz mono and finite."""

from typing import Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from fairseq_vqw2v.constants import SAMPLE_RATE

# reading whole files in blocks bounds memory on long recordings
_CHECK_BLOCK = 1 << 20

REASONS = (
    "unreadable",
    "empty",
    "too short",
    "wrong sample rate",
    "multi-channel",
    "non-finite samples",
)
"""Every reason :func:`check_audio` can give, in the order the checks run."""


def check_audio(
    path: str, min_samples: int, sample_rate: int = SAMPLE_RATE
) -> Tuple[int, Optional[str]]:
    """Reads a whole audio file and returns ``(num_samples, reason)``; ``reason`` is ``None`` for a
    usable file, else one of :data:`REASONS`."""
    try:
        info = sf.info(path)
    except Exception:  # soundfile raises RuntimeError, LibsndfileError or OSError
        return 0, "unreadable"
    frames = info.frames
    if frames == 0:
        return 0, "empty"
    if frames < min_samples:
        return frames, "too short"
    if info.samplerate != sample_rate:
        return frames, "wrong sample rate"
    if info.channels != 1:
        return frames, "multi-channel"
    try:
        for block in sf.blocks(path, blocksize=_CHECK_BLOCK, dtype="float32"):
            if not np.isfinite(block).all():
                return frames, "non-finite samples"
    except Exception:
        return frames, "unreadable"
    return frames, None


def duration_summary(num_samples: Sequence[int], sample_rate: int = SAMPLE_RATE) -> str:
    """``"12 files, 0.042 h"``: for one-line summaries."""
    return f"{len(num_samples)} files, {sum(num_samples) / sample_rate / 3600:.3f} h"
