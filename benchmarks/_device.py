"""Where a benchmark runs: the device's name, timing that waits for it, peak memory, and the
peak throughput that model FLOP utilisation (MFU) is measured against."""

import time
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

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


class Clock:
    """Seconds of work on ``device``: CPU time of this process on CPU (a shared machine slows it
    less than wall time), wall time after the GPU has finished on CUDA; and peak memory above
    what was allocated before (CUDA) ."""

    def __init__(self, device: torch.device):
        self.device = device

    @contextmanager
    def timed(self) -> Iterator[dict]:
        """``with clock.timed() as t: ...`` then ``t["seconds"]``, ``t["peak_mib"]`` (CUDA: the
        allocator's peak during the block over its allocation at the start; CPU: None)."""
        out = {"peak_mib": None}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            start = time.perf_counter()
            yield out
            torch.cuda.synchronize(self.device)
            out["seconds"] = time.perf_counter() - start
            out["peak_mib"] = (torch.cuda.max_memory_allocated(self.device) - before) / 2**20
        else:
            start = time.process_time()
            yield out
            out["seconds"] = time.process_time() - start


@contextmanager
def counted_flops() -> Iterator[FlopCounterMode]:
    """Counts the FLOPs of the matrix products run in the block (forward and backward), as MFU
    counts them; ``.get_total_flops()`` after."""
    counter = FlopCounterMode(display=False)
    with counter:
        yield counter
