"""Sharded extraction: a split's outputs computed by independent jobs (one per GPU or node) and
merged into the files a single job writes.

Shard ``i`` of ``n`` writes its part of split ``s`` into the folder ``{dest}/{s}.shard{i}of{n}``:
the files a single job writes into ``dest``, holding only the shard's utterances, plus
``indices`` (their manifest lines, 0-based, one a line, in the files' order) and ``utterances``
(how many lines the split's manifest has, so that a merge misses no line, the last ones
included). The folder is
written under a temporary name and renamed once complete, so a part that exists is whole and a
killed shard is rerun on its own. Which utterances a shard computes is
:func:`fairseq_vqw2v.data.batching.shard_batches`'s choice.
"""

import os
import shutil
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence, Tuple

PART_INDICES = "indices"
PART_UTTERANCES = "utterances"
_MISMATCH = "were the shards run on the same manifest with the same --batch-size-seconds?"


def shard_suffix(shard: int, num_shards: int) -> str:
    """What a shard appends to the names it writes (nothing for a single job)."""
    return f".shard{shard}of{num_shards}" if num_shards > 1 else ""


def output_folder(dest: str, split: str, shard: int, num_shards: int) -> str:
    """Where a job's files of ``split`` go: ``dest``, or for a shard its part folder."""
    return os.path.join(dest, split + shard_suffix(shard, num_shards)) if num_shards > 1 else dest


@contextmanager
def split_output(dest: str, split: str, shard: int, num_shards: int,
                 indices: Sequence[int], utterances: int) -> Iterator[str]:
    """A folder to write a job's files of ``split`` into: ``dest`` for a single job; for a shard,
    one that becomes its part folder (with ``indices``, the manifest lines the files hold, and
    ``utterances``, the split's) only when the block has finished without an error."""
    if num_shards == 1:
        os.makedirs(dest, exist_ok=True)
        yield dest
        return
    final = output_folder(dest, split, shard, num_shards)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run of this shard
    os.makedirs(tmp)
    try:
        yield tmp
        with open(os.path.join(tmp, PART_INDICES), "w") as f:
            f.write("".join(f"{i}\n" for i in indices))
        with open(os.path.join(tmp, PART_UTTERANCES), "w") as f:
            f.write(f"{utterances}\n")
        shutil.rmtree(final, ignore_errors=True)  # a finished shard run again
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def finished_parts(dest: str, splits: Sequence[str], num_shards: int) -> Dict[str, List[str]]:
    """Every split's part folders, shard by shard; any missing is an error naming them all."""
    parts = {s: [output_folder(dest, s, i, num_shards) for i in range(num_shards)] for s in splits}
    missing = [(split, shard) for split, folders in parts.items()
               for shard, folder in enumerate(folders) if not os.path.isdir(folder)]
    if missing:
        shards = ", ".join(map(str, sorted({shard for _, shard in missing})))
        names = ", ".join(split + shard_suffix(shard, num_shards) for split, shard in missing)
        raise FileNotFoundError(
            f"cannot merge: missing shard(s) {shards} of {num_shards} (no {names} in {dest}); "
            f"rerun each with --shard N --num-shards {num_shards}"
        )
    return parts


def manifest_order(folders: Sequence[str]) -> List[Tuple[int, int]]:
    """(part, position in that part) of each manifest line in order; the parts must agree on the
    split's size and their ``indices`` hold every line once."""
    sizes = []
    for folder in folders:
        path = os.path.join(folder, PART_UTTERANCES)
        try:
            with open(path) as f:
                sizes.append(int(f.read()))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable ({e}); rerun this shard") from None
    if len(set(sizes)) > 1:
        raise ValueError(f"the parts disagree on the split's size ({', '.join(map(str, sizes))} "
                         f"utterances in {', '.join(folders)}): {_MISMATCH}")
    where = {}
    for p, folder in enumerate(folders):
        path = os.path.join(folder, PART_INDICES)
        with open(path) as f:
            for j, line in enumerate(f):
                i = int(line)
                if i in where or not 0 <= i < sizes[p]:
                    raise ValueError(f"{path}:{j + 1}: manifest line {i} is "
                                     + (f"also in {folders[where[i][0]]}" if i in where else
                                        f"not one of the split's {sizes[p]}") + f": {_MISMATCH}")
                where[i] = (p, j)
    gaps = sorted(set(range(sizes[0])) - set(where))
    if gaps:
        raise ValueError(f"no part in {os.path.dirname(folders[0])} holds manifest line "
                         f"{gaps[0]}: {_MISMATCH}")
    return [where[i] for i in range(sizes[0])]


def remove_parts(parts: Dict[str, List[str]]) -> None:
    for folders in parts.values():
        for folder in folders:
            shutil.rmtree(folder)
