"""Convolutional feature encoder of wav2vec / vq-wav2vec: raw audio -> frame features."""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masked_group_norm import MaskedGroupNorm


def conv_output_lengths(lengths: torch.Tensor, layers: List[Tuple[int, int, int]]) -> torch.Tensor:
    """Frames that each unpadded conv layer keeps: ``floor((L - k) / s) + 1`` per layer."""
    for _, kernel, stride in layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


class ConvEncoderBlock(nn.Module):
    """conv (no bias) -> GroupNorm(1) -> activation; B x C_in x T -> B x C_out x T'.

    Without autograd (quantize, featurize) tensors are B x C x T stored time-major (each frame's
    channels adjacent): oneDNN's forward convolutions are faster on that layout than on
    channels-first, and it stays so through the norm and activation. A 1-channel input (the
    first layer, on audio) is then cut into overlapping windows and multiplied by the kernels,
    which beats the convolution kernels on that shape, with the norm folded into the kernels
    (:meth:`_normalized_first_layer`). Training keeps fairseq's channels-first
    convolutions: their backward is faster than the channels-last one. Without autograd
    the norm and the activation also work in place (see :meth:`forward`); padded frames are 0.
    Measured speed, per CPU: ``docs/benchmarks.md``.

    (fairseq's block has a dropout after the conv, but wav2vec always builds it with p=0.)"""

    def __init__(self, n_in, n_out, kernel, stride, affine, activation):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=False)
        self.norm = MaskedGroupNorm(1, n_out, affine=affine)
        self.activation = activation

    def forward(self, x, lengths=None):
        if torch.is_grad_enabled():
            return self.activation(self.norm(self.conv(x), lengths))
        # In place: these activations are far larger than the caches, and each extra pass over
        # them (the norm's output, its copy, the activation's output) costs about as much as a
        # convolution layer.
        if self.conv.in_channels == 1:
            x = self._normalized_first_layer(x[:, 0], lengths)
        else:
            x = self._convolve(x)
            scale, shift = self.norm.scale_shift(x, lengths)
            x = torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype), out=x)
        x = activate_(x, self.activation)
        if lengths is not None:
            for b, n in enumerate(lengths.tolist()):
                x[b, :, n:] = 0
        return x

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """B x C_in x T -> B x C_out x T', time-major, as a 2-D convolution over a height of 1:
        the 1-D one has no channels-last kernels."""
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # B x C_in x 1 x T
        (stride,) = self.conv.stride
        return F.conv2d(x, self.conv.weight.unsqueeze(2), stride=(1, stride)).squeeze(2)

    def _normalized_first_layer(self, audio: torch.Tensor, lengths: Optional[torch.Tensor]
                                ) -> torch.Tensor:
        """B x T audio -> the normalised convolution, B x C x T' time-major: the audio cut into
        overlapping windows (K samples) times the kernels, with the norm folded into them.

        The conv output y = W w of a window w has, over an utterance's windows, the moments
        E[y] = W E[w] and E[y y^T] = W E[w w^T] W^T, so its norm statistics come from the K x K
        second moments of the windows without y being written; each utterance's windows are then
        multiplied by its normalising kernels (scale * W, plus shift) straight into the output."""
        weight = self.conv.weight.squeeze(1)  # C x K
        (kernel,), (stride,) = self.conv.kernel_size, self.conv.stride
        windows = audio.unfold(1, kernel, stride)  # B x T' x K, overlapping
        B, frames = windows.shape[:2]
        counts = lengths.tolist() if lengths is not None else [frames] * B
        # each utterance's windows with a column of ones, which multiplies the shift: one matrix
        # product writes the normalised output (addmm's bias costs a pass of its own)
        augmented = []
        for b, n in enumerate(counts):
            a = audio.new_ones(n, kernel + 1, dtype=torch.float32)
            a[:, :kernel] = windows[b, :n]
            augmented.append(a)
        mean, mean_square = audio.new_empty(2, B, dtype=torch.float32)
        with torch.autocast(audio.device.type, enabled=False):  # statistics in fp32
            w32 = weight.float()
            for b, (a, n) in enumerate(zip(augmented, counts)):
                w = a[:, :kernel]
                mean[b] = torch.mv(w32, w.sum(0) / n).mean()
                mean_square[b] = (w32 @ (w.t() @ w / n) * w32).sum() / w32.size(0)
        scale, shift = self.norm.scale_shift_from_moments(mean, mean_square)  # B x C x 1
        # out= runs outside autocast: its precision is chosen here
        dtype = (torch.get_autocast_dtype(audio.device.type)
                 if torch.is_autocast_enabled(audio.device.type) else audio.dtype)
        out = audio.new_empty(B, frames, weight.size(0), dtype=dtype)  # padded frames: forward
        for b, (a, n) in enumerate(zip(augmented, counts)):
            kernels = torch.cat([w32 * scale[b], shift[b]], dim=1).t().to(dtype)  # K+1 x C
            torch.mm(a.to(dtype), kernels, out=out[b, :n])
        return out.transpose(1, 2)


def activate_(x: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    """``activation(x)``, in place where torch has the in-place form. The in-place kernels run
    on ``x``'s memory in storage order: on the time-major B x C x T view torch's in-place GELU
    is slower per element than on the same memory seen as B x T x C."""
    if isinstance(activation, nn.GELU):
        torch.ops.aten.gelu_(in_storage_order(x), approximate=activation.approximate)
        return x
    if isinstance(activation, nn.ReLU):
        in_storage_order(x).relu_()
        return x
    return activation(x)


def in_storage_order(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its dimensions permuted into the order of its memory (largest stride first), a
    contiguous view where ``x`` is a permuted contiguous tensor; otherwise ``x``."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    permuted = x.permute(order)
    return permuted if permuted.is_contiguous() else x


class ConvFeatureEncoder(nn.Module):
    """Strided conv stack with optional log compression ``log(|x| + 1)``.

    Args:
        conv_layers: ``[(dim, kernel, stride), ...]``
        skip_connections: add the (subsampled) input of a layer to its output where dims match,
            scaled by ``sqrt(residual_scale)``
    """

    def __init__(
        self,
        conv_layers: List[Tuple[int, int, int]],
        log_compression: bool,
        skip_connections: bool,
        residual_scale: float,
        affine_group_norm: bool,
        activation: nn.Module,
    ):
        super().__init__()
        self.layer_specs = list(conv_layers)
        self.conv_layers = nn.ModuleList()
        in_dim = 1
        for dim, kernel, stride in conv_layers:
            self.conv_layers.append(
                ConvEncoderBlock(in_dim, dim, kernel, stride, affine_group_norm, activation)
            )
            in_dim = dim
        self.log_compression = log_compression
        self.skip_connections = skip_connections
        self.residual_scale = math.sqrt(residual_scale)

    def output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(input_lengths, self.layer_specs)

    def forward(
        self, source: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """B x T audio (+ B sample counts) -> B x C x T' features (+ B frame counts)."""
        x = source.unsqueeze(1)
        for spec, block in zip(self.layer_specs, self.conv_layers):
            if lengths is not None:
                lengths = conv_output_lengths(lengths, [spec])
            residual = x
            x = block(x, lengths)
            if self.skip_connections and x.size(1) == residual.size(1):
                tsz = x.size(2)
                residual = residual[..., :: residual.size(2) // tsz][..., :tsz]
                x = (x + residual) * self.residual_scale
        if self.log_compression:
            # in fp32 also under autocast: bf16 keeps 8 bits of |x| + 1, nothing of a small |x|;
            # a half-precision model (fairseq's --fp16) gets its own precision back
            dtype = torch.float32 if torch.is_autocast_enabled(x.device.type) else x.dtype
            x = (x.float().abs() + 1).log().to(dtype)
        return x, lengths
