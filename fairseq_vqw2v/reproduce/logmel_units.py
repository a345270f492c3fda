"""Units from k-means on log-mel frames: the baseline inventory of the quantize report, as files.

    python -m fairseq_vqw2v.reproduce.logmel_units --manifest-dir DATA --dest UNITS \\
        (--clusters K | --clusters-like OTHER_UNITS/train.usage.json) [--splits train,valid,test]

fits k-means on log-mel frames of ``--fit-split`` through ``fairseq_vqw2v.logmel_kmeans``, as the
quantize report's baseline does; with the defaults (``--fit-split train``, ``--seed`` 1, the
report's) the same frames, seed and iterations, so ``--clusters-like`` the Gumbel units' report
gives the baseline those units were measured against (``reproduce`` passes each chain's seed, so
its other chains get their own draw). It writes what the quantize CLI writes: per split
``{split}.src`` (one token per 10 ms frame, single-group tokens such as ``37``) and
``{split}.usage.json`` (with ``phones``: PNMI and purity when ``{split}.align`` exists), and
``dict.txt`` over all splits, so unit_mlm and ``--input bert --units-dir`` read them as they are.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

import torch

from ..cli import run, split_name, split_names
from ..data.manifest import read_manifest
from ..data.text_files import write_dictionary
from ..data.unit_files import codes_to_tokens, unit_dict_path, unit_path, write_unit_lines
from ..modules.logmel import LogMelFilterbank
from ..data.alignments import ALIGN_EXT, frame_phone_lines, read_alignments
from ..logmel_kmeans import (
    FIT_SPLIT, MAX_FIT_FRAMES, SEED, assign_clusters, fit_centroids, fit_frames, logmel_frames,
)
from ..unit_quality import cooccurrence, phone_measures, write_usage_report

CHUNK_UTTERANCES = 256
"""Utterances whose log-mel frames are held at once while assigning clusters."""


def split_units(manifest_path: str, centroids: torch.Tensor, logmel: LogMelFilterbank):
    """Cluster tokens of every utterance of a manifest, in manifest order (read in chunks)."""
    count = len(read_manifest(manifest_path).entries)
    for start in range(0, count, CHUNK_UTTERANCES):
        indices = range(start, min(start + CHUNK_UTTERANCES, count))
        for frames in logmel_frames(manifest_path, indices, logmel):
            yield codes_to_tokens(assign_clusters(frames.float(), centroids)[:, None])


def clusters_from(path: str) -> int:
    """``distinct_tokens`` of a quantize ``{split}.usage.json``."""
    try:
        with open(path) as f:
            return int(json.load(f)["distinct_tokens"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a usage report with distinct_tokens ({e})") from e


def write_units(args) -> str:
    start = time.time()
    k = args.clusters or clusters_from(args.clusters_like)
    fit_path = os.path.join(args.manifest_dir, f"{args.fit_split}.tsv")
    logmel = LogMelFilterbank()
    fit = fit_frames(fit_path, logmel, args.max_fit_frames, args.seed)
    centroids = fit_centroids(fit, k, args.seed, args.max_fit_frames)
    os.makedirs(args.dest, exist_ok=True)
    total = Counter()
    for split in args.splits:
        manifest_path = os.path.join(args.manifest_dir, f"{split}.tsv")
        lines = list(split_units(manifest_path, centroids, logmel))
        counts = write_unit_lines(unit_path(args.dest, split), lines)
        total.update(counts)
        phones = None
        align_path = os.path.join(args.manifest_dir, f"{split}.{ALIGN_EXT}")
        if os.path.exists(align_path):
            frame_phones = frame_phone_lines(read_alignments(align_path), range(len(lines)),
                                             [len(u) for u in lines], logmel.window_size, align_path)
            phones = {"units": phone_measures(cooccurrence(frame_phones, lines, align_path))}
        write_usage_report(args.dest, split, counts, k, 1, phones, "log-mel k-means units")
    write_dictionary(unit_dict_path(args.dest), total)
    return (f"log-mel k-means ({k} clusters, fit on {sum(len(f) for f in fit)} frames of "
            f"{args.fit_split}): {sum(total.values())} tokens of {','.join(args.splits)}, "
            f"{len(total)} distinct -> {args.dest} in {time.time() - start:.1f} s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fairseq_vqw2v.reproduce.logmel_units",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest-dir", required=True, help="folder of {split}.tsv")
    parser.add_argument("--dest", required=True, help="output folder")
    parser.add_argument("--splits", type=split_names, default="train,valid,test",
                        help="comma-separated splits")
    clusters = parser.add_mutually_exclusive_group(required=True)
    clusters.add_argument("--clusters", type=int, help="number of clusters K")
    clusters.add_argument("--clusters-like", metavar="USAGE_JSON",
                          help="as many clusters as this quantize report's distinct tokens")
    parser.add_argument("--fit-split", type=split_name, default=FIT_SPLIT,
                        help="split the k-means is fit on")
    parser.add_argument("--max-fit-frames", type=int, default=MAX_FIT_FRAMES,
                        help="frames to fit on")
    parser.add_argument("--seed", type=int, default=SEED)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(lambda: write_units(args))


if __name__ == "__main__":
    sys.exit(main())
