"""wav2letter-style 1-D convolution stack: the body of the CTC acoustic model."""

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq_vqw2v.modules.layer_lists import W2L_LAYER_FIELDS, check_layer_list, parse_layer_list
from fairseq_vqw2v.modules.masked_group_norm import frame_mask

ConvLayer = Tuple[int, int, int, float]
"""One layer: ``(out_channels, kernel, stride, dropout)``; out_channels are counted after GLU."""

ACTIVATIONS = ("relu", "prelu", "glu")

W2L_WSJ_LAYERS = (
    "[(100, 13, 1, 0.25), (100, 3, 1, 0.25), (100, 4, 1, 0.25), (125, 5, 1, 0.25), "
    "(125, 6, 1, 0.25), (150, 7, 1, 0.25), (175, 8, 1, 0.25), (200, 9, 1, 0.25), "
    "(225, 10, 1, 0.25), (250, 11, 1, 0.25), (250, 12, 1, 0.25), (250, 13, 1, 0.25), "
    "(300, 14, 1, 0.25), (300, 15, 1, 0.25), (375, 21, 1, 0.25), (500, 1, 1, 0.25)]"
)
"""Gated ConvNet for WSJ (Liptchinsky et al. 2017), the acoustic model of the wav2vec and
vq-wav2vec WSJ experiments; use with ``activation="glu"`` and ``weight_norm=True``.

Source: wav2letter ``recipes/models/conv_glu/wsj/network.arch`` (older copy without ``WN``:
``recipes/wsj/configs/conv_glu/network.arch``). That file has 15 convolutions, all stride 1,
``same`` padding, each weight-normalised, followed by GLU and dropout 0.25, with (kernel, channels
before GLU): (13, 200), (3, 200), (4, 200), (5, 250), (6, 250), (7, 300), (8, 350), (9, 400),
(10, 450), (11, 500), (12, 500), (13, 500), (14, 600), (15, 600), (21, 750); then a weight-normed
linear layer 375 -> 1000, GLU, dropout 0.25, and a linear layer 500 -> labels. The linear layer
is the kernel-1 entry here; the output projection to labels belongs to the model.
Simplification: even kernels are padded asymmetrically so every layer keeps the frame count
(flashlight pads ``kernel // 2`` on both sides, which adds one frame per even kernel).
"""

W2L_TIMIT_LAYERS = "[" + ", ".join(["(1000, 5, 1, 0.7)"] * 7) + "]"
"""Phone recognition on TIMIT (wav2vec, Schneider et al. 2019, section 4, following Zeghidour et
al. 2018): 7 convolutions, kernel 5, 1000 channels, stride 1, each followed by PReLU and dropout
0.7; use with ``activation="prelu"``, no weight norm.

Source: wav2letter ``recipes/timit/configs/conv_relu/network.arch``: seven ``C2 1000 5`` layers
(stride 1, ``same`` padding), each ``PR`` (PReLU, one shared slope, init 0.25) and ``DO 0.7``,
then a linear layer 1000 -> labels (the model's output projection). The paper's text itself was
not available to check here; the recipe matches the description above.
"""

W2L_TINY_LAYERS = "[(192, 7, 2, 0.1), (192, 7, 1, 0.1), (192, 7, 1, 0.1), (256, 1, 1, 0.1)]"
"""A small stack of our own for CPU demos (minutes on one hour of audio): the first layer halves
the frame rate (100 Hz input -> 50 Hz emissions, still several frames per letter), a kernel-1
layer plays the part of wav2letter's final linear layer."""


def parse_layers(spec: str, name: str = "conv_layers") -> List[ConvLayer]:
    """Parses a layer list string such as ``"[(256, 5, 1, 0.1), (256, 5, 2, 0.1)]"`` of
    ``(out_channels, kernel, stride, dropout)`` tuples (:func:`.layer_lists.parse_layer_list`:
    literals only, nothing is ever executed); errors name ``name``, the config field."""
    return parse_layer_list(spec, name, W2L_LAYER_FIELDS)


class W2lConvBlock(nn.Module):
    """Conv1d with ``same``-style padding, activation and dropout; carries its length arithmetic.

    The input is padded with ``(kernel - 1) // 2`` zeros on the left and ``kernel // 2`` on the
    right, so the output has ``ceil(T / stride)`` frames whatever ``T``, and output frame ``t`` is
    centred on input frame ``t * stride``. Padded frames are zeroed before the convolution and
    after the block, so an utterance gives the same frames alone or in a longer batch.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (after GLU, which halves the convolution's ``2x``).
        kernel (int): Kernel width in frames.
        stride (int): Stride in frames.
        dropout (float): Dropout after the activation.
        activation (str): ``"relu"``, ``"prelu"`` (one learnt slope, init 0.25, as wav2letter's
            ``PR``) or ``"glu"``.
        weight_norm (bool): Weight normalisation per output channel (wav2letter's ``WN``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, dropout: float,
                 activation: str, weight_norm: bool):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.kernel, self.stride = kernel, stride
        conv_channels = 2 * out_channels if activation == "glu" else out_channels
        conv = nn.Conv1d(in_channels, conv_channels, kernel, stride=stride)
        self.conv = nn.utils.parametrizations.weight_norm(conv, dim=0) if weight_norm else conv
        if activation == "glu":
            self.activation = nn.GLU(dim=1)
        elif activation == "prelu":
            self.activation = nn.PReLU(num_parameters=1, init=0.25)
        else:
            self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``ceil(n / stride)`` valid frames out of ``n`` (0 stays 0)."""
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x (Tensor): Shape `B x C_in x T`, zero on padded frames.
            lengths (Tensor): Shape `B`, valid frames.

        Returns:
            (Tensor, Tensor): Shape `B x C_out x ceil(T / stride)`, zero on padded frames, and the
            new lengths, shape `B`.
        """
        x = F.pad(x, ((self.kernel - 1) // 2, self.kernel // 2))
        x = self.dropout(self.activation(self.conv(x)))  # B x C_out x T'
        lengths = self.output_lengths(lengths)
        mask = frame_mask(lengths, x.size(-1)).unsqueeze(1)  # B x 1 x T'
        return x.masked_fill(~mask, 0.0), lengths


class W2lConvStack(nn.Module):
    """Stack of :class:`W2lConvBlock`, as the convolutional body of wav2letter's acoustic models.

    Frame counts follow the strides only: a layer of stride ``s`` maps ``n`` valid frames to
    ``ceil(n / s)``, so the stack maps ``n`` to ``ceil(... ceil(n / s1) ... / sL)``, which equals
    ``ceil(n / (s1 * ... * sL))``.

    Args:
        in_channels (int): Input feature dimension ``C``.
        layers (str or list): ``[(out_channels, kernel, stride, dropout), ...]`` or its string form
            (parsed with :func:`parse_layers`), e.g. :data:`W2L_WSJ_LAYERS`.
        activation (str, optional): ``"relu"``, ``"prelu"`` or ``"glu"``. (Default: ``"glu"``)
        weight_norm (bool, optional): Weight-normalise every convolution. (Default: ``False``)
    """

    def __init__(self, in_channels: int, layers: Union[str, Sequence[ConvLayer]],
                 activation: str = "glu", weight_norm: bool = False):
        super().__init__()
        # errors name the models' config field, ``conv_layers``
        if isinstance(layers, str):
            layers = parse_layers(layers, "conv_layers")
        else:
            layers = check_layer_list(layers, "conv_layers", W2L_LAYER_FIELDS)
        blocks = []
        for out_channels, kernel, stride, dropout in layers:
            blocks.append(
                W2lConvBlock(in_channels, out_channels, kernel, stride, dropout, activation, weight_norm))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_channels

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for ``lengths`` (shape `B`) valid input frames."""
        for block in self.blocks:
            lengths = block.output_lengths(lengths)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x (Tensor): Shape `B x T x C`, anything on padded frames.
            lengths (Tensor): Shape `B`, valid frames per utterance.

        Returns:
            (Tensor, Tensor):
            Tensor
                Shape `B x T' x C'`, with ``C' = out_channels`` and 0 on padded frames.
            Tensor
                Shape `B`, valid output frames, ``output_lengths(lengths)``.
        """
        lengths = lengths.long()
        mask = frame_mask(lengths, x.size(1)).unsqueeze(-1)  # B x T x 1
        x = x.masked_fill(~mask, 0.0).transpose(1, 2)  # B x C x T
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths  # B x T' x C'
