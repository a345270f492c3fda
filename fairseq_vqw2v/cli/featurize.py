"""Frozen features for a manifest split: audio -> vq-wav2vec units -> unit_bert, or (without
``--bert-checkpoint``) the vq-wav2vec aggregator output ``c`` (the paper's wav2vec row).

    python -m fairseq_vqw2v.cli.featurize --vq-checkpoint vq.pt [--bert-checkpoint bert.pt] \\
        --manifest-dir data/manifests --splits train,valid,test --dest data/feats [--layers all] \\
        [--device cuda] [--bf16]
    python -m fairseq_vqw2v.cli.featurize --units-dir units/ --bert-checkpoint bert.pt ...

(the second: BERT on units already written by quantize, e.g. the log-mel k-means units)

``--splits`` and ``--vq-checkpoint`` are quantize's names for the same things (``--split`` is the
older spelling); the models load once for all the splits. For every split, writes
``{split}.feats.npy`` (all utterances' frames concatenated, T_total x C, float16, a
memory-mappable ``.npy``) and ``{split}.lengths`` (frames per utterance, one line per manifest
line, same order), the format of :mod:`fairseq_vqw2v.data.feature_files`; the acoustic model
reads them with ``--input bert|wav2vec --features DEST``. BERT features are the final
Transformer layer's output, one vector per vq-wav2vec frame (10 ms); utterances longer than BERT's
positions are encoded in consecutive windows (see
:class:`fairseq_vqw2v.models.unit_bert.UnitBertFeaturizer`). Runs on CPU by default.

``--layers N`` (or ``--layer N``) writes layer N's output instead (0: the embeddings' output);
``--layers all`` or a comma list ``0,4,8`` writes K layers per frame (T_total x K x C, their
indices in ``{split}.layers``), from which an acoustic model learns a weighted sum
(``--bert-layers`` of ``w2l_ctc``). Disk: 100 frames/s x K x C x 2 bytes, so one layer of
unit_bert_base (C 768) takes 553 MB per hour of audio, and ``--layers all`` of it (12 layers and
the embeddings: K 13) 13 x 768 x 2 B x 360,000 frames = 7.2 GB per hour; unit_bert_large (K 25,
C 1024) 18.4 GB per hour.

Sharding (e.g. one job per GPU or node): ``--shard i --num-shards n`` writes its part of the
split into the folder ``{split}.shard{i}of{n}``; once all n have finished, ``--merge --num-shards
n`` (same ``--splits`` and ``--dest``) writes ``{split}.feats.npy`` and ``{split}.lengths`` byte for
byte as a single job does and removes the parts. Shards take contiguous runs of the single job's
length-sorted batches of the whole split instead of batching again, so every utterance is
computed in the same padded batch: run all shards on the same inputs with the same
``--batch-size-seconds`` and ``--bf16`` (and kind of device). A killed shard is rerun alone;
``--merge`` names the missing shards and writes nothing without them
(:mod:`fairseq_vqw2v.data.shards`).
"""

import argparse
import functools
import logging
import os
import sys
import time

import torch
from tqdm import tqdm

from . import add_bf16_argument, add_shard_arguments, check_shard_arguments, run, split_names
from ._parallel import map_batches
from ..constants import FRAME_RATE
from ..data.asr_dataset import UnitSource
from ..data.audio_dataset import full_utterance_dataset
from ..data.batching import length_batches, shard_batches
from ..data.feature_files import features_path, merge_feature_shards, write_features
from ..data.manifest import read_manifest
from ..data.shards import output_folder, split_output
from ..data.unit_files import MAX_UNKNOWN_UNITS, check_unknown_units
from ..models.frontends import wav2vec_c, wav2vec_dim
from ..models.unit_bert import UnitBertFeaturizer
from ..models.vq_wav2vec import load_quantizer, load_vq_wav2vec
from ..precision import bf16_autocast

logger = logging.getLogger("fairseq_vqw2v.featurize")


def _checking_unknown_units(batches, featurizer: UnitBertFeaturizer, args):
    """Stops when more than ``--max-unknown-units`` of the units so far are not in BERT's
    dictionary: the units and the BERT were not made from the same quantizer."""
    for batch, outputs in batches:
        check_unknown_units(featurizer.units_unknown, featurizer.units_seen,
                            args.max_unknown_units, args.units_dir or args.vq_checkpoint,
                            args.bert_checkpoint)
        yield batch, outputs


class AggregatorFeaturizer:
    """The vq-wav2vec aggregator output ``c`` per utterance (continuous or quantizing model)."""

    def __init__(self, vq_model):
        self.frame_shape = (wav2vec_dim(vq_model),)

    @torch.no_grad()
    def from_audio(self, vq_model, source, padding_mask):
        c, frames = wav2vec_c(vq_model, source, padding_mask)
        return [c[b, :n] for b, n in enumerate(frames.tolist())]


def _audio_batches(args, vq_model, task_cfg, featurizer, split):
    """(frames per utterance, the split's batches, batch -> features) computed from the audio."""
    dataset = full_utterance_dataset(args.manifest_dir, split, task_cfg)
    lengths = vq_model.output_lengths(torch.as_tensor(dataset.sizes, dtype=torch.long)).tolist()
    max_samples = int(args.batch_size_seconds * dataset.sample_rate)

    def features(batch):
        net_input = dataset.collater([dataset[i] for i in batch])["net_input"]
        return featurizer.from_audio(vq_model, net_input["source"].to(args.device),
                                     net_input["padding_mask"].to(args.device))

    return lengths, length_batches(dataset.sizes, range(len(dataset)), max_samples), features


def _unit_batches(args, featurizer, split):
    """(frames per utterance, the split's batches, batch -> features) from a quantize folder's
    units."""
    manifest = read_manifest(os.path.join(args.manifest_dir, f"{split}.tsv"))
    units = UnitSource(args.units_dir, split, len(manifest.entries))
    lengths = units.frames.tolist()
    max_frames = int(args.batch_size_seconds * FRAME_RATE)

    def features(batch):
        return featurizer([featurizer.token_ids(units[i]) for i in batch])

    return lengths, length_batches(lengths, range(len(units)), max_frames), features


def _in_precision(features, args):
    """``features`` (batch -> list of tensors) under ``--bf16`` autocast, returning fp32 (numpy,
    which writes the files, has no bf16)."""
    device_type = torch.device(args.device).type

    def run_batch(batch):
        with bf16_autocast(device_type, args.bf16):
            return [f.float() for f in features(batch)]

    return run_batch


def featurize(args) -> str:
    """Loads the models once and featurizes every split of ``--splits``; one summary line each."""
    if args.bert_checkpoint:
        featurizer = UnitBertFeaturizer.from_checkpoint(args.bert_checkpoint, args.layers, args.device)
        what = f"BERT layers {','.join(map(str, featurizer.layers))}"
        if args.units_dir:
            split_batches = functools.partial(_unit_batches, args, featurizer)
            what += f" on the units of {args.units_dir}"
        else:
            vq_model, task_cfg = load_quantizer(args.vq_checkpoint, args.device)
            split_batches = functools.partial(_audio_batches, args, vq_model, task_cfg, featurizer)
    else:
        vq_model, task_cfg = load_vq_wav2vec(args.vq_checkpoint, args.device)
        featurizer = AggregatorFeaturizer(vq_model)
        split_batches = functools.partial(_audio_batches, args, vq_model, task_cfg, featurizer)
        what = "vq-wav2vec aggregator output c"
    return "\n".join(_featurize_split(args, split, featurizer, split_batches(split), what)
                     for split in args.splits)


def _featurize_split(args, split, featurizer, split_batches, what) -> str:
    """Writes one split's features (this job's shard of them); returns its summary line."""
    start = time.time()
    lengths, batches, features = split_batches
    batches, indices = shard_batches(batches, args.shard, args.num_shards)
    features = _in_precision(features, args)
    computed = zip(batches, map_batches(features, batches, args.device))
    if args.bert_checkpoint:
        computed = _checking_unknown_units(computed, featurizer, args)
    with split_output(args.dest, split, args.shard, args.num_shards, indices,
                      len(lengths)) as folder:
        write_features(folder, split, lengths, featurizer.frame_shape,
                       tqdm(computed, total=len(batches), desc=f"featurize {split}",
                            unit="batch"), indices,
                       layers=featurizer.layers if len(featurizer.frame_shape) == 2 else None)
    written = features_path(output_folder(args.dest, split, args.shard, args.num_shards), split)
    return (f"featurized {len(indices)} utterances of {split} "
            f"({sum(lengths[i] for i in indices)} frames, "
            f"{' x '.join(map(str, featurizer.frame_shape))}-dim, {what}) -> "
            f"{written} in {time.time() - start:.1f} s")


def merge(args) -> str:
    lines = []
    for split in args.splits:
        feats_path, lengths = merge_feature_shards(args.dest, split, args.num_shards)
        lines.append(f"merged {args.num_shards} shards of {split}: {len(lengths)} utterances, "
                     f"{sum(lengths)} frames -> {feats_path}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m fairseq_vqw2v.cli.featurize",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--vq-checkpoint", help="vq_wav2vec checkpoint (the audio's units, or c)")
    parser.add_argument("--units-dir", help="with --bert-checkpoint: a quantize folder's "
                        "{split}.src units instead of --vq-checkpoint (any unit inventory)")
    parser.add_argument("--bert-checkpoint",
                        help="unit_bert checkpoint (dict.txt beside it or in its data folder); "
                        "without it the features are the vq-wav2vec aggregator output c")
    parser.add_argument("--manifest-dir", help="folder with {split}.tsv")
    parser.add_argument("--splits", "--split", dest="splits", type=split_names, required=True,
                        help="comma-separated splits (quantize's name; --split is the older "
                        "spelling)")
    parser.add_argument("--dest", required=True)
    parser.add_argument("--layers", "--layer", default="last",
                        help="BERT: the layers to output: last (default), N (0: the embeddings' "
                        "output), a comma list or all (K layers: T x K x C, 100 x K x C x 2 bytes "
                        "per second of audio)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-unknown-units", type=float, default=MAX_UNKNOWN_UNITS,
                        help="largest share of units missing from BERT's dictionary (<unk>) "
                        "before featurizing stops: a quantizer and BERT that do not match")
    add_bf16_argument(parser)
    parser.add_argument("--batch-size-seconds", type=float, default=60.0,
                        help="audio per vq-wav2vec batch, padding included")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)
    check_shard_arguments(parser, args)
    if args.merge:
        return args
    if args.manifest_dir is None:
        parser.error("--manifest-dir is required (except with --merge)")
    if args.layers != "last" and not args.bert_checkpoint:
        parser.error("--layers selects BERT layers: it needs --bert-checkpoint")
    if args.units_dir and not args.bert_checkpoint:
        parser.error("--units-dir gives BERT its units: it needs --bert-checkpoint")
    if bool(args.units_dir) == bool(args.vq_checkpoint):
        parser.error("give either --vq-checkpoint or (with --bert-checkpoint) --units-dir")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(lambda: merge(args) if args.merge else featurize(args))


if __name__ == "__main__":
    sys.exit(main())
