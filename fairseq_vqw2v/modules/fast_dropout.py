"""Dropout with a cheaper CPU random mask; attention with that dropout on the probabilities.

torch's CPU dropout draws one Bernoulli per element, a visible share of a small BERT's training
step (most of it on the B x H x T x T attention probabilities). Here each element gets 16 random
bits, cut from 64-bit words, compared with a threshold: drop probability
``round(p * 2**16) / 2**16`` (0.100006 for p = 0.1). The mask is kept as the factor itself (0 or
1 / (1 - p)), so the forward and the backward are each one vectorised multiply: a boolean mask
applied with ``masked_fill`` or a bool x float product runs element by element. On other devices
and in evaluation these are ``F.dropout`` and ``F.scaled_dot_product_attention``. Measured
speed, per CPU: ``docs/benchmarks.md``.
"""

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def keep_scale(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device
               ) -> torch.Tensor:
    """Tensor of ``shape``: 1 / (1 - p) with probability 1 - p (to 2**-16), else 0."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 2**16) - 2**15
    keep = words.view(torch.int16)[:n].view(shape) >= threshold
    return keep.to(dtype).mul_(1.0 / (1.0 - p))


class _Scale(torch.autograd.Function):
    """x * factor; the backward multiplies by the same factor."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.save_for_backward(factor)
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the cheaper mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    return _Scale.apply(x, keep_scale(x.shape, p, x.dtype, x.device))


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: Optional[torch.Tensor],
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    """q, k, v: B x H x T x D; attn_mask: additive, broadcast to B x H x T x T, or None
    -> B x H x T x D. With dropout on CPU SDPA falls back to this same unfused math, only with
    torch's slower mask; otherwise SDPA (fused kernels)."""
    p = dropout_p if training else 0.0
    if p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
    scores = torch.matmul(q * (1.0 / math.sqrt(q.size(-1))), k.transpose(-2, -1))
    if attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(dropout(torch.softmax(scores, dim=-1), p, True), v)
