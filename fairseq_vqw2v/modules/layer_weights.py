"""A learned weighted sum of an upstream model's hidden layers (SUPERB's featurizer, s3prl)."""

import torch
import torch.nn as nn


class WeightedLayerSum(nn.Module):
    """B x T x K x C hidden states of K layers -> B x T x C, their sum weighted by
    ``softmax(weights)``; the K weights are learned and start equal.

    Args:
        num_layers (int): K.
    """

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(2) != len(self.weights):
            raise ValueError(f"{x.size(2)} layers per frame, but the weighted sum was built for "
                             f"{len(self.weights)}")
        # K @ (B x T x K x C) -> B x T x C
        return torch.matmul(self.weights.float().softmax(0).to(x.dtype), x)
