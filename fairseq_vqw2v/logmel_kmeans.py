"""The log-mel k-means baseline: k-means (k-means++ seeding, then Lloyd iterations; seeded) on
per-utterance normalised 80-dim Kaldi log-mel frames, fit on about ``MAX_FIT_FRAMES`` frames of
a seeded subset of train. The one home of that fit: the quantize report's baseline
(:mod:`fairseq_vqw2v.unit_quality`) and the baseline's unit files
(:mod:`fairseq_vqw2v.reproduce.logmel_units`) both fit through :func:`fit_frames` and
:func:`fit_centroids`, so ``logmel_units --clusters-like`` writes the units a report measured.
"""

from typing import List, Optional, Sequence

import soundfile as sf
import torch

from .constants import FRAME_STRIDE, SAMPLE_RATE
from .data.manifest import read_manifest
from .modules.logmel import LogMelFilterbank

MAX_FIT_FRAMES = 50_000
"""10 ms frames the k-means is fit on: a few minutes of audio, seconds of clustering."""

SEED = 1

FIT_SPLIT = "train"
"""The split the baseline is fit on (the split measured itself when it has no manifest)."""


def _squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """N x D, K x D -> N x K squared Euclidean distances."""
    return (x.square().sum(1, keepdim=True) - 2 * x @ centroids.T
            + centroids.square().sum(1)).clamp(min=0)


def assign_clusters(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """N x D frames -> N nearest-centroid indices (long), in chunks to bound memory."""
    # ||x||^2 does not change the argmin: one fused ||c||^2 - 2 x.c per chunk
    c_norms = centroids.square().sum(1)
    labels = [torch.addmm(c_norms, x[i:i + chunk], centroids.T, alpha=-2).argmin(1)
              for i in range(0, len(x), chunk)]
    return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = SEED,
           max_frames: Optional[int] = MAX_FIT_FRAMES) -> torch.Tensor:
    """k-means++ seeding and Lloyd iterations on N x D float frames -> K x D centroids.

    Fits on at most ``max_frames`` frames drawn at random (all if None); an emptied cluster
    restarts at the frame farthest from its centroid. Deterministic for a given seed.
    """
    x = x.float()
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means needs 1 <= k <= {len(x)} frames, got k={k}")
    generator = torch.Generator().manual_seed(seed)
    if max_frames is not None and len(x) > max_frames:
        x = x[torch.randperm(len(x), generator=generator)[:max_frames]]
    centroids = x.new_empty(k, x.size(1))
    centroids[0] = x[torch.randint(len(x), (1,), generator=generator)]
    nearest = _squared_distances(x, centroids[:1]).squeeze(1)
    for j in range(1, k):
        # total of 0 when every frame is a centroid already: fall back to uniform
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        centroids[j] = x[torch.multinomial(weights, 1, generator=generator)]
        nearest = torch.minimum(nearest, _squared_distances(x, centroids[j:j + 1]).squeeze(1))
    labels = None
    for _ in range(iterations):
        new_labels = assign_clusters(x, centroids)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = x.new_zeros(k, x.size(1)).index_add_(0, labels, x)
        sizes = torch.bincount(labels, minlength=k)
        centroids = torch.where(sizes[:, None] > 0, sums / sizes.clamp(min=1)[:, None], centroids)
        empty = torch.nonzero(sizes == 0).flatten()
        if len(empty):
            error = (x - centroids[labels]).square().sum(1)
            centroids[empty] = x[error.topk(len(empty)).indices]
    return centroids


def logmel_frames(manifest_path: str, indices: Optional[Sequence[int]] = None,
                  logmel: Optional[LogMelFilterbank] = None) -> List[torch.Tensor]:
    """80-dim Kaldi log-mel (normalised per utterance) of manifest lines: T_i x 80 each."""
    logmel = logmel or LogMelFilterbank()
    manifest = read_manifest(manifest_path)
    indices = range(len(manifest.entries)) if indices is None else indices
    frames = []
    with torch.no_grad():
        for i in indices:
            audio, rate = sf.read(manifest.audio_path(i), dtype="float32")
            if rate != SAMPLE_RATE or audio.ndim != 1:
                raise ValueError(f"{manifest.audio_path(i)}: expected mono {SAMPLE_RATE} Hz audio")
            feats, _ = logmel(torch.from_numpy(audio)[None])
            frames.append(feats[0])
    return frames


def fit_frames(manifest_path: str, logmel: Optional[LogMelFilterbank] = None,
               max_fit_frames: int = MAX_FIT_FRAMES, seed: int = SEED) -> List[torch.Tensor]:
    """Log-mel frames of the fit set: the :func:`fit_utterances` of a manifest."""
    return logmel_frames(manifest_path, fit_utterances(manifest_path, max_fit_frames, seed), logmel)


def fit_centroids(train_frames: Sequence[torch.Tensor], k: int, seed: int = SEED,
                  max_fit_frames: int = MAX_FIT_FRAMES) -> torch.Tensor:
    """K x 80 centroids of k-means on the utterances ``train_frames`` (T_i x 80 each)."""
    return kmeans(torch.cat(list(train_frames)), k, seed=seed, max_frames=max_fit_frames)


def kmeans_units(train_frames: Sequence[torch.Tensor], eval_frames: Sequence[torch.Tensor],
                 k: int, seed: int = SEED, max_fit_frames: int = MAX_FIT_FRAMES
                 ) -> List[List[int]]:
    """Cluster indices of each ``eval_frames`` utterance, k-means fit on ``train_frames``."""
    centroids = fit_centroids(train_frames, k, seed, max_fit_frames)
    return [assign_clusters(f.float(), centroids).tolist() for f in eval_frames]


def fit_utterances(manifest_path: str, max_frames: int = MAX_FIT_FRAMES, seed: int = SEED
                   ) -> List[int]:
    """A seeded random subset of a manifest's lines holding about ``max_frames`` 10 ms frames
    (all lines when it has fewer), in manifest order: the k-means fit set, read without loading
    a whole large train split."""
    sizes = [n for _, n in read_manifest(manifest_path).entries]
    order = torch.randperm(len(sizes), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, frames = [], 0
    for i in order:
        if frames >= max_frames:
            break
        chosen.append(i)
        frames += sizes[i] // FRAME_STRIDE
    return sorted(chosen)
