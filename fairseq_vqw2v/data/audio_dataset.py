"""Raw-audio dataset over a TSV manifest, for contrastive pretraining and for quantization.

Batches are ``{"id": B, "net_input": {"source": B x T, "padding_mask": B x T (pad only)},
"target": None}`` exactly like fairseq's ``FileAudioDataset``; the differences are that the
manifest is read (and checked) by :func:`fairseq_vqw2v.data.manifest.read_manifest`, that a file
which cannot be read, or whose audio does not fit the manifest and the task (rate, one channel,
sample count, finite samples: checked on every read, audio may bypass the prep scripts), raises an
error naming the manifest line and the file (``skip_bad``: is skipped with a warning naming them,
and counted in the batch's ``bad_audio``), and that random crops depend only on (seed, epoch,
utterance), so a run resumed from a checkpoint sees the same crops as an uninterrupted one.

Training skips bad files rather than stopping: a bad file found hours into a run would otherwise
lose the run (and a resumed run would meet it again). Checking every file when the dataset is
loaded instead would read all the audio once more per run (the prep scripts already do that once).
"""

import logging
import os
import sys
from typing import List, Tuple

import numpy as np
import soundfile as sf
import torch
from fairseq.data.audio.raw_audio_dataset import RawAudioDataset

from ..constants import SAMPLE_RATE
from .batching import KeepLastBatchMixin
from .manifest import ManifestError, read_manifest

logger = logging.getLogger(__name__)

BAD_AUDIO = "bad_audio"
"""Batch (and logged statistic) key: files of the batch skipped as unusable."""


def drop_bad_audio(samples: List[dict]) -> Tuple[List[dict], int]:
    """The samples whose ``source`` was read (``None`` for a skipped file), and how many were not."""
    kept = [s for s in samples if s["source"] is not None]
    return kept, len(samples) - len(kept)


class ManifestAudioDataset(KeepLastBatchMixin, RawAudioDataset):
    """Utterances of one manifest (``{split}.tsv``), one 1-D float waveform (T) per item.

    Args:
        manifest_path: the TSV manifest (first line the root folder, then ``path<TAB>samples``).
        sample_rate: every file must have this rate (no resampling: a mismatch is an error).
        max_sample_size: longer utterances are randomly cropped to this many samples.
        min_sample_size: shorter utterances are left out (counted in the log).
        pad: pad each batch to its longest item with a padding mask; otherwise every item is
            cropped to the batch's shortest item (fairseq's default for pretraining).
        normalize: zero mean, unit variance per utterance.
        seed: seed of the random crops (with the epoch and the utterance index).
        skip_bad: a file that cannot be used gives an item with ``source`` None and a warning
            naming it, instead of a ``ManifestError``; the collater leaves it out.
    """

    def __init__(
        self,
        manifest_path,
        sample_rate,
        max_sample_size=None,
        min_sample_size=0,
        shuffle=True,
        pad=False,
        normalize=False,
        seed=1,
        skip_bad=False,
    ):
        super().__init__(
            sample_rate=sample_rate,
            max_sample_size=max_sample_size,
            min_sample_size=min_sample_size or 0,
            shuffle=shuffle,
            pad=pad,
            normalize=normalize,
        )
        self.manifest = read_manifest(manifest_path)
        self.seed = seed
        self.skip_bad = skip_bad
        self.epoch = 1
        # manifest entry i is on line i + 2 (the root folder is line 1)
        kept = [i for i, (_, n) in enumerate(self.manifest.entries) if n >= self.min_sample_size]
        self.entry_index = np.array(kept, dtype=np.int64)
        self.sizes = np.array([self.manifest.entries[i][1] for i in kept], dtype=np.int64)
        skipped = len(self.manifest.entries) - len(kept)
        if not kept:
            raise ManifestError(
                f"{manifest_path}: no utterances"
                + (f" of at least {self.min_sample_size} samples" if skipped else "")
            )
        logger.info(
            f"{manifest_path}: {len(kept)} utterances, skipped {skipped} shorter than "
            f"{self.min_sample_size} samples"
        )

    def set_epoch(self, epoch):
        self.epoch = epoch

    def use_full_utterances(self):
        """Switches to inference batches: no crop, padded to the longest item with a mask."""
        self.pad = True
        self.max_sample_size = sys.maxsize

    def location(self, index):
        """``manifest:line`` of item ``index``, for error messages."""
        return f"{self.manifest.path}:{int(self.entry_index[index]) + 2}"

    def __getitem__(self, index):
        try:
            return {"id": index, "source": self.read(index)}
        except ManifestError as e:
            if not self.skip_bad:
                raise
            logger.warning(f"{e}: skipped")
            return {"id": index, "source": None}

    def read(self, index) -> torch.Tensor:
        """The checked, post-processed waveform (T) of item ``index``; ``ManifestError`` naming
        ``manifest:line`` and the file when it cannot be used."""
        path = self.manifest.audio_path(int(self.entry_index[index]))
        try:
            wav, rate = sf.read(path, dtype="float32")
        except Exception as e:  # soundfile raises RuntimeError, LibsndfileError or OSError
            raise ManifestError(f"{self.location(index)}: cannot read audio {path}: {e}") from e
        if rate != self.sample_rate:
            raise ManifestError(
                f"{self.location(index)}: {path} has sample rate {rate}, "
                f"the task expects {self.sample_rate}"
            )
        if wav.size == 0:
            raise ManifestError(f"{self.location(index)}: {path} is empty")
        if wav.ndim != 1:
            raise ManifestError(
                f"{self.location(index)}: {path} has {wav.shape[1]} channels, expected 1"
            )
        expected = self.manifest.entries[int(self.entry_index[index])][1]
        if len(wav) != expected:
            raise ManifestError(
                f"{self.location(index)}: {path} has {len(wav)} samples, the manifest says "
                f"{expected} (changed since the manifest was written?)"
            )
        if not np.isfinite(wav).all():
            raise ManifestError(
                f"{self.location(index)}: {path} has non-finite samples (NaN or inf)"
            )
        return self.postprocess(torch.from_numpy(wav), rate)

    def crop(self, source, size, index):
        """Random crop of ``source`` (T) to ``size`` samples, the same for the same epoch."""
        excess = len(source) - size
        if excess <= 0:
            return source
        start = np.random.RandomState((self.seed, self.epoch, index)).randint(0, excess + 1)
        return source[start : start + size]

    def collater(self, samples):
        samples, bad = drop_bad_audio(samples)
        if not samples:
            return {}
        sizes = [len(s["source"]) for s in samples]
        size = min(max(sizes) if self.pad else min(sizes), self.max_sample_size)
        # crop here, reproducibly, so that fairseq's collater (global numpy RNG) never has to
        cropped = [{**s, "source": self.crop(s["source"], size, s["id"])} for s in samples]
        batch = super().collater(cropped)
        # fairseq-generate reads sample["target"]; pretraining has none
        batch["target"] = None
        if bad:
            batch[BAD_AUDIO] = bad
        return batch


def full_utterance_dataset(manifest_dir: str, split: str, task_cfg) -> ManifestAudioDataset:
    """``{split}.tsv`` read as a checkpoint's task (``task_cfg``: its sample rate and
    normalisation) reads audio, whole utterances in manifest order: for inference."""
    dataset = ManifestAudioDataset(
        os.path.join(manifest_dir, f"{split}.tsv"),
        sample_rate=task_cfg.get("sample_rate", SAMPLE_RATE),
        normalize=task_cfg.get("normalize", False),
        shuffle=False,
    )
    dataset.use_full_utterances()
    return dataset
