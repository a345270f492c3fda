"""Causal convolutional context network (aggregator) of wav2vec / vq-wav2vec."""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masked_group_norm import MaskedGroupNorm


class CausalConvBlock(nn.Module):
    """left pad (k - 1) -> conv -> dropout -> GroupNorm(1) -> activation; B x C x T -> B x C' x T.

    Padding only on the left keeps frame t independent of frames after t, so right-padding a batch
    never changes an utterance's valid frames. Replication padding is fairseq's default.
    """

    def __init__(self, n_in, n_out, kernel, stride, dropout, affine, conv_bias, zero_pad, activation):
        super().__init__()
        self.left_pad = kernel - 1
        self.pad_mode = "constant" if zero_pad else "replicate"
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=conv_bias)
        self.dropout = nn.Dropout(p=dropout)
        self.norm = MaskedGroupNorm(1, n_out, affine=affine)
        self.activation = activation

    def forward(self, x, lengths=None):
        x = F.pad(x, (self.left_pad, 0), mode=self.pad_mode)
        return self.activation(self.norm(self.dropout(self.conv(x)), lengths))


class ConvAggregator(nn.Module):
    """Stack of causal conv blocks with residual connections scaled by ``sqrt(residual_scale)``;
    a 1x1 conv projects the residual where the channel count changes. B x C x T -> B x C' x T."""

    def __init__(
        self,
        conv_layers: List[Tuple[int, int, int]],
        embed: int,
        dropout: float,
        skip_connections: bool,
        residual_scale: float,
        affine_group_norm: bool,
        conv_bias: bool,
        zero_pad: bool,
        activation: nn.Module,
    ):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        self.residual_proj = nn.ModuleList()
        in_dim = embed
        for dim, kernel, stride in conv_layers:
            self.residual_proj.append(
                nn.Conv1d(in_dim, dim, 1, bias=False) if in_dim != dim and skip_connections else None
            )
            self.conv_layers.append(
                CausalConvBlock(
                    in_dim, dim, kernel, stride, dropout, affine_group_norm, conv_bias, zero_pad,
                    activation,
                )
            )
            in_dim = dim
        self.skip_connections = skip_connections
        self.residual_scale = math.sqrt(residual_scale)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        for rproj, block in zip(self.residual_proj, self.conv_layers):
            residual = x
            x = block(x, lengths)
            if self.skip_connections:
                if rproj is not None:
                    residual = rproj(residual)
                x = (x + residual) * self.residual_scale
        return x
