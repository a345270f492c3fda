"""bf16 mixed precision (autocast) for the trainings and the inference CLIs, and ``torch.compile``:
where this machine can run them, and the one-line message where it cannot.

Training takes the task option ``--autocast bf16`` (fairseq's own ``--bf16`` means bf16 *weights*
on a TPU through torch_xla: our tasks refuse it with a pointer to ``--autocast bf16``); quantize
and featurize take ``--bf16``. Both run the forward under ``torch.autocast(device, bfloat16)``:
weights, gradients and the optimizer stay fp32. bf16 is used only where the device computes it
natively (CUDA with bf16; CPUs with AVX512-BF16, AMX-BF16 or Arm BF16): elsewhere torch emulates
it, slower than fp32, so runs stay fp32 and say so once.
"""

import functools
import logging
from typing import Iterable, Mapping, Optional

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


def cpuinfo_field(name: str) -> str:
    """The first ``name`` line's value in /proc/cpuinfo (``vendor_id``, ``model name``), or ''
    where there is none (another OS, another architecture's fields)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# torch.cpu.get_capabilities() keys of instructions that compute in bf16 (x86, then Arm)
NATIVE_BF16_CPU = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cpu_bf16_missing(capabilities: Mapping) -> Optional[str]:
    """Why a CPU with these ``torch.cpu.get_capabilities()`` has no native bf16, or None."""
    if any(capabilities.get(name) for name in NATIVE_BF16_CPU):
        return None
    return (f"this CPU ({capabilities.get('cpu_name') or 'unknown'}) has no bf16 instructions "
            "(AVX512-BF16, AMX-BF16 or Arm BF16)")


def bf16_missing(device_type: str) -> Optional[str]:
    """Why ``device_type`` (``cpu``, ``cuda``) does not compute in bf16 natively, or None."""
    if device_type == "cpu":
        return cpu_bf16_missing(torch.cpu.get_capabilities())
    if device_type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    return f"bf16 autocast is not set up for {device_type} devices"


@functools.lru_cache(maxsize=None)
def bf16_available(device_type: str) -> bool:
    """Whether bf16 autocast runs on ``device_type``; where not, logs why once per process."""
    reason = bf16_missing(device_type)
    if reason is not None:
        logger.warning(f"bf16 autocast is off, running in fp32: {reason}")
    return reason is None


def bf16_autocast(device_type: str, enabled: bool = True) -> torch.autocast:
    """``torch.autocast`` to bf16 on ``device_type`` when ``enabled`` and the device has bf16
    (:func:`bf16_available`); otherwise a disabled one (fp32). One context per ``with``."""
    return torch.autocast(device_type, dtype=torch.bfloat16,
                          enabled=enabled and bf16_available(device_type))


def in_weight_precision(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` outside autocast, ``x`` cast to the module's weights' dtype: fp32 for the
    quantizers' code logits and distances under bf16 autocast (near ties would round to other
    codes than fp32 gives), fp16 where the whole model is (fairseq's --fp16)."""
    dtype = next(module.parameters()).dtype
    with torch.autocast(x.device.type, enabled=False):
        return module(x.to(dtype))


def compile_in_place(modules: Iterable[nn.Module]) -> bool:
    """``torch.compile`` each module in place (dynamic shapes: batches vary in length; parameter
    names unchanged, so checkpoints load with or without it). Where kernels cannot be built
    (:func:`compile_missing`) it says so and leaves the modules eager; returns whether it
    compiled. The model is built on CPU and moved later: where CUDA is, it will run there."""
    reason = compile_missing("cuda" if torch.cuda.is_available() else "cpu")
    if reason is not None:
        logger.warning(f"--compile is off, the model runs uncompiled: {reason}")
        return False
    for module in modules:
        module.compile(dynamic=True)
    return True


def compile_missing(device_type: str) -> Optional[str]:
    """Why ``torch.compile`` cannot build kernels for ``device_type``, or None. On CPU inductor
    compiles C++: without a compiler it would fail at the first forward, not at ``compile``."""
    if device_type != "cpu":
        return None
    from torch._inductor import exc
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return "torch.compile on CPU needs a C++ compiler (g++ or clang++; set CXX)"
    return None
