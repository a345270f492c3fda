"""Normalisation of the acoustic model's continuous inputs (wav2vec ``c``, BERT features).

Raw upstream features have per-channel offsets and scales that the first convolution must undo;
on the embedded demo, wav2vec's ``c`` gave a test LER of 65.1 raw and 53.1 normalised per
utterance, the way the log-mel frontend normalises its filterbanks.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masked_group_norm import MaskedGroupNorm, frame_mask

INPUT_NORMS = ("none", "utterance", "frame")


class InputNorm(nn.Module):
    """B x T x C features (B valid lengths) -> B x T x C, 0 on padded frames.

    - ``none``: unchanged;
    - ``utterance``: each utterance, each channel to zero mean and unit variance over its valid
      frames only, so that an utterance normalises the same alone or padded in a batch;
    - ``frame``: a LayerNorm over the C channels of each frame, with learned gain and bias.

    Computed in fp32 whatever the dtype of the input; the output has the input's dtype.

    Args:
        kind (str): one of :data:`INPUT_NORMS`.
        dim (int): channels C.
        eps (float, optional): added to the variance. (Default: ``1e-5``, as the log-mel frontend)
    """

    def __init__(self, kind: str, dim: int, eps: float = 1e-5):
        super().__init__()
        if kind not in INPUT_NORMS:
            raise ValueError(f"input norm must be one of {INPUT_NORMS}, got {kind!r}")
        self.kind = kind
        if kind == "utterance":
            # one group per channel: GroupNorm's statistics are then per channel over time
            self.norm = MaskedGroupNorm(dim, dim, eps=eps, affine=False)
        elif kind == "frame":
            self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "utterance":
            return self.norm(x.transpose(1, 2), lengths).transpose(1, 2)  # via B x C x T
        y = F.layer_norm(x.float(), x.shape[-1:], self.norm.weight.float(), self.norm.bias.float(),
                         self.norm.eps)
        return y.masked_fill(~frame_mask(lengths, x.size(1)).unsqueeze(-1), 0.0).type_as(x)
