"""GroupNorm whose statistics ignore padded frames."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """B -> B x T bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class MaskedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` over B x C x T, computed in fp32 (as fairseq's ``Fp32GroupNorm``).

    With ``lengths`` (B), mean and variance of utterance b use only its first ``lengths[b]`` frames,
    so an utterance normalises the same alone or batched with a longer one. Padded frames of the
    output are finite but meaningless.
    """

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        if lengths is None or bool((lengths == x.size(-1)).all()):
            return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type_as(x)

        bsz, channels, tsz = x.shape
        xf = x.float().view(bsz, self.num_groups, -1, tsz)
        mask = frame_mask(lengths, tsz).view(bsz, 1, 1, tsz).to(xf.dtype)
        count = lengths.to(xf.dtype).view(bsz, 1, 1, 1) * xf.size(2)
        mean = (xf * mask).sum(dim=(2, 3), keepdim=True) / count
        centered = xf - mean
        var = (centered.square() * mask).sum(dim=(2, 3), keepdim=True) / count
        out = (centered * torch.rsqrt(var + self.eps)).view(bsz, channels, tsz)
        if weight is not None:
            out = out * weight.view(1, -1, 1) + bias.view(1, -1, 1)
        return out.type_as(x)
