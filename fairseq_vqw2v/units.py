"""Discrete units: from a quantizing model's codes to token lines, a dictionary and a usage report.

One token per 10 ms frame; with G groups of V codewords a token is the G indices joined by ``-``
(``12-301`` for G=2). A ``{split}.src`` file holds one line of space-separated tokens per manifest
line, and ``dict.txt`` is a fairseq ``Dictionary`` file (``token count``, most frequent first), so
``fairseq-preprocess --only-source`` and the unit BERT read them as they are.
"""

import math
import os
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from fairseq.data import Dictionary

from .constants import FRAME_RATE

SEPARATOR = "-"


def codes_to_tokens(codes: torch.Tensor) -> List[str]:
    """T x G codeword indices -> T tokens ``i0-i1-...``."""
    return [SEPARATOR.join(str(i) for i in frame) for frame in codes.tolist()]


def tokens_to_codes(line: str, groups: int, where: str = "") -> torch.Tensor:
    """A line of tokens -> T x G long tensor; ``where`` (``file:line``) prefixes errors."""
    rows = []
    for token in line.split():
        parts = token.split(SEPARATOR)
        if len(parts) != groups or not all(p.isdigit() for p in parts):
            raise ValueError(f"{where}: token {token!r} is not {groups} indices joined by '-'")
        rows.append([int(p) for p in parts])
    return torch.tensor(rows, dtype=torch.long).view(-1, groups)


def codebook_shape(model) -> Tuple[int, int]:
    """(V, G) of a quantizing vq_wav2vec model: codewords per group and groups."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "vq_type"):
        raise ValueError(
            f"{type(model).__name__} is not a vq_wav2vec model; convert fairseq wav2vec "
            f"checkpoints first (python -m fairseq_vqw2v.cli.convert)"
        )
    if cfg.vq_type in (None, "none"):
        raise ValueError("this vq_wav2vec model has vq_type none: it has no discrete units")
    return int(cfg.vq_vars), int(cfg.vq_groups)


def load_quantizer(checkpoint: str, device: str = "cpu"):
    """A quantizing ``vq_wav2vec`` checkpoint's model (eval mode, on ``device``) and the task
    config it was trained with (its audio sample rate and normalisation)."""
    from .models.vq_wav2vec import load_vq_wav2vec

    model, task_cfg = load_vq_wav2vec(checkpoint, device)
    codebook_shape(model)  # fails early, naming the model, when it does not quantize
    return model, task_cfg


@torch.no_grad()
def encode_batch(model, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None):
    """Codes of each utterance of a batch, without its padding frames.

    Args:
        model: a vq_wav2vec model in eval mode.
        source: B x T waveforms.
        padding_mask: B x T, True on padding (None: no padding).
    Returns:
        a list of B long tensors, T'_b x G.
    """
    idx = model.extract_features(source, padding_mask=padding_mask)["idx"]
    if padding_mask is None:
        lengths = torch.full((source.size(0),), source.size(1), dtype=torch.long)
    else:
        lengths = (~padding_mask).long().sum(-1)
    frames = model.output_lengths(lengths.to(source.device)).tolist()
    return [idx[b, : frames[b]].cpu() for b in range(source.size(0))]


class UnitDictionary(Dictionary):
    """fairseq ``Dictionary`` over all V^G tokens without storing them: index = 4 + flat code.

    ``fairseq-generate`` prints hypotheses through its target dictionary; this one turns the flat
    index back into ``i0-i1``. The codebook shape is known only once a model is loaded, hence
    :meth:`set_codebook`.
    """

    def __init__(self):
        super().__init__()
        self.num_vars = self.groups = None

    def set_codebook(self, num_vars: int, groups: int):
        if groups * math.log2(num_vars) >= 31:
            # fairseq-generate casts hypothesis tokens to int32
            raise ValueError(
                f"{num_vars}^{groups} unit tokens do not fit fairseq-generate's int32 token ids; "
                f"use python -m fairseq_vqw2v.cli.quantize instead"
            )
        self.num_vars, self.groups = num_vars, groups

    def flat_index(self, codes: torch.Tensor) -> torch.Tensor:
        """... x G codes -> ... token indices."""
        weights = self.num_vars ** torch.arange(self.groups - 1, -1, -1, device=codes.device)
        return self.nspecial + (codes * weights).sum(-1)

    def __len__(self):
        return self.nspecial + (self.num_vars or 0) ** (self.groups or 0)

    def __getitem__(self, index):
        index = int(index)
        if index < self.nspecial:
            return self.symbols[index]
        flat, digits = index - self.nspecial, []
        for _ in range(self.groups):
            flat, digit = divmod(flat, self.num_vars)
            digits.append(str(digit))
        return SEPARATOR.join(reversed(digits))

    def index(self, sym):
        if sym in self.indices:
            return self.indices[sym]
        return int(self.flat_index(tokens_to_codes(sym, self.groups, "token"))[0])


def write_unit_lines(path: str, lines: Iterable[List[str]]) -> Counter:
    """Writes one line of tokens per utterance (atomically); returns the token counts."""
    counts = Counter()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for tokens in lines:
            counts.update(tokens)
            f.write(" ".join(tokens) + "\n")
    os.replace(tmp, path)
    return counts


def write_dictionary(path: str, counts: Counter):
    """fairseq ``dict.txt``: ``token count`` lines, most frequent first (ties by token)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for token, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            f.write(f"{token} {n}\n")
    os.replace(tmp, path)


def read_dictionary_counts(path: str) -> Counter:
    """Token counts of a ``dict.txt``."""
    counts = Counter()
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{path}:{n}: expected 'token count', got {line.rstrip()!r}")
            counts[parts[0]] += int(parts[1])
    return counts


def _perplexity(counts: Iterable[int]) -> float:
    counts = torch.tensor(list(counts), dtype=torch.float64)
    p = counts / counts.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def usage_stats(counts: Counter, num_vars: int, groups: int) -> Dict[str, float]:
    """Codebook usage of a set of unit tokens.

    ``code_perplexity`` follows fairseq's quantizers (sum over groups of each group's perplexity,
    at most G x V); ``token_perplexity`` is that of the joint tokens (at most V^G);
    ``bitrate`` is the frame rate times G log2 V bits per second.
    """
    group_counts = [Counter() for _ in range(groups)]
    for token, n in counts.items():
        for g, i in enumerate(token.split(SEPARATOR)):
            group_counts[g][i] += n
    return {
        "tokens": sum(counts.values()),
        "distinct_tokens": len(counts),
        "possible_tokens": num_vars**groups,
        "distinct_codes_per_group": [len(c) for c in group_counts],
        "code_perplexity": sum(_perplexity(c.values()) for c in group_counts),
        "max_code_perplexity": num_vars * groups,
        "token_perplexity": _perplexity(counts.values()),
        "bitrate": FRAME_RATE * groups * math.log2(num_vars),
    }


def plot_code_frequencies(counts: Counter, png_path: str, title: str = "unit frequencies"):
    """Rank-frequency plot (log-log) of the tokens, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    freqs = sorted(counts.values(), reverse=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(range(1, len(freqs) + 1), freqs, marker=".", linestyle="none", markersize=3)
    ax.set_xlabel("token rank")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: {len(freqs)} distinct tokens")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
