"""GroupNorm whose statistics ignore padded frames."""

from typing import Optional, Tuple

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
        # cheaper than normalising an fp32 copy
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

    def scale_shift(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each B x C x 1 fp32, such that ``x * scale + shift`` is this norm's output
        on each utterance's valid frames: the statistics alone, so that inference can normalise in
        place (one pass over the activations instead of four, no new tensor). One group only.

        The moments are a sum and a dot product over the valid frames (contiguous when x is
        time-major): far cheaper than ``torch.var_mean`` on such a strided view."""
        B, C, T = x.shape
        moments = x.new_empty(B, 2, dtype=torch.float32)
        for b, n in enumerate(lengths.tolist() if lengths is not None else [T] * B):
            frames = x[b, :, :n].transpose(0, 1).reshape(-1).float()
            moments[b, 0], moments[b, 1] = frames.sum(), torch.dot(frames, frames)
        moments /= torch.as_tensor(lengths if lengths is not None else T).mul(C).view(-1, 1)
        return self.scale_shift_from_moments(moments[:, 0], moments[:, 1])

    def scale_shift_from_moments(self, mean: torch.Tensor, mean_square: torch.Tensor
                                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`scale_shift` from each utterance's E[x] and E[x^2] (B, fp32) over its valid frames
        and all channels. The variance E[x^2] - E[x]^2 loses precision only when the mean dwarfs
        the spread; over a conv layer's channels and frames it does not (no bias, weights of both
        signs)."""
        if self.num_groups != 1:
            raise ValueError(f"scale_shift computes one group, this norm has {self.num_groups}")
        mean, mean_square = mean.unsqueeze(1), mean_square.unsqueeze(1)
        scale = (mean_square - mean.square()).clamp(min=0).add(self.eps).rsqrt()  # B x 1
        if self.weight is not None:
            scale = scale * self.weight.float()
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.float()
        return scale.unsqueeze(-1), shift.unsqueeze(-1)
