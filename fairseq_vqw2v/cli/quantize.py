"""Quantize manifests into unit token files with a trained vq_wav2vec checkpoint.

    python -m fairseq_vqw2v.cli.quantize --vq-checkpoint checkpoint_best.pt \\
        --manifest-dir data/manifests --splits train,valid,test --dest data/units [--report] [--bf16]

writes, for every split, ``{split}.src`` (one line of ``i0-i1`` tokens per manifest line, in
manifest order), copies ``{split}.wrd/.ltr/.phn`` when they exist, and writes one ``dict.txt``
counting the tokens of all the splits written. ``--report`` adds ``{split}.usage.json`` (distinct
tokens, code perplexity, bitrate) and ``{split}.usage.png`` (rank-frequency plot); for a split with
a phone alignment ``{split}.align`` (the embedded corpus writes them) the JSON also holds
``phones``: phone purity, unit purity and PNMI of the units, the same for the baseline (k-means
on log-mel frames, fit on train, as many clusters as the units use distinct tokens) and whether
the units beat it, and ``{split}.phones.png`` plots the phone x unit co-occurrence (see
``fairseq_vqw2v.unit_quality``). The outputs are complete or absent: a run that stops (a bad
audio file in the last split) leaves none of its files in ``--dest``
(:mod:`fairseq_vqw2v.data.staged_output`).

Sharding (e.g. one job per GPU or node): ``--shard i --num-shards n`` writes its part of every
split into the folder ``{split}.shard{i}of{n}``; once all n have finished, ``--merge --num-shards
n`` (same ``--splits`` and ``--dest``) writes ``{split}.src`` and ``dict.txt`` byte for byte as a
single job does and removes the parts. Shards take contiguous runs of the single job's
length-sorted batches of the whole split instead of batching again, so every utterance is
quantized in the same padded batch: run all shards on the same manifests with the same
``--batch-size-seconds`` and ``--bf16`` (and kind of device). A killed shard is rerun alone;
``--merge`` names the missing shards and writes nothing without them
(:mod:`fairseq_vqw2v.data.shards`).
"""

import argparse
import logging
import os
import shutil
import sys
import time
from collections import Counter

import torch.nn.functional as F
from tqdm import tqdm

from . import add_bf16_argument, add_shard_arguments, check_shard_arguments, run, split_names
from ._parallel import map_batches
from ..data.audio_dataset import full_utterance_dataset
from ..data.batching import length_batches, shard_batches
from ..data.audio_checks import duration_summary
from ..data.shards import shard_suffix, split_output
from ..data.staged_output import staged_folder
from ..data.text_files import write_dictionary
from ..data.unit_files import codes_to_tokens, merge_unit_shards, unit_dict_path, unit_path, write_unit_lines
from ..models.vq_wav2vec import codebook_shape, load_quantizer
from ..precision import bf16_autocast
from ..unit_quality import frame_window, phone_report, usage_stats, write_usage_report

logger = logging.getLogger("fairseq_vqw2v.quantize")

LABEL_EXTENSIONS = ("wrd", "ltr", "phn")


def pad_to_multiple(source, padding_mask, multiple):
    """B x T audio and padding mask, padded (True in the mask) to a multiple of ``multiple``."""
    extra = -source.size(1) % multiple
    return F.pad(source, (0, extra)), F.pad(padding_mask, (0, extra), value=True)


def quantize_split(model, dataset, batches, device, desc, bf16=False):
    """Tokens of each utterance of ``batches`` -> dict index -> list of tokens."""

    def quantize_batch(batch):
        collated = dataset.collater([dataset[i] for i in batch])
        net_input = collated["net_input"]
        # Half seconds: length-sorted batches then share a few dozen shapes, and oneDNN builds
        # its kernels once per shape (costly in bf16), not once per batch. Padding changes no
        # utterance's codes: each is normalised over its own frames.
        source, padding_mask = pad_to_multiple(net_input["source"], net_input["padding_mask"],
                                               dataset.sample_rate // 2)
        source, padding_mask = source.to(device), padding_mask.to(device)
        with bf16_autocast(source.device.type, bf16):
            codes = model.encode(source, padding_mask)
        return [codes_to_tokens(c) for c in codes]

    tokens = {}
    quantized = map_batches(quantize_batch, batches, device)
    for batch, batch_tokens in zip(batches, tqdm(quantized, total=len(batches), desc=desc,
                                                 unit="batch")):
        tokens.update(zip(batch, batch_tokens))
    return tokens


def copy_labels(manifest_dir, dest, split):
    copied = []
    for ext in LABEL_EXTENSIONS:
        src = os.path.join(manifest_dir, f"{split}.{ext}")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(dest, f"{split}.{ext}"))
            copied.append(ext)
    return copied


def phone_summary(split, phones):
    units, base = phones["units"], phones["logmel_kmeans"]
    return (
        f"{split}: units PNMI {units['pnmi']:.3f}, phone purity {units['phone_purity']:.3f} "
        f"({units['units']} distinct); log-mel k-means with {base['k']} clusters: PNMI "
        f"{base['pnmi']:.3f}, phone purity {base['phone_purity']:.3f} -> units "
        f"{'beat' if phones['beats_baseline'] else 'do not beat'} the baseline"
    )


def quantize(args):
    start = time.time()
    model, task_cfg = load_quantizer(args.checkpoint, args.device)
    num_vars, groups = codebook_shape(model)
    suffix = shard_suffix(args.shard, args.num_shards)
    total, sizes = Counter(), []
    logmel_cache, window = {}, frame_window(model.output_lengths)
    # an error in any split (a bad audio file) leaves no output of this run in --dest
    with staged_folder(args.dest) as out:
        for split in args.splits:
            dataset = full_utterance_dataset(args.manifest_dir, split, task_cfg)
            max_samples = int(args.batch_size_seconds * dataset.sample_rate)
            batches, indices = shard_batches(length_batches(dataset.sizes, range(len(dataset)),
                                                            max_samples), args.shard, args.num_shards)
            tokens = quantize_split(model, dataset, batches, args.device, split, args.bf16)
            with split_output(out, split, args.shard, args.num_shards, indices,
                              len(dataset)) as folder:
                counts = write_unit_lines(unit_path(folder, split),
                                          (tokens[i] for i in indices))
            total.update(counts)
            sizes += dataset.sizes[indices].tolist()
            copy_labels(args.manifest_dir, out, split)
            if args.report:
                phones = phone_report(
                    args.manifest_dir, split, indices, [tokens[i] for i in indices], window,
                    os.path.join(out, f"{split}{suffix}.phones.png"), cache=logmel_cache,
                )
                write_usage_report(out, split + suffix, counts, num_vars, groups, phones)
                if phones is not None:
                    print(phone_summary(split + suffix, phones))
        if args.num_shards == 1:
            write_dictionary(unit_dict_path(out), total)
    stats = usage_stats(total, num_vars, groups)
    written = os.path.join(args.dest, f"*{suffix}") if args.num_shards > 1 else args.dest
    print(
        f"quantized {duration_summary(sizes, dataset.sample_rate)} of {','.join(args.splits)} "
        f"into {stats['tokens']} tokens: {stats['distinct_tokens']} distinct of "
        f"{stats['possible_tokens']}, code perplexity {stats['code_perplexity']:.1f} of "
        f"{stats['max_code_perplexity']}, {stats['bitrate']:.0f} bit/s -> {written} "
        f"in {time.time() - start:.1f} s"
    )


def merge(args):
    lines, counts = merge_unit_shards(args.dest, args.splits, args.num_shards)
    print(
        f"merged {args.num_shards} shards of {','.join(args.splits)}: {lines} lines, "
        f"{sum(counts.values())} tokens, {len(counts)} distinct -> {args.dest}"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    # featurize's name for the same file; --checkpoint is the older spelling
    parser.add_argument("--vq-checkpoint", "--checkpoint", dest="checkpoint",
                        help="vq_wav2vec checkpoint (fairseq-train output)")
    parser.add_argument("--manifest-dir", help="folder of {split}.tsv and label files")
    parser.add_argument("--splits", type=split_names, default="train,valid,test",
                        help="comma-separated splits")
    parser.add_argument("--dest", required=True, help="output folder")
    parser.add_argument(
        "--batch-size-seconds", type=float, default=10.0,
        help="padded seconds of audio per batch (on CPU, larger batches run slower: the first "
        "layers' activations outgrow the caches; on a GPU use about 100)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--report", action="store_true", help="usage JSON + frequency plot")
    add_bf16_argument(parser)
    add_shard_arguments(parser)
    args = parser.parse_args(argv)
    check_shard_arguments(parser, args)
    if not args.merge and (args.checkpoint is None or args.manifest_dir is None):
        parser.error("--vq-checkpoint and --manifest-dir are required (except with --merge)")
    return args


def main(argv=None):
    args = parse_args(argv)
    return run(lambda: merge(args) if args.merge else quantize(args), level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
