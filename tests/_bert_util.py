"""Tiny learnable unit corpora for the BERT tests (shared by the BERT engineer's test files)."""

import numpy as np


def write_unit_corpus(folder, splits=(("train", 120), ("valid", 16)), seed=0):
    """Writes ``{split}.src`` + ``dict.txt`` of G=2 units that follow a learnable pattern
    (each group advances deterministically from a random start), lengths 20..100."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {}
    for split, n in splits:
        lines = []
        for _ in range(n):
            a = int(rng.integers(0, 8))
            toks = [f"{(a + t) % 8}-{(3 * a + t // 2) % 8}" for t in range(int(rng.integers(20, 100)))]
            for tok in toks:
                counts[tok] = counts.get(tok, 0) + 1
            lines.append(" ".join(toks))
        (folder / f"{split}.src").write_text("\n".join(lines) + "\n")
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    (folder / "dict.txt").write_text("".join(f"{tok} {c}\n" for tok, c in ranked))
    return folder


def unit_mlm_args(data, save_dir, max_update):
    """fairseq-train's arguments (without ``--user-dir`` and ``--cpu``) for a tiny unit_bert that
    learns :func:`write_unit_corpus`'s pattern, validated each epoch."""
    return [data, "--task", "unit_mlm", "--arch", "unit_bert_tiny", "--criterion", "span_mlm",
            "--tokens-per-sample", "64", "--optimizer", "adam", "--lr", "2e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "5", "--max-tokens", "3000",
            "--max-update", max_update, "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--log-format", "simple", "--log-interval", "5", "--seed", "2", "--num-workers", "0"]
