"""Command-line entry points, thin wrappers over the package: the runner every CLI goes through
and the arguments several of them share."""

import argparse
import logging
import sys
from typing import Callable, List, Optional

from ..data.manifest import check_split_name
from ..modules.onednn_linear import limit_primitive_cache
from ._allocator import keep_freed_memory


def run(command: Callable[[], Optional[str]], level: int = logging.INFO) -> int:
    """Runs one CLI command: the process set up for inference, logging set up, its one-line
    summary printed, and bad input (an ``OSError`` or ``ValueError`` naming the file at fault)
    printed as ``error: ...`` with exit status 1 instead of a traceback."""
    # force: importing fairseq may already have configured the root logger
    logging.basicConfig(format="%(levelname)s | %(name)s | %(message)s", level=level, force=True)
    keep_freed_memory()
    limit_primitive_cache()
    try:
        summary = command()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if summary:
        print(summary)
    return 0


def split_name(text: str) -> str:
    """argparse ``type`` of a split name: it becomes file names (``{split}.tsv``, ``{split}.src``)
    in the input and output folders, so a path separator or ``..`` is refused."""
    try:
        return check_split_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def split_names(text: str) -> List[str]:
    """argparse ``type`` of comma-separated split names (each a :func:`split_name`; at least
    one)."""
    names = [split_name(s) for s in text.split(",") if s]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no split")
    return names


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
