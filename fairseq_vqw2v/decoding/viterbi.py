"""Greedy (best path) CTC decoding: argmax per frame, repeats collapsed, blanks dropped."""

from typing import Dict, List

import torch
from torch import Tensor

from fairseq_vqw2v.decoding.base import CTCDecoder


def ctc_greedy(emissions: Tensor, blank: int) -> Tensor:
    """Emissions ``T x V`` -> LongTensor of label ids of the best path (``a a <b> a`` -> ``a a``)."""
    path = torch.unique_consecutive(emissions.argmax(dim=-1))
    return path[path != blank]


class ViterbiDecoder(CTCDecoder):
    """Best-path decoding of a batch; the score of a hypothesis is its path's log-probability.

    The argmax runs once over the whole batch; only the (cheap) collapse is per utterance.
    """

    def decode(self, emissions: Tensor, lengths: Tensor) -> List[List[Dict]]:
        self.check(emissions, lengths)
        best, path = emissions.detach().float().max(dim=-1)  # B x T each
        frames = torch.arange(emissions.size(1), device=emissions.device)
        valid = frames.unsqueeze(0) < lengths.to(emissions.device).unsqueeze(1)  # B x T
        scores = torch.where(valid, best, 0.0).sum(dim=1).tolist()
        path = path.cpu()
        return [
            [self.hypothesis(path[b, : int(lengths[b])], scores[b])]
            for b in range(emissions.size(0))
        ]

