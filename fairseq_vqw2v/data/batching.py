"""Batching that keeps every utterance, whatever ``--required-batch-size-multiple`` is."""

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
