"""Linear layers whose fp32 CPU matmuls run in oneDNN instead of the BLAS behind ``aten::addmm``,
on the CPUs where that was measured to pay.

Same function as ``F.linear`` in full fp32; only the GEMM library differs. MKL, torch's BLAS on
x86, runs AVX2 kernels on AMD CPUs, where oneDNN's AVX-512 kernels are faster (on an AMD CPU
without AVX-512 the two are even). On Intel MKL runs its own AVX-512 kernels and oneDNN loses,
so there, and on any other CPU, device, dtype, under autocast (which casts ``F.linear``'s
inputs), under ``torch.compile``, or with oneDNN unavailable or turned off
(``torch.backends.mkldnn.enabled = False``), these are ``F.linear``. Measured per CPU: ``docs/benchmarks.md``.
"""

import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..precision import cpuinfo_field


def _onednn_linear_op():
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        return mkldnn._linear_pointwise if mkldnn is not None else None
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None


_LINEAR = _onednn_linear_op()


def _mm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """a: ... x K, b_t: N x K -> ... x N (a @ b_t^T) in oneDNN."""
    return _LINEAR(a, b_t, None, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _LINEAR(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad2d = grad.reshape(-1, grad.size(-1))
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _mm(grad, weight.t())
        if ctx.needs_input_grad[1]:
            grad_w = _mm(grad2d.t(), x.reshape(-1, x.size(-1)).t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad2d.sum(0)
        return grad_x, grad_w, grad_b


# decided once per process; tests set it to cover both paths
PREFER_ONEDNN = cpuinfo_field("vendor_id") == "AuthenticAMD"


def limit_primitive_cache() -> None:
    """Caps oneDNN's primitive cache where these layers run in oneDNN (a user's own
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` wins). oneDNN caches a primitive per GEMM shape, each
    holding buffers sized to it; batches of varying length make new shapes every step, so the
    default capacity (1024) only adds hundreds of MB of peak memory to a small BERT's training,
    no speed. oneDNN reads the variable when it builds its first primitive: called where a
    process starts training or inference (the tasks' constructors, the CLIs' runner), before
    any model runs, never on import."""
    if PREFER_ONEDNN:
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    # under torch.compile Inductor picks the GEMM itself: its lowering of the oneDNN op expects
    # a weight it has frozen and prepacked, not a module parameter passed in
    return (
        PREFER_ONEDNN
        and not torch.compiler.is_compiling()
        and _LINEAR is not None
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and x.dtype == weight.dtype == torch.float32
        and x.dim() >= 2
        and x.numel() > 0
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear``: x (... x K), weight (N x K), bias (N) -> ... x N."""
    if _use_onednn(x, weight):
        return _OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
