"""Helpers for the pretraining tests: a small structured synthetic corpus and fairseq-train runs."""

import json
import os
import sys

import numpy as np
import soundfile as sf

from fairseq_vqw2v.constants import SAMPLE_RATE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "fairseq_vqw2v")
BIN = os.path.dirname(sys.executable)

# a toy phone inventory: (first, second formant) in Hz; utterances are sequences of these
PHONES = [(300, 870), (270, 2290), (730, 1090), (530, 1840), (570, 840), (440, 1020), (660, 1720)]


def synth_utterance(rng, seconds):
    """Speech-like audio: 50-150 ms 'phones' of two formant sines with a pitch buzz, plus noise."""
    pieces, total = [], int(seconds * SAMPLE_RATE)
    while sum(len(p) for p in pieces) < total:
        f1, f2 = PHONES[rng.integers(len(PHONES))]
        n = int(rng.uniform(0.05, 0.15) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        pitch = rng.uniform(100, 180)
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        wave = (
            np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(2 * np.pi * f2 * t)
        ) * (0.6 + 0.4 * np.sign(np.sin(2 * np.pi * pitch * t)))
        pieces.append(0.3 * envelope * wave)
    audio = np.concatenate(pieces)[:total]
    return (audio + 0.01 * rng.standard_normal(total)).astype(np.float32)


def write_corpus(root, splits=(("train", 8), ("valid", 3)), seconds=(1.2, 2.0), seed=0,
                 labels=False):
    """Writes ``root/audio/*.wav`` and ``root/{split}.tsv`` (+ ``.wrd``/``.ltr`` with labels).

    Returns {split: [num_samples per line]}.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    sizes = {}
    for split, count in splits:
        lines, sizes[split] = [], []
        for i in range(count):
            audio = synth_utterance(rng, rng.uniform(*seconds))
            rel = f"audio/{split}{i}.wav"
            sf.write(os.path.join(root, rel), audio, SAMPLE_RATE)
            lines.append(f"{rel}\t{len(audio)}")
            sizes[split].append(len(audio))
        with open(os.path.join(root, f"{split}.tsv"), "w") as f:
            f.write(os.path.abspath(root) + "\n" + "\n".join(lines) + "\n")
        if labels:
            with open(os.path.join(root, f"{split}.wrd"), "w") as f:
                f.writelines(f"word{i}\n" for i in range(count))
            with open(os.path.join(root, f"{split}.ltr"), "w") as f:
                f.writelines(" ".join(f"word{i}") + " |\n" for i in range(count))
    return sizes


def pretrain_args(data, save_dir, max_update, arch="vq_wav2vec_tiny", extra=()):
    """fairseq-train's arguments (without ``--user-dir`` and ``--cpu``) for a few CPU updates on
    1 s crops."""
    return [
        str(data),
        "--task", "vqw2v_pretraining", "--arch", arch, "--criterion", "vqw2v_contrastive",
        "--num-workers", "0", "--seed", "1",
        "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "fixed",
        "--max-update", str(max_update), "--max-tokens", "48000",
        "--max-sample-size", "16000", "--min-sample-size", "4000",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--log-format", "json", "--log-interval", "1", "--disable-validation",
        "--num-negatives", "10", "--prediction-steps", "4",
        *extra,
    ]


def train_losses(output):
    """{update: logged stats} from fairseq-train's json ``train_inner`` lines (log interval 1).

    fairseq-train logs to stdout.
    """
    stats = {}
    for line in output.splitlines():
        start = line.find("{")
        if start < 0 or "train_inner" not in line[:start]:
            continue
        record = json.loads(line[start:])
        stats[int(record["num_updates"])] = record
    return stats
