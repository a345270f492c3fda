"""Batching: fairseq batches that keep every utterance, and length-sorted inference batches (and
their division among the shards of a sharded extraction)."""

from typing import List, Tuple

import numpy as np


class KeepLastBatchMixin:
    """Keeps the last batch that fairseq-fixed's ``data_utils.batch_by_size`` drops.

    fairseq drops the last batch when its size is not a multiple of
    ``required_batch_size_multiple`` (default 8), so validation and fairseq-generate silently skip
    up to N - 1 utterances (e.g. 1 of 11 with ``--batch-size 2``). Every other batch keeps
    fairseq's sizes; the dropped remainder of ``indices`` comes back as the last batch (it fitted
    ``max_tokens`` and ``max_sentences`` before fairseq dropped it). Put it before the fairseq
    dataset class in the bases.
    """

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None,
                      required_batch_size_multiple=1):
        batches = super().batch_by_size(indices, max_tokens, max_sentences,
                                        required_batch_size_multiple)
        indices = np.asarray(indices, dtype=np.int64)
        batched = sum(len(b) for b in batches)
        if batched < len(indices):
            batches = [*batches, indices[batched:]]
        return batches


def length_batches(sizes, indices, max_samples):
    """Groups ``indices`` (longest first) into batches of at most ``max_samples`` padded samples."""
    order = sorted(indices, key=lambda i: -sizes[i])
    batches, current = [], []
    for i in order:
        # the first item of a batch is its longest: padded size = count x that length
        if current and (len(current) + 1) * sizes[current[0]] > max_samples:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def shard_batches(batches: List[List[int]], shard: int, num_shards: int
                  ) -> Tuple[List[List[int]], List[int]]:
    """The batches shard ``shard`` of ``num_shards`` computes, and the indices they hold (sorted).

    A batch's outputs can depend, at rounding level, on which utterances share its padding, so
    shards do not batch again: each takes a contiguous run (near-equal counts) of the single
    job's ``batches`` as they are, every utterance is computed with the same neighbours, and the
    merged shards equal the single job's output byte for byte.
    """
    run = batches[len(batches) * shard // num_shards : len(batches) * (shard + 1) // num_shards]
    return run, sorted(i for batch in run for i in batch)
