"""De-duplicated units: consecutive repeats of a unit merged into one token with its duration.

A 100 Hz unit sequence ``a a a b b c`` becomes the tokens ``a b c`` with durations ``3 2 1``
(as ESPnet's asr2 ``src_case=rm`` and textlesslib's ``deduplicate=True`` do). A BERT trained on
de-duplicated units sees one token per unit change, so its span masks cover several phones'
worth of context instead of a few frames of one; its features are expanded back to one vector
per 10 ms frame by the durations, so the acoustic model's frame rate does not change.

Whether a BERT reads de-duplicated units is recorded once, in its training task's config
(``unit_mlm --dedup-units``); featurizers read it from the checkpoint.
"""

from typing import Tuple

import numpy as np
import torch


def dedup(ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """T ids -> (T' ids with no two equal neighbours, T' durations summing to T)."""
    if len(ids) == 0:
        return ids, ids.new_zeros(0)
    values, durations = torch.unique_consecutive(ids, return_counts=True)
    return values, durations


def dedup_numpy(ids: np.ndarray) -> np.ndarray:
    """T ids -> T' ids with no two equal neighbours (durations dropped: what BERT trains on)."""
    if len(ids) == 0:
        return ids
    keep = np.empty(len(ids), dtype=bool)
    keep[0] = True
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]


def expand(x: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """T' x C features of de-duplicated tokens -> T x C, row i repeated ``durations[i]`` times."""
    return torch.repeat_interleave(x, durations.to(x.device), dim=0)
