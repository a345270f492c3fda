"""The feature file format: frozen features of a manifest split, as featurize writes them.

``{split}.feats.npy``: all utterances' frames concatenated (T_total x C, float16, a
memory-mappable ``.npy``); ``{split}.lengths``: frames per utterance, one line per manifest line,
in manifest order. A shard's part (:mod:`fairseq_vqw2v.data.shards`) holds the same two files for
its utterances only.
"""

import os
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .shards import finished_parts, manifest_order, remove_parts


def write_features(dest: str, split: str, lengths: Sequence[int], dim: int,
                   batches: Iterable[Tuple[Sequence[int], List[torch.Tensor]]],
                   indices: Optional[Sequence[int]] = None) -> str:
    """Writes the features of the utterances of a split; returns the ``.npy`` path.

    Args:
        lengths: frames of each utterance (manifest line), known in advance so that the output
            is one preallocated memmap.
        dim: feature size C.
        batches: (manifest indices, their T_i x C features), in any order, covering ``indices``.
        indices: the manifest lines written, in this order (a shard's); default all of them.
    """
    if indices is None:
        indices = range(len(lengths))
    position = {i: j for j, i in enumerate(indices)}
    written = [lengths[i] for i in indices]
    offsets = np.concatenate([[0], np.cumsum(written)]).astype(np.int64)
    os.makedirs(dest, exist_ok=True)
    feats_path = os.path.join(dest, f"{split}.feats.npy")
    # a run that fails leaves no partial .npy that a later run could take for a finished one
    tmp_path = feats_path + ".tmp.npy"
    try:
        feats = np.lib.format.open_memmap(
            tmp_path, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), dim)
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
    with open(os.path.join(dest, f"{split}.lengths"), "w") as f:
        f.write("".join(f"{n}\n" for n in written))
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
        dest, split, lengths, opened[0][0].shape[1],
        (([i], [torch.from_numpy(np.array(r))]) for i, r in enumerate(rows)),
    )
    remove_parts(parts)
    return feats_path, lengths


def feature_index(dest: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Opens features written by :func:`write_features`: (T_total x C fp16 memmap, offsets
    (N + 1,)), utterance i (manifest line i) being ``feats[offsets[i]:offsets[i + 1]]``."""
    feats = np.load(os.path.join(dest, f"{split}.feats.npy"), mmap_mode="r")
    # not np.loadtxt, which warns on the empty file of a shard that got no batch
    with open(os.path.join(dest, f"{split}.lengths")) as f:
        lengths = np.array(f.read().split(), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] != len(feats):
        raise ValueError(f"{dest}/{split}.lengths sums to {offsets[-1]} frames but "
                         f"{split}.feats.npy holds {len(feats)}")
    return feats, offsets
