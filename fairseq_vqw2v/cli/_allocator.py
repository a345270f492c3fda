"""glibc's allocator tuned for batch jobs whose every batch allocates the same large buffers."""

import ctypes


def keep_freed_memory() -> None:
    """Tells glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of returning
    them to the OS. By default it unmaps large freed blocks and trims the heap, so each batch's
    activations (megabytes per layer) fault their pages in again, a large share of the quantize
    CLI's time on CPU (``docs/benchmarks.md``). Peak memory is unchanged; only the process's own
    batch jobs (the CLIs, through :func:`fairseq_vqw2v.cli.run`) do this, never an import. A
    no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 2**31 - 1)
