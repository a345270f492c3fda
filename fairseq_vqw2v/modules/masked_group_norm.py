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
        """x: B x C x T; lengths: B valid frames, or None (all valid) -> B x C x T, dtype of x."""
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        # torch's CPU kernel takes bf16 input with fp32 weights and accumulates in fp32 itself,
        # 3x faster than normalising an fp32 copy
        mixed = x.device.type == "cpu" and x.dtype == torch.bfloat16
        if lengths is None or bool((lengths == x.size(-1)).all()):
            # over a height of 1, so that a time-major x (strides T*C, 1, C) meets the
            # channels-last kernel instead of being copied to channels-first
            x4 = (x if mixed else x.float()).unsqueeze(-2)
            return F.group_norm(x4, self.num_groups, weight, bias, self.eps).squeeze(-2).type_as(x)

        bsz, channels, _ = x.shape
        groups = self.num_groups
        # Statistics from each utterance's valid frames only (views, no masked copy of the
        # batch), then normalisation and affine as one scale-and-shift pass: the masked
        # arithmetic this replaces took ten passes over the batch, most of the encoder's time.
        # Two-pass variance (mean, then centred squares): torch.var_mean is ~10x slower here.
        # Both reductions accumulate in fp32 also for bf16 x, which stays bf16 (an fp32 copy of
        # the batch cost more than the rest of the norm).
        means, variances = [], []
        for b, n in enumerate(lengths.tolist()):
            frames = x[b, :, :n].view(groups, channels // groups, n)
            mean = frames.mean(dim=(1, 2), keepdim=True)
            norm = torch.linalg.vector_norm(frames - mean, dim=(1, 2)).float()
            means.append(mean.view(groups).float())
            variances.append(norm.square() / frames[0].numel())
        var, mean = torch.stack(variances), torch.stack(means)  # B x G each
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd.repeat_interleave(channels // groups, dim=1)  # B x C
        shift = -mean.repeat_interleave(channels // groups, dim=1) * scale
        if weight is not None:
            scale = scale * weight
            shift = shift * weight + bias
        # in x's dtype, so that bf16 stays one bf16 pass (the factors' rounding, 2**-9, is that
        # of the bf16 output itself)
        return torch.addcmul(shift.to(x.dtype).unsqueeze(-1), x, scale.to(x.dtype).unsqueeze(-1))
