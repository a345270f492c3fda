"""Span masking: the paper's statistics, fairseq masked_lm equivalence, corruption shares."""

import numpy as np
import pytest
import torch

from fairseq.data import Dictionary, MaskTokensDataset

from fairseq_vqw2v.data.span_mask import corrupt, num_span_starts, span_mask
from fairseq_vqw2v.data.unit_files import add_mask


def _runs(mask):
    """(start, length) of each run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[::2], edges[1::2] - edges[::2]


def test_paper_masks_about_40_percent_in_spans_of_at_least_m():
    rng = np.random.default_rng(0)
    L, p, M = 1000, 0.05, 10
    fractions, starts = [], []
    for _ in range(300):
        mask = span_mask(L, rng, mask_prob=p, span=M, semantics="paper")
        fractions.append(mask.mean())
        run_starts, run_lengths = _runs(mask)
        inside = run_starts + run_lengths < L  # runs clipped by the end may be shorter
        assert (run_lengths[inside] >= M).all()
        starts.append(len(run_starts))
    expected = 1 - (1 - p) ** M  # overlapping spans merge: 0.401
    assert abs(np.mean(fractions) - expected) < 0.01
    # merged runs are fewer than the p * L = 50 starts
    assert 25 < np.mean(starts) < 50


def test_paper_number_of_starts_is_p_times_length_on_average():
    rng = np.random.default_rng(1)
    counts = [num_span_starts(333, rng, 0.05, 10, "paper") for _ in range(4000)]
    assert abs(np.mean(counts) - 0.05 * 333) < 0.05
    assert set(counts) == {16, 17}  # probabilistic rounding of 16.65
    # short sequences still get one span, so every utterance has a target
    assert num_span_starts(3, rng, 0.05, 10, "paper") == 1
    assert span_mask(3, rng).any()


def test_span_stdev_varies_span_lengths():
    rng = np.random.default_rng(2)
    lengths = []
    for _ in range(200):
        mask = span_mask(2000, rng, mask_prob=0.002, span=10, span_stdev=3.0)
        starts, run_lengths = _runs(mask)
        lengths += list(run_lengths[starts + run_lengths < 2000])
    assert min(lengths) < 8 and max(lengths) > 12


@pytest.mark.parametrize("stdev", [0.0, 2.0])
def test_fairseq_semantics_reproduce_masked_lm_exactly(stdev):
    vocab = Dictionary()
    for i in range(20):
        vocab.add_symbol(str(i))
    mask_idx = add_mask(vocab)
    items = [torch.randint(4, 24, (n,)) for n in (7, 60, 200, 513)]
    targets = MaskTokensDataset(
        items, vocab, pad_idx=vocab.pad(), mask_idx=mask_idx, return_masked_tokens=True,
        seed=3, mask_prob=0.5, mask_multiple_length=10, mask_stdev=stdev,
    )
    targets.set_epoch(2)
    for index, item in enumerate(items):
        theirs = targets[index].ne(vocab.pad()).numpy()
        # MaskTokensDataset's generator seed for (seed, epoch, index)
        rng = np.random.default_rng(int(hash((3, 2, index)) % 1e6))
        ours = span_mask(len(item), rng, 0.5, 10, semantics="fairseq", span_stdev=stdev)
        np.testing.assert_array_equal(ours, theirs)


def test_corrupt_splits_masked_positions_80_10_10():
    rng = np.random.default_rng(4)
    tokens = rng.integers(4, 104, size=200_000)
    mask = rng.random(tokens.size) < 0.4
    weights = np.r_[np.zeros(4), np.ones(100)] / 100
    source, target_mask = corrupt(tokens, mask, rng, mask_idx=104, leave_unmasked_prob=0.1,
                                  random_token_prob=0.1, random_weights=weights)
    np.testing.assert_array_equal(target_mask, mask)
    assert (source[~mask] == tokens[~mask]).all()
    masked = source[mask]
    share_mask = (masked == 104).mean()
    share_changed = ((masked != 104) & (masked != tokens[mask])).mean()
    assert abs(share_mask - 0.8) < 0.01
    # random replacements hit the original unit 1 % of the time: 0.1 * 0.99
    assert abs(share_changed - 0.099) < 0.005
    assert masked.min() >= 4


def test_default_corruption_is_mask_only():
    rng = np.random.default_rng(5)
    tokens = np.arange(4, 54)
    mask = span_mask(50, rng, mask_prob=0.1, span=5)
    source, _ = corrupt(tokens, mask, rng, mask_idx=99)
    assert (source[mask] == 99).all() and (source[~mask] == tokens[~mask]).all()


def test_unknown_semantics_is_a_clear_error():
    with pytest.raises(ValueError, match="semantics"):
        span_mask(10, np.random.default_rng(0), semantics="bert")
