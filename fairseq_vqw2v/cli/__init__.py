"""Command-line entry points: thin wrappers over the package."""

import argparse
import collections
import ctypes
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import torch

Batch = TypeVar("Batch")
Result = TypeVar("Result")


def keep_freed_memory() -> None:
    """Tells glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of returning
    them to the OS. By default it unmaps large freed blocks and trims the heap, so each batch's
    activations (megabytes per layer) fault their pages in again, a large share of the quantize
    CLI's time on CPU (``docs/benchmarks.md``). Peak memory is unchanged; only the process's own
    batch jobs (these CLIs) do this, never an import. A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def map_batches(fn: Callable[[Batch], Result], batches: Sequence[Batch], device: str
                ) -> Iterator[Result]:
    """``fn(batch)`` for each of ``batches``, in order. On CPU with n > 1 torch threads, n
    batches run at once, one per thread, each of their ops on one core: an encoder batch's
    per-utterance steps and small ops leave the other cores of a multi-threaded op idle; side
    by side they keep every core busy, with the same output. Elsewhere (a GPU, one thread) one
    after the other. ``fn`` enters its own autocast or grad mode: they are per thread."""
    threads = torch.get_num_threads()
    if torch.device(device).type != "cpu" or threads == 1:
        yield from map(fn, batches)
        return
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(threads)
    try:
        pending = collections.deque()
        for batch in batches:
            # a few batches ahead: results wait for the consumer in memory
            if len(pending) == 2 * threads:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, batch))
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)
        torch.set_num_threads(threads)


def run(command: Callable[[], Optional[str]], level: int = logging.INFO) -> int:
    """Runs one CLI command: logging set up, its one-line summary printed, and bad input (an
    ``OSError`` or ``ValueError`` naming the file at fault) printed as ``error: ...`` with exit
    status 1 instead of a traceback."""
    # force: importing fairseq may already have configured the root logger
    logging.basicConfig(format="%(levelname)s | %(name)s | %(message)s", level=level, force=True)
    keep_freed_memory()
    try:
        summary = command()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if summary:
        print(summary)
    return 0


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard i --num-shards n`` and ``--merge`` (see :mod:`fairseq_vqw2v.data.shards`)."""
    group = parser.add_argument_group("sharding: n independent jobs (one per GPU or node), merged")
    group.add_argument("--shard", type=int, default=0, help="this job's shard (0-based)")
    group.add_argument("--num-shards", type=int, default=1, help="number of shards")
    group.add_argument("--merge", action="store_true",
                       help="write the outputs from all --num-shards shards' parts, then exit")


def add_bf16_argument(parser: argparse.ArgumentParser) -> None:
    """``--bf16``: inference under bf16 autocast (:mod:`fairseq_vqw2v.precision`)."""
    parser.add_argument("--bf16", action="store_true",
                        help="run the models under bf16 autocast: on CPUs with AVX512-BF16 or AMX "
                        "and bf16 GPUs (elsewhere fp32, with a message); codes and argmaxes stay "
                        "fp32")


def check_shard_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard {args.shard} is not in [0, --num-shards {args.num_shards})")
    if args.merge and args.num_shards < 2:
        parser.error("--merge joins the parts of --num-shards N > 1 shards")
