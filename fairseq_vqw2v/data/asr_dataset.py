"""Utterances with their CTC targets, for the acoustic model: audio, cached features or units.

Every source gives one tensor per manifest line and its length in 10 ms frames, so that
``--max-tokens`` means frames per batch whatever the acoustic model is fed:

- :class:`AudioSource`: the waveform (T samples), for the log-mel frontend and for upstream models
  computed on the fly;
- :class:`FeatureSource`: frozen features written by ``featurize`` (T x C, or T x K x C for K
  BERT layers; memory-mapped);
- :class:`UnitSource`: the codes of a ``quantize`` output folder (T x G).

A batch is ``{"id": B, "net_input": {"source": B x T[ x C], "source_lengths": B},
"target": B x L (padded), "target_lengths": B, "ntokens": labels, "nsentences": B}``.
"""

import os
from typing import List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from ..constants import FRAME_STRIDE, SAMPLE_RATE
from .audio_dataset import BAD_AUDIO, ManifestAudioDataset, drop_bad_audio
from .batching import KeepLastBatchMixin
from .feature_files import feature_index, feature_layers, features_path, lengths_path
from .manifest import ManifestError
from .unit_files import read_unit_codes, unit_path


class AudioSource:
    """Whole waveforms of a manifest (no crop), read and checked by :class:`ManifestAudioDataset`;
    an unusable file is skipped (``None``) with a warning naming it."""

    def __init__(self, manifest_path: str, sample_rate: int = SAMPLE_RATE):
        self.audio = ManifestAudioDataset(manifest_path, sample_rate, shuffle=False, skip_bad=True)
        self.audio.use_full_utterances()
        self.frames = self.audio.sizes // FRAME_STRIDE

    def __len__(self):
        return len(self.audio)

    def __getitem__(self, index) -> Optional[torch.Tensor]:
        return self.audio[index]["source"]


class FeatureSource:
    """Frames ``offsets[i]:offsets[i + 1]`` of a ``{split}.feats.npy`` written by featurize."""

    def __init__(self, folder: str, split: str, expected: int):
        if not os.path.exists(lengths_path(folder, split)):
            raise ManifestError(
                f"{lengths_path(folder, split)}: no features for split {split!r} "
                f"(write them with python -m fairseq_vqw2v.cli.featurize --splits {split})"
            )
        self.feats, self.offsets = feature_index(folder, split)
        if len(self.offsets) - 1 != expected:
            raise ManifestError(
                f"{lengths_path(folder, split)}: {len(self.offsets) - 1} utterances but the "
                f"manifest has {expected}"
            )
        self.frames = np.diff(self.offsets)
        self.path = features_path(folder, split)
        self.dim = self.feats.shape[-1]
        layers = feature_layers(folder, split)
        self.layers = tuple(layers) if layers else None

    def check_layout(self, dim: int, layers: Optional[Sequence[int]]):
        """Raises unless the frames hold ``layers`` (None: one layer) of ``dim`` channels, as the
        acoustic model reading them was trained on."""
        if (self.dim, self.layers) != (dim, tuple(layers) if layers else None):
            raise ManifestError(
                f"{self.path}: {_layout(self.dim, self.layers)} per frame, but the acoustic model "
                f"was trained on {_layout(dim, layers)}: featurize with the same checkpoint and "
                f"--layers as its training features"
            )

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index) -> torch.Tensor:
        start, end = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(np.asarray(self.feats[start:end], dtype=np.float32))


def _layout(dim: int, layers: Optional[Sequence[int]]) -> str:
    if layers is None:
        return f"one layer of {dim} channels"
    return f"{len(layers)} layers ({','.join(map(str, layers))}) of {dim} channels"


class UnitSource:
    """Codes (T x G) of the lines of a ``{split}.src`` unit file written by quantize."""

    def __init__(self, folder: str, split: str, expected: int):
        path = unit_path(folder, split)
        if not os.path.exists(path):
            raise ManifestError(
                f"{path}: no units for split {split!r} "
                f"(write them with python -m fairseq_vqw2v.cli.quantize --splits {split})"
            )
        self.codes = read_unit_codes(path)
        if len(self.codes) != expected:
            raise ManifestError(f"{path}: {len(self.codes)} lines but the manifest has {expected}")
        self.frames = np.array([len(c) for c in self.codes], dtype=np.int64)

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, index) -> torch.Tensor:
        return self.codes[index]


class AsrDataset(KeepLastBatchMixin, FairseqDataset):
    """A source (one of the above) zipped with encoded label lines.

    Args:
        source: :class:`AudioSource`, :class:`FeatureSource` or :class:`UnitSource`.
        targets: one 1-D long tensor per manifest line.
        pad: the label dictionary's padding index.
        shuffle: random order (seeded by fairseq per epoch) within length buckets.
    """

    def __init__(self, source, targets: List[torch.Tensor], pad: int, shuffle: bool = True):
        super().__init__()
        if len(targets) != len(source):
            raise ValueError(f"{len(targets)} targets for {len(source)} utterances")
        self.source, self.targets, self.pad, self.shuffle = source, targets, pad, shuffle
        self.sizes = np.asarray(source.frames, dtype=np.int64)

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return {"id": index, "source": self.source[index], "target": self.targets[index]}

    def num_tokens(self, index):
        return int(self.sizes[index])

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        # stable sort by length keeps the random order among equal lengths
        return order[np.argsort(-self.sizes[order], kind="stable")]

    def collater(self, samples):
        samples, bad = drop_bad_audio(samples)
        if not samples:
            return {}
        sources = [s["source"] for s in samples]
        lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        source = sources[0].new_zeros((len(sources), int(lengths.max()), *sources[0].shape[1:]))
        for i, s in enumerate(sources):
            source[i, : len(s)] = s
        targets = [s["target"] for s in samples]
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "net_input": {"source": source, "source_lengths": lengths},
            "target": data_utils.collate_tokens(targets, self.pad),
            "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
            "ntokens": sum(len(t) for t in targets),
            "nsentences": len(samples),
            **({BAD_AUDIO: bad} if bad else {}),
        }
