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
    output are 0.
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

        # Each utterance through the same kernel over its valid frames only (a view; time-major
        # x meets the channels-last kernel): the masked arithmetic this replaces took ten passes
        # over the batch, most of the encoder's time, and an utterance now normalises bit for
        # bit as it does alone. Padded frames are set to 0.
        out = torch.empty_like(x)
        for b, n in enumerate(lengths.tolist()):
            frames = x[b:b + 1, :, :n].unsqueeze(-2)  # 1 x C x 1 x n
            frames = frames if mixed else frames.float()
            normed = F.group_norm(frames, self.num_groups, weight, bias, self.eps)
            out[b:b + 1, :, :n] = normed.squeeze(-2)
            out[b, :, n:] = 0
        return out
