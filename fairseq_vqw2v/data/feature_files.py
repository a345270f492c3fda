"""The feature file format: frozen features of a manifest split, as featurize writes them.

``{split}.feats.npy``: all utterances' frames concatenated (T_total x C, float16, a
memory-mappable ``.npy``); ``{split}.lengths``: frames per utterance, one line per manifest line,
in manifest order.
"""

import os
from typing import Iterable, List, Sequence, Tuple

import numpy as np
import torch


def write_features(dest: str, split: str, lengths: Sequence[int], dim: int,
                   batches: Iterable[Tuple[Sequence[int], List[torch.Tensor]]]) -> str:
    """Writes the features of every utterance of a split; returns the ``.npy`` path.

    Args:
        lengths: frames of each utterance (manifest line), known in advance so that the output
            is one preallocated memmap in manifest order.
        dim: feature size C.
        batches: (manifest indices, their T_i x C features), in any order, covering every line.
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
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
                feats[offsets[i] : offsets[i + 1]] = f.cpu().numpy().astype(np.float16)
        feats.flush()
        del feats
        os.replace(tmp_path, feats_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    with open(os.path.join(dest, f"{split}.lengths"), "w") as f:
        f.write("".join(f"{n}\n" for n in lengths))
    return feats_path


def feature_index(dest: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Opens features written by :func:`write_features`: (T_total x C fp16 memmap, offsets
    (N + 1,)), utterance i (manifest line i) being ``feats[offsets[i]:offsets[i + 1]]``."""
    feats = np.load(os.path.join(dest, f"{split}.feats.npy"), mmap_mode="r")
    lengths = np.loadtxt(os.path.join(dest, f"{split}.lengths"), dtype=np.int64, ndmin=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] != len(feats):
        raise ValueError(f"{dest}/{split}.lengths sums to {offsets[-1]} frames but "
                         f"{split}.feats.npy holds {len(feats)}")
    return feats, offsets
