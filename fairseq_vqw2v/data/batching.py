"""Batching: fairseq batches that keep every utterance, and length-sorted inference batches."""

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
