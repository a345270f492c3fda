"""Datasets over discrete unit sequences: ``{split}.src`` token lines (the format of
:mod:`.unit_files`) or fairseq binarized data."""

import os
from typing import Optional

import numpy as np
import torch

from fairseq.data import BaseWrapperDataset, Dictionary, FairseqDataset, data_utils

from ..errors import MissingInputError
from .batching import KeepLastBatchMixin
from .dedup import dedup_numpy
from .manifest import check_split_name
from .span_mask import MASK_PROB, SPAN_LENGTH, corrupt, span_mask
from .unit_files import UnitFileError, read_unit_file, unit_dict_path, unit_path


class UnitDataset(FairseqDataset):
    """Utterances of unit ids (L,) LongTensor, without framing tokens.

    Args:
        tokens: all ids concatenated; offsets: (N + 1,) start of each utterance in ``tokens``.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray):
        self.tokens = tokens
        self.offsets = offsets
        self.sizes = np.diff(offsets)

    @classmethod
    def from_src(cls, path: str, dictionary: Dictionary, max_unknown: Optional[float] = None,
                 dictionary_path: str = "the dictionary") -> "UnitDataset":
        """See :func:`read_unit_file` (``max_unknown``: the share of ``<unk>`` it refuses)."""
        return cls(*read_unit_file(path, dictionary, max_unknown, dictionary_path))

    def deduplicated(self) -> "UnitDataset":
        """The same utterances with consecutive repeats merged (:mod:`.dedup`)."""
        return UnitDataset._concatenated(
            [dedup_numpy(self.tokens[s:e]) for s, e in zip(self.offsets[:-1], self.offsets[1:])])

    @classmethod
    def of(cls, dataset) -> "UnitDataset":
        """Any dataset of 1-D id tensors (e.g. binarized units) as one in-memory UnitDataset."""
        return cls._concatenated([dataset[i].numpy() for i in range(len(dataset))])

    @classmethod
    def _concatenated(cls, utterances) -> "UnitDataset":
        """N arrays of ids -> one UnitDataset holding them in order."""
        offsets = np.concatenate([[0], np.cumsum([len(u) for u in utterances])]).astype(np.int64)
        tokens = np.concatenate(utterances) if utterances else np.zeros(0, dtype=np.int64)
        return cls(tokens, offsets)

    def __getitem__(self, index):
        start, end = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(self.tokens[start:end].astype(np.int64))

    def __len__(self):
        return len(self.sizes)

    def size(self, index):
        return self.sizes[index]

    def num_tokens(self, index):
        return self.sizes[index]


class StripEosDataset(BaseWrapperDataset):
    """fairseq-preprocess ends every binarized line with ``</s>``; this removes it."""

    def __init__(self, dataset, eos: int):
        super().__init__(dataset)
        self.eos = eos
        self._sizes = np.asarray(dataset.sizes) - 1

    @property
    def sizes(self):
        return self._sizes

    def __getitem__(self, index):
        item = self.dataset[index]
        return item[:-1] if len(item) and item[-1] == self.eos else item

    def size(self, index):
        return self._sizes[index]

    def num_tokens(self, index):
        return self._sizes[index]


def load_units(data_dir: str, split: str, dictionary: Dictionary,
               max_unknown: Optional[float] = None):
    """Loads ``split`` from ``data_dir``: fairseq binarized ``{split}.bin/.idx`` when present
    (made by ``fairseq-preprocess --only-source --srcdict dict.txt``), else ``{split}.src``, of
    whose units at most a share ``max_unknown`` may be missing from ``dictionary``
    (``data_dir/dict.txt``; binarized units were mapped to ``<unk>`` by fairseq-preprocess, which
    reported its share)."""
    prefix = os.path.join(data_dir, check_split_name(split))
    if os.path.exists(prefix + ".idx"):
        bin_path = prefix + ".bin"
        # an empty .bin cannot even be memory-mapped: fairseq would fail deep in numpy
        dataset = (data_utils.load_indexed_dataset(prefix, dictionary)
                   if os.path.exists(bin_path) and os.path.getsize(bin_path) > 0 else None)
        if dataset is None or len(dataset) == 0:
            raise UnitFileError(f"{bin_path}: no utterances (an empty or missing binarized split)")
        return StripEosDataset(dataset, dictionary.eos())
    src = unit_path(data_dir, split)
    if not os.path.exists(src):
        raise MissingInputError(f"{src}: no units for split {split!r} (nor {prefix}.bin)")
    return UnitDataset.from_src(src, dictionary, max_unknown, unit_dict_path(data_dir))


class SpanMaskedUnitDataset(KeepLastBatchMixin, FairseqDataset):
    """Crops, frames and span-masks utterances for masked-LM training.

    Each item is cropped to ``tokens_per_sample`` tokens including framing (a random window when
    ``random_crop``, else the start), framed as ``<s> units </s>`` when ``frame``, and masked over
    the units only (framing tokens are never targets). Randomness is a function of
    (seed, epoch, index), like fairseq's ``MaskTokensDataset``, so any worker or a resumed run
    sees the same masks.

    Items are dicts: ``source`` (L,) model input and ``target`` (L,) with the original unit at
    masked positions and ``pad`` elsewhere.

    Not a ``BaseWrapperDataset``: that would hand size filtering and batching to the wrapped
    dataset, whose sizes are the uncropped ones.
    """

    def __init__(
        self,
        dataset,
        dictionary: Dictionary,
        mask_idx: int,
        tokens_per_sample: int,
        seed: int = 1,
        mask_prob: float = MASK_PROB,
        mask_length: int = SPAN_LENGTH,
        mask_stdev: float = 0.0,
        mask_semantics: str = "paper",
        leave_unmasked_prob: float = 0.0,
        random_token_prob: float = 0.0,
        frame: bool = True,
        random_crop: bool = True,
        shuffle: bool = True,
    ):
        super().__init__()
        self.dataset = dataset
        self.dictionary = dictionary
        self.pad = dictionary.pad()
        self.mask_idx = mask_idx
        self.seed = seed
        self.mask_prob = mask_prob
        self.mask_length = mask_length
        self.mask_stdev = mask_stdev
        self.mask_semantics = mask_semantics
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        self.frame = frame
        self.random_crop = random_crop
        self.shuffle = shuffle
        self.max_units = tokens_per_sample - (2 if frame else 0)
        if self.max_units < 1:
            raise ValueError(f"tokens_per_sample={tokens_per_sample} leaves no room for units")
        self._sizes = np.minimum(np.asarray(dataset.sizes), self.max_units) + (2 if frame else 0)
        weights = np.ones(len(dictionary))
        weights[: dictionary.nspecial] = 0
        weights[mask_idx] = 0
        self.random_weights = weights / weights.sum()
        self.epoch = 1

    @property
    def sizes(self):
        return self._sizes

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return True  # only the noise changes with the epoch, not the sizes

    def set_epoch(self, epoch, **unused):
        self.epoch = epoch

    def __len__(self):
        return len(self._sizes)

    def size(self, index):
        return self._sizes[index]

    def num_tokens(self, index):
        return self._sizes[index]

    def num_tokens_vec(self, indices):
        return self._sizes[indices]

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        units = self.dataset[index].numpy()
        excess = len(units) - self.max_units
        if excess > 0:
            start = int(rng.integers(0, excess + 1)) if self.random_crop else 0
            units = units[start : start + self.max_units]
        mask = span_mask(
            len(units),
            rng,
            mask_prob=self.mask_prob,
            span=self.mask_length,
            semantics=self.mask_semantics,
            span_stdev=self.mask_stdev,
        )
        source, mask = corrupt(
            units,
            mask,
            rng,
            self.mask_idx,
            leave_unmasked_prob=self.leave_unmasked_prob,
            random_token_prob=self.random_token_prob,
            random_weights=self.random_weights,
        )
        target = np.where(mask, units, self.pad)
        if self.frame:
            bos, eos = self.dictionary.bos(), self.dictionary.eos()
            source = np.concatenate([[bos], source, [eos]])
            target = np.concatenate([[self.pad], target, [self.pad]])
        return {
            "id": index,
            "source": torch.from_numpy(source.astype(np.int64)),
            "target": torch.from_numpy(target.astype(np.int64)),
        }

    def collater(self, samples):
        """Pads to B x T: ``net_input.src_tokens``, ``net_input.src_lengths``, ``target``."""
        if len(samples) == 0:
            return {}
        source = data_utils.collate_tokens([s["source"] for s in samples], self.pad)
        target = data_utils.collate_tokens([s["target"] for s in samples], self.pad)
        lengths = torch.tensor([len(s["source"]) for s in samples], dtype=torch.long)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(lengths.sum()),
            "net_input": {"src_tokens": source, "src_lengths": lengths},
            "target": target,
        }

    def ordered_indices(self):
        """Sorted by size for little padding; ties in a seeded random order when shuffling."""
        if self.shuffle:
            with data_utils.numpy_seed(self.seed, self.epoch):
                order = np.random.permutation(len(self))
        else:
            order = np.arange(len(self))
        return order[np.argsort(self._sizes[order], kind="mergesort")]
