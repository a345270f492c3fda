"""The feature file format: frozen features of a manifest split, as featurize writes them.

``{split}.feats.npy``: all utterances' frames concatenated (T_total x C, float16, a
memory-mappable ``.npy``); ``{split}.lengths``: frames per utterance, one line per manifest line,
in manifest order. Features of K BERT layers are T_total x K x C, with ``{split}.layers`` beside
them: the K layer indices on one line (0 is the embeddings' output). A shard's part
(:mod:`fairseq_vqw2v.data.shards`) holds the same files for its utterances only.
"""

import os
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .shards import finished_parts, manifest_order, remove_parts


def features_path(folder: str, split: str) -> str:
    """``{folder}/{split}.feats.npy``: a split's frames."""
    return os.path.join(folder, f"{split}.feats.npy")


def lengths_path(folder: str, split: str) -> str:
    """``{folder}/{split}.lengths``: frames per utterance."""
    return os.path.join(folder, f"{split}.lengths")


def layers_path(folder: str, split: str) -> str:
    """``{folder}/{split}.layers``: the BERT layers of features that hold several."""
    return os.path.join(folder, f"{split}.layers")


def write_features(dest: str, split: str, lengths: Sequence[int], frame_shape: Sequence[int],
                   batches: Iterable[Tuple[Sequence[int], List[torch.Tensor]]],
                   indices: Optional[Sequence[int]] = None,
                   layers: Optional[Sequence[int]] = None) -> str:
    """Writes the features of the utterances of a split; returns the ``.npy`` path.

    Args:
        lengths: frames of each utterance (manifest line), known in advance so that the output
            is one preallocated memmap.
        frame_shape: (C,), or (K, C) for K layers.
        batches: (manifest indices, their T_i x C (or T_i x K x C) features), in any order,
            covering ``indices``.
        indices: the manifest lines written, in this order (a shard's); default all of them.
        layers: with (K, C) frames, the K layer indices, written to ``{split}.layers``.
    """
    if (layers is not None) != (len(frame_shape) == 2) or (
            layers is not None and len(layers) != frame_shape[0]):
        raise ValueError(f"frames of shape {tuple(frame_shape)} need layer indices for 2 axes "
                         f"only, got {layers}")
    if indices is None:
        indices = range(len(lengths))
    position = {i: j for j, i in enumerate(indices)}
    written = [lengths[i] for i in indices]
    offsets = np.concatenate([[0], np.cumsum(written)]).astype(np.int64)
    os.makedirs(dest, exist_ok=True)
    feats_path = features_path(dest, split)
    # a run that fails leaves no partial .npy that a later run could take for a finished one
    tmp_path = feats_path + ".tmp.npy"
    try:
        feats = np.lib.format.open_memmap(
            tmp_path, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), *frame_shape)
        )
        for batch, outputs in batches:
            for i, f in zip(batch, outputs):
                if len(f) != lengths[i]:
                    raise RuntimeError(f"utterance {i}: {len(f)} frames, expected {lengths[i]}")
                j = position[i]
                feats[offsets[j] : offsets[j + 1]] = f.cpu().numpy().astype(np.float16)
        feats.flush()
        del feats
        os.replace(tmp_path, feats_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    with open(lengths_path(dest, split), "w") as f:
        f.write("".join(f"{n}\n" for n in written))
    if layers is not None:
        with open(layers_path(dest, split), "w") as f:
            f.write(" ".join(map(str, layers)) + "\n")
    return feats_path


def merge_feature_shards(dest: str, split: str, num_shards: int) -> Tuple[str, List[int]]:
    """Writes ``{split}.feats.npy`` and ``{split}.lengths`` in ``dest`` from the parts of its
    ``num_shards`` shards, in manifest order, and removes the parts; returns (the ``.npy`` path,
    frames per utterance)."""
    parts = finished_parts(dest, [split], num_shards)
    opened = [feature_index(folder, split) for folder in parts[split]]
    rows = []  # memmap views, read when written
    for p, j in manifest_order(parts[split]):
        feats, offsets = opened[p]
        rows.append(feats[offsets[j] : offsets[j + 1]])
    lengths = [len(r) for r in rows]
    feats_path = write_features(
        dest, split, lengths, opened[0][0].shape[1:],
        (([i], [torch.from_numpy(np.array(r))]) for i, r in enumerate(rows)),
        layers=feature_layers(parts[split][0], split),
    )
    remove_parts(parts)
    return feats_path, lengths


def feature_index(dest: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Opens features written by :func:`write_features`: (T_total x C or T_total x K x C fp16
    memmap, offsets (N + 1,)), utterance i (manifest line i) being ``feats[offsets[i]:offsets[i + 1]]``."""
    feats = np.load(features_path(dest, split), mmap_mode="r")
    # not np.loadtxt, which warns on the empty file of a shard that got no batch
    with open(lengths_path(dest, split)) as f:
        lengths = np.array(f.read().split(), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] != len(feats):
        raise ValueError(f"{lengths_path(dest, split)} sums to {offsets[-1]} frames but "
                         f"{split}.feats.npy holds {len(feats)}")
    layers = feature_layers(dest, split)
    if feats.ndim == 3 and (layers is None or len(layers) != feats.shape[1]):
        raise ValueError(f"{features_path(dest, split)} holds {feats.shape[1]} layers per frame but "
                         f"{split}.layers names {layers}")
    return feats, offsets


def feature_layers(dest: str, split: str) -> Optional[List[int]]:
    """The layer indices of K-layer features (``{split}.layers``), or None for one layer."""
    path = layers_path(dest, split)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    try:
        return [int(i) for i in text.split()]
    except ValueError:
        raise ValueError(f"{path}: not a line of layer numbers: {text.strip()[:80]!r}") from None
