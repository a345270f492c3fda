"""Where a benchmark runs: the device's name, timing that waits for it and peak memory
(:func:`timed`), and the peak throughput that model FLOP utilisation (MFU) is measured against."""

import time
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

# dense tensor-core TFLOP/s per GPU from NVIDIA's data sheets: (bf16 / fp16, fp32)
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100 PCIe": (756.0, 51.0),
    "H100": (989.0, 67.0),  # SXM
    "A100": (312.0, 19.5),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from am_throughput import cpu_model

    return cpu_model()


def peak_tflops(device: torch.device, half: bool) -> Optional[float]:
    """The data-sheet peak for this GPU in bf16/fp16 (``half``) or fp32; None if not listed (CPUs
    included)."""
    if device.type != "cuda":
        return None
    name = device_name(device)
    for card, peaks in PEAK_TFLOPS.items():  # "H100 PCIe" is matched before "H100"
        if card in name:
            return peaks[0 if half else 1]
    return None


@contextmanager
def timed(device: torch.device) -> Iterator[dict]:
    """``with timed(device) as t: ...`` then ``t["seconds"]``: CPU time of this process on CPU (a
    shared machine slows it less than wall time), wall time once the GPU has finished on CUDA;
    and ``t["peak_mib"]``: on CUDA the allocator's peak during the block over its allocation at
    the start, on CPU None."""
    out = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        yield out
        torch.cuda.synchronize(device)
        out["seconds"] = time.perf_counter() - start
        out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        start = time.process_time()
        yield out
        out["seconds"] = time.process_time() - start
