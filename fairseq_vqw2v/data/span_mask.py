"""Span masking for BERT on discrete units (vq-wav2vec, section 3.3).

The paper: "we sample p = 0.05 of all tokens to be a starting index, without replacement, and mask
M = 10 consecutive tokens from every sampled index; spans may overlap". We implement exactly that:
for a sequence of length L, ``round_random(p * L)`` distinct start positions are drawn uniformly
(probabilistic rounding: ``floor(p * L + U[0, 1))``, at least one start when ``p > 0`` so that every
sequence contributes a target), and the M tokens from each start are masked, clipped at the end of
the sequence. Overlapping spans merge, so the expected masked fraction is about
``1 - (1 - p) ** M`` (0.40 at p = 0.05, M = 10), not ``p * M``.

fairseq's ``masked_lm`` (``MaskTokensDataset``) instead draws ``floor(mask_prob * L / M + U)``
starts and, with ``mask_stdev > 0``, a normal span length per start; the paper's setting there is
``--mask-prob 0.5 --mask-multiple-length 10 --mask-stdev 0``. ``semantics="fairseq"`` reproduces
that rule for comparison (it may draw no start at all on a short sequence).

Of the masked positions, a fraction is then kept unchanged (``leave_unmasked_prob``) or replaced by a
random unit (``random_token_prob``), as BERT's 80/10/10 rule; the ``unit_mlm`` task defaults to
``masked_lm``'s 0.1 and 0.1, the code path that trained the paper's BERT (the paper describes
plain masking: both 0).
"""

from typing import Optional, Tuple

import numpy as np

SEMANTICS = ("paper", "fairseq")

MASK_PROB = 0.05
"""The paper's p: the probability of a span start per token."""

SPAN_LENGTH = 10
"""The paper's M: tokens per masked span."""


def num_span_starts(
    length: int, rng: np.random.Generator, mask_prob: float, span: int, semantics: str
) -> int:
    """Number of span starts for a sequence of ``length`` tokens (see the module docstring)."""
    if semantics == "paper":
        if mask_prob <= 0 or length == 0:
            return 0
        return min(length, max(1, int(mask_prob * length + rng.random())))
    if semantics == "fairseq":
        return min(length, int(mask_prob * length / float(span) + rng.random()))
    raise ValueError(f"unknown span-mask semantics {semantics!r}; expected one of {SEMANTICS}")


def span_mask(
    length: int,
    rng: np.random.Generator,
    mask_prob: float = MASK_PROB,
    span: int = SPAN_LENGTH,
    semantics: str = "paper",
    span_stdev: float = 0.0,
) -> np.ndarray:
    """Boolean mask (L,) with spans of ``span`` tokens from distinct random starts.

    ``span_stdev > 0`` draws each span's length from N(span, span_stdev), rounded and clipped at 0,
    as fairseq's ``--mask-stdev``.
    """
    mask = np.zeros(length, dtype=bool)
    n = num_span_starts(length, rng, mask_prob, span, semantics)
    if n == 0:
        return mask
    starts = rng.choice(length, n, replace=False)
    if span_stdev > 0:
        lengths = np.maximum(0, np.rint(rng.normal(span, span_stdev, size=n))).astype(np.int64)
    else:
        lengths = np.full(n, span, dtype=np.int64)
    # A difference array marks [start, start + len) for all spans in one pass, overlaps included.
    edges = np.zeros(length + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, np.minimum(starts + lengths, length), -1)
    return np.cumsum(edges[:-1]) > 0


def corrupt(
    tokens: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    mask_idx: int,
    leave_unmasked_prob: float = 0.0,
    random_token_prob: float = 0.0,
    random_weights: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Applies a mask to ``tokens`` (L,): returns (model input, target positions).

    Target positions are all of ``mask``; in the input, masked positions become ``mask_idx``,
    except a ``leave_unmasked_prob`` share left as they are and a ``random_token_prob`` share
    replaced by a unit drawn from ``random_weights`` (a distribution over the vocabulary).
    """
    source = tokens.copy()
    replace = mask.copy()
    other_prob = leave_unmasked_prob + random_token_prob
    if other_prob > 0:
        u = rng.random(len(tokens))
        keep = mask & (u < leave_unmasked_prob)
        rand = mask & (u >= leave_unmasked_prob) & (u < other_prob)
        replace &= ~(keep | rand)
        if rand.any():
            if random_weights is None:
                raise ValueError("random_token_prob > 0 needs random_weights")
            source[rand] = rng.choice(len(random_weights), int(rand.sum()), p=random_weights)
    source[replace] = mask_idx
    return source, mask
