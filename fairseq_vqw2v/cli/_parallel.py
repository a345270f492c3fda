"""Inference batches run side by side on CPU threads, results in order."""

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import torch

Batch = TypeVar("Batch")
Result = TypeVar("Result")


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
