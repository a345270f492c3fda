"""Dropout with a cheaper CPU random mask; attention with that dropout on the probabilities.

torch's CPU dropout draws one Bernoulli per element (about 6 ns each, 5-10% of a small BERT's
training step, most of it on the B x H x T x T attention probabilities). Here the mask comes from
random 64-bit words cut into two 32-bit integers, one per element, compared with a threshold:
drop probability ``round(p * 2**32) / 2**32`` (closer to ``p`` than float32 can hold ``p``),
about 6x cheaper, and a 1-byte saved mask instead of torch's float one. On other devices and in
evaluation these are ``F.dropout`` and ``F.scaled_dot_product_attention``.
"""

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def drop_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool tensor of ``shape``, True with probability p (to 2**-32)."""
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 2**32) - 2**31
    return words.view(torch.int32)[:n].view(shape) < threshold


class _MaskedScale(torch.autograd.Function):
    """x * scale, zero where ``drop``; the backward applies the same mask and scale."""

    @staticmethod
    def forward(ctx, x, drop, scale):
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return x.mul(scale).masked_fill_(drop, 0.0)

    @staticmethod
    def backward(ctx, grad):
        (drop,) = ctx.saved_tensors
        return grad.mul(ctx.scale).masked_fill_(drop, 0.0), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the cheaper mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, drop_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


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
