"""Frozen BERT features for a manifest split: audio -> vq-wav2vec units -> unit_bert.

    python -m fairseq_vqw2v.cli.featurize --vq-checkpoint vq.pt --bert-checkpoint bert.pt \\
        --manifest-dir data/manifests --split train --dest data/bert_feats [--layer N] [--device cuda]

writes ``{split}.feats.npy`` (all utterances' frames concatenated, T_total x C, float16, a
memory-mappable ``.npy``) and ``{split}.lengths`` (frames per utterance, one line per manifest
line, same order); :func:`fairseq_vqw2v.features.feature_index` opens them. The features are the
final Transformer layer's output (``--layer N``: layer N), one vector per vq-wav2vec frame (10 ms);
utterances longer than BERT's positions are encoded in consecutive windows (see
:class:`fairseq_vqw2v.features.UnitBertFeaturizer`). Runs on CPU by default; no data parallelism.
"""

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from . import run
from ..data.audio_dataset import full_utterance_dataset
from ..data.batching import length_batches
from ..features import UnitBertFeaturizer
from ..units import load_quantizer

logger = logging.getLogger("fairseq_vqw2v.featurize")


def check_unknown_units(featurizer: UnitBertFeaturizer, args) -> None:
    """Stops when more than ``--max-unknown-units`` of the units so far are not in BERT's
    dictionary: the two checkpoints were not trained on the same units."""
    share = featurizer.units_unknown / max(featurizer.units_seen, 1)
    if share > args.max_unknown_units:
        raise ValueError(
            f"{featurizer.units_unknown} of {featurizer.units_seen} units ({share:.0%}) of "
            f"{args.vq_checkpoint} are not in the dictionary of {args.bert_checkpoint} (limit "
            f"--max-unknown-units {args.max_unknown_units:.0%}): was the BERT trained on units "
            "of this quantizer?"
        )


def featurize(args) -> str:
    start = time.time()
    vq_model, task_cfg = load_quantizer(args.vq_checkpoint, args.device)
    featurizer = UnitBertFeaturizer.from_checkpoint(args.bert_checkpoint, args.layer, args.device)
    dataset = full_utterance_dataset(args.manifest_dir, args.split, task_cfg)
    # frame counts first, so the output can be one preallocated memmap in manifest order
    lengths = vq_model.output_lengths(torch.as_tensor(dataset.sizes, dtype=torch.long)).tolist()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    os.makedirs(args.dest, exist_ok=True)
    feats_path = os.path.join(args.dest, f"{args.split}.feats.npy")
    tmp_path = feats_path + ".tmp.npy"
    try:
        feats = np.lib.format.open_memmap(
            tmp_path, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), featurizer.dim)
        )
        max_samples = int(args.batch_size_seconds * dataset.sample_rate)
        batches = length_batches(dataset.sizes, range(len(dataset)), max_samples)
        for batch in tqdm(batches, desc=f"featurize {args.split}", unit="batch"):
            collated = dataset.collater([dataset[i] for i in batch])
            net_input = collated["net_input"]
            outputs = featurizer.from_audio(
                vq_model, net_input["source"].to(args.device),
                net_input["padding_mask"].to(args.device),
            )
            check_unknown_units(featurizer, args)
            for i, f in zip(batch, outputs):
                if len(f) != lengths[i]:
                    raise RuntimeError(f"utterance {i}: {len(f)} frames, expected {lengths[i]}")
                feats[offsets[i] : offsets[i + 1]] = f.cpu().numpy().astype(np.float16)
        feats.flush()
        del feats
        os.replace(tmp_path, feats_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    with open(os.path.join(args.dest, f"{args.split}.lengths"), "w") as f:
        f.write("".join(f"{n}\n" for n in lengths))
    layer = args.layer or len(featurizer.model.encoder.layers)
    return (f"featurized {len(lengths)} utterances of {args.split} ({offsets[-1]} frames, "
            f"{featurizer.dim}-dim, layer {layer}) -> {feats_path} in {time.time() - start:.1f} s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m fairseq_vqw2v.cli.featurize",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--vq-checkpoint", required=True, help="vq_wav2vec checkpoint")
    parser.add_argument("--bert-checkpoint", required=True,
                        help="unit_bert checkpoint (dict.txt beside it or in its data folder)")
    parser.add_argument("--manifest-dir", required=True, help="folder with {split}.tsv")
    parser.add_argument("--split", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--layer", type=int, default=None,
                        help="Transformer layer to output (1-based; default the last)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-unknown-units", type=float, default=0.05,
                        help="largest share of units missing from BERT's dictionary (<unk>) "
                        "before featurizing stops: a quantizer and BERT that do not match")
    parser.add_argument("--batch-size-seconds", type=float, default=60.0,
                        help="audio per vq-wav2vec batch, padding included")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(lambda: featurize(args))


if __name__ == "__main__":
    sys.exit(main())
