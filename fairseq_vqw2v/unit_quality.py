"""How good discrete units are: codebook usage (distinct tokens, perplexity, bitrate, a frequency
plot), and how well they follow phones (purity, PNMI, a phone x unit plot and the log-mel k-means
baseline every learned unit inventory should beat).

Alignment file ``{split}.align`` (written by ``manifests.synth``): one line per manifest line,
the utterance's phone segments ``phone:end_seconds`` in order (``pau:0.184 dh:0.233 ...``); a
segment starts where the previous one ends, the first at 0.

Frames: a front end whose frame ``t`` covers samples ``[t * stride, t * stride + window)`` (the
conv encoder and the Kaldi log-mel both snip edges; stride 160 = 10 ms) labels frame ``t`` with
the phone whose segment holds the frame's centre ``t * stride + window / 2``; a centre at or past
the last end time (kal16's audio ends inside its final ``pau``) takes the last phone. So the
encoder (window 465 samples for the standard 5-layer stack) and the log-mel (400 samples) are
each matched to the phones they actually see.

Measures (fairseq's ``examples/hubert/measure_teacher_quality.py``, imported, not copied): with
P(phone, unit) the frame co-occurrence, phone purity = sum over units of max over phones
P(phone, unit) (``ref pur``: the frame accuracy of labelling each unit with its commonest
phone), unit purity = sum over phones of max over units (``hyp pur``), PNMI = I(phone; unit) /
H(phone) (``MI/H(ref)``: the share of phone uncertainty a unit removes).

Baseline: k-means (k-means++ seeding, then Lloyd iterations; seeded) on per-utterance normalised
80-dim Kaldi log-mel frames, fit on train and evaluated with as many clusters as the units use
distinct tokens, so any corpus says whether learned units beat ten seconds of clustering.
"""

import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
from fairseq.examples.hubert.measure_teacher_quality import comp_norm_mutual_info, comp_purity

from .constants import FRAME_RATE, FRAME_STRIDE, SAMPLE_RATE
from .data.manifest import read_manifest
from .data.text_files import decoding
from .data.unit_files import SEPARATOR
from .modules.logmel import LogMelFilterbank
from .modules.perplexity import perplexity

ALIGN_EXT = "align"

ALIGN_TOLERANCE_SECONDS = 0.05
"""An alignment may end this much before the last frame centre (flite's end times are rounded
to 1 ms and its wavs end within 5 ms of them); ending earlier means the wrong alignment file."""

Segments = List[Tuple[str, float]]


def _count_perplexity(counts: Iterable[int]) -> float:
    counts = torch.tensor(list(counts), dtype=torch.float64)
    # counts of tokens that occur are all > 0: the exact entropy, no epsilon
    return float(perplexity(counts / counts.sum(), eps=0.0))


def usage_stats(counts: Counter, num_vars: int, groups: int) -> Dict[str, float]:
    """Codebook usage of a set of unit tokens.

    ``code_perplexity`` follows fairseq's quantizers (sum over groups of each group's perplexity,
    at most G x V); ``token_perplexity`` is that of the joint tokens (at most V^G);
    ``bitrate`` is the frame rate times G log2 V bits per second.
    """
    group_counts = [Counter() for _ in range(groups)]
    for token, n in counts.items():
        for g, i in enumerate(token.split(SEPARATOR)):
            group_counts[g][i] += n
    return {
        "tokens": sum(counts.values()),
        "distinct_tokens": len(counts),
        "possible_tokens": num_vars**groups,
        "distinct_codes_per_group": [len(c) for c in group_counts],
        "code_perplexity": sum(_count_perplexity(c.values()) for c in group_counts),
        "max_code_perplexity": num_vars * groups,
        "token_perplexity": _count_perplexity(counts.values()),
        "bitrate": FRAME_RATE * groups * math.log2(num_vars),
    }


def plot_code_frequencies(counts: Counter, png_path: str, title: str = "unit frequencies"):
    """Rank-frequency plot (log-log) of the tokens, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    freqs = sorted(counts.values(), reverse=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(range(1, len(freqs) + 1), freqs, marker=".", linestyle="none", markersize=3)
    ax.set_xlabel("token rank")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: {len(freqs)} distinct tokens")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def parse_alignment(line: str, where: str) -> Segments:
    """``pau:0.184 dh:0.233 ...`` -> [(phone, end seconds)]; ``where`` (``file:line``) prefixes
    errors (a malformed token, end times not increasing, an empty line)."""
    segments, previous = [], 0.0
    for token in line.split():
        phone, sep, end = token.rpartition(":")
        try:
            end = float(end)
        except ValueError:
            end = math.nan
        if not sep or not phone or not math.isfinite(end):
            raise ValueError(f"{where}: expected 'phone:end_seconds', got {token!r}")
        if end < previous:
            raise ValueError(f"{where}: segment {token!r} ends before the previous one ({previous})")
        segments.append((phone, end))
        previous = end
    if not segments:
        raise ValueError(f"{where}: empty alignment")
    return segments


def read_alignments(path: str) -> List[Segments]:
    """The segments of every line of an ``.align`` file."""
    with decoding(path), open(path, encoding="utf-8") as f:
        return [parse_alignment(line, f"{path}:{n}") for n, line in enumerate(f, 1)]


def frame_window(output_lengths, stride: int = FRAME_STRIDE, limit: int = SAMPLE_RATE) -> int:
    """Samples seen by one frame of a front end with valid (snip-edges) convolutions: the
    smallest input that yields a frame. ``output_lengths`` maps B sample counts to B frames;
    raises ValueError unless a frame follows every ``stride`` samples."""
    frames = output_lengths(torch.arange(1, limit + 1))
    if not bool((frames > 0).any()):
        raise ValueError(f"no frame from up to {limit} samples: not a frame-based front end")
    window = int(torch.nonzero(frames > 0)[0, 0]) + 1
    probe = output_lengths(torch.tensor([window + stride - 1, window + stride]))
    if probe.tolist() != [1, 2]:
        raise ValueError(f"the front end's frames are not {stride} samples apart: phone "
                         f"alignments are measured on {stride}-sample frames")
    return window


def frame_phones(segments: Segments, num_frames: int, window: int, stride: int = FRAME_STRIDE,
                 sample_rate: int = SAMPLE_RATE, where: str = "alignment") -> List[str]:
    """The phone at the centre of each of ``num_frames`` frames (see the module docstring).

    Raises ValueError naming ``where`` when the last centre lies more than
    ``ALIGN_TOLERANCE_SECONDS`` past the alignment's end.
    """
    phones = [p for p, _ in segments]
    ends = np.array([e for _, e in segments])
    centres = (np.arange(num_frames) * stride + window / 2) / sample_rate
    if num_frames and centres[-1] > ends[-1] + ALIGN_TOLERANCE_SECONDS:
        raise ValueError(
            f"{where}: the alignment ends at {ends[-1]:.3f} s but frame {num_frames - 1} is "
            f"centred at {centres[-1]:.3f} s: alignment and audio do not match"
        )
    # a centre equal to an end time belongs to the next segment: segments are [start, end)
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(phones) - 1)
    return [phones[i] for i in index]


@dataclass
class Cooccurrence:
    """Frame counts of (phone, unit) pairs: ``counts`` is phones x units, rows in ``phones``
    order, columns in ``units`` order (both sorted; only labels that occur)."""

    counts: np.ndarray
    phones: List[str]
    units: List[str]


def cooccurrence(phone_frames: Sequence[Sequence[str]], unit_frames: Sequence[Sequence],
                 where: str = "units") -> Cooccurrence:
    """Counts (phone, unit) pairs over utterances; frame counts must match per utterance."""
    if len(phone_frames) != len(unit_frames):
        raise ValueError(f"{where}: {len(phone_frames)} phone lines but {len(unit_frames)} unit lines")
    phones_flat, units_flat = [], []
    for n, (phones, units) in enumerate(zip(phone_frames, unit_frames), 1):
        if len(phones) != len(units):
            raise ValueError(f"{where}: utterance {n} has {len(phones)} phone frames and "
                             f"{len(units)} unit frames")
        phones_flat.extend(phones)
        units_flat.extend(str(u) for u in units)
    phone_names, phone_ids = np.unique(np.array(phones_flat, dtype=object).astype(str), return_inverse=True)
    unit_names, unit_ids = np.unique(np.array(units_flat, dtype=object).astype(str), return_inverse=True)
    counts = np.zeros((len(phone_names), len(unit_names)), dtype=np.int64)
    np.add.at(counts, (phone_ids, unit_ids), 1)
    return Cooccurrence(counts, phone_names.tolist(), unit_names.tolist())


def phone_measures(cooc: Cooccurrence) -> Dict[str, float]:
    """Phone purity, unit purity, PNMI, MI and entropies (nats) of a co-occurrence table."""
    if cooc.counts.sum() == 0:
        raise ValueError("no frames to measure")
    p_xy = cooc.counts / cooc.counts.sum()
    _, phone_purity = comp_purity(p_xy, axis=0)
    _, unit_purity = comp_purity(p_xy, axis=1)
    mi, pnmi, _, h_phone, h_unit = comp_norm_mutual_info(p_xy)
    return {
        "frames": int(cooc.counts.sum()),
        "phones": len(cooc.phones),
        "units": len(cooc.units),
        "phone_purity": float(phone_purity),
        "unit_purity": float(unit_purity),
        "pnmi": float(pnmi),
        "mutual_information": float(mi),
        "phone_entropy": float(h_phone),
        "unit_entropy": float(h_unit),
    }


def plot_cooccurrence(cooc: Cooccurrence, png_path: str, title: str = "phones x units"):
    """P(phone | unit) as an image: phones by frequency (top to bottom), units grouped by their
    commonest phone; a diagonal band means units that follow phones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = cooc.counts.astype(np.float64)
    phone_order = np.argsort(-counts.sum(1), kind="stable")
    counts = counts[phone_order]
    rank = np.argmax(counts, axis=0)
    unit_order = np.lexsort((-counts.sum(0), rank))
    p_phone_given_unit = counts[:, unit_order] / counts[:, unit_order].sum(0, keepdims=True)
    measures = phone_measures(cooc)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.02 * len(cooc.units) + 4), 7))
    image = ax.imshow(p_phone_given_unit, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_yticks(range(len(phone_order)))
    ax.set_yticklabels([cooc.phones[i] for i in phone_order], fontsize=6)
    ax.set_xlabel(f"{len(cooc.units)} units, grouped by commonest phone")
    ax.set_title(f"{title}: PNMI {measures['pnmi']:.3f}, phone purity "
                 f"{measures['phone_purity']:.3f}", fontsize=9)
    fig.colorbar(image, ax=ax, label="P(phone | unit)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


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
def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 1,
           max_frames: Optional[int] = 50_000) -> torch.Tensor:
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


def kmeans_units(train_frames: Sequence[torch.Tensor], eval_frames: Sequence[torch.Tensor],
                 k: int, seed: int = 1, max_fit_frames: Optional[int] = 50_000) -> List[List[int]]:
    """Cluster indices of each ``eval_frames`` utterance, k-means fit on ``train_frames``."""
    centroids = kmeans(torch.cat(list(train_frames)), k, seed=seed, max_frames=max_fit_frames)
    return [assign_clusters(f.float(), centroids).tolist() for f in eval_frames]


def frame_phone_lines(alignments: Sequence[Segments], indices: Sequence[int],
                      num_frames: Sequence[int], window: int, path: str) -> List[List[str]]:
    """``frame_phones`` of the utterances ``indices`` (0-based lines of ``path``, the alignment
    file, which errors name) with ``num_frames`` frames each."""
    if len(indices) and max(indices) >= len(alignments):
        raise ValueError(f"{path}: {len(alignments)} lines, but line {max(indices) + 1} is needed")
    return [frame_phones(alignments[i], n, window, where=f"{path}:{i + 1}")
            for i, n in zip(indices, num_frames)]


def fit_utterances(manifest_path: str, max_frames: int, seed: int = 1) -> List[int]:
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


def logmel_kmeans_baseline(manifest_dir: str, split: str, k: int, indices: Sequence[int],
                           fit_split: str = "train", seed: int = 1,
                           max_fit_frames: int = 50_000,
                           cache: Optional[Dict[str, List[torch.Tensor]]] = None) -> Dict[str, float]:
    """Phone measures of K log-mel k-means clusters on the ``indices`` lines of ``split``, fit on
    about ``max_fit_frames`` frames of ``fit_split`` (``split`` itself when ``{fit_split}.tsv``
    is absent). ``cache`` (a dict kept across calls) holds the fit frames, read once."""
    cache = {} if cache is None else cache
    if not os.path.exists(os.path.join(manifest_dir, f"{fit_split}.tsv")):
        fit_split = split
    fit_path = os.path.join(manifest_dir, f"{fit_split}.tsv")
    if fit_split not in cache:
        cache[fit_split] = logmel_frames(fit_path, fit_utterances(fit_path, max_fit_frames, seed))
    align_path = os.path.join(manifest_dir, f"{split}.{ALIGN_EXT}")
    frames = logmel_frames(os.path.join(manifest_dir, f"{split}.tsv"), indices)
    units = kmeans_units(cache[fit_split], frames, k, seed=seed, max_fit_frames=max_fit_frames)
    phones = frame_phone_lines(read_alignments(align_path), indices, [len(f) for f in frames],
                               LogMelFilterbank().window_size, align_path)
    return {"k": k, "fit_split": fit_split, **phone_measures(cooccurrence(phones, units, align_path))}


def phone_report(manifest_dir: str, split: str, indices: Sequence[int],
                 unit_lines: Sequence[Sequence[str]], window: int, png_path: Optional[str] = None,
                 cache: Optional[Dict[str, List[torch.Tensor]]] = None) -> Optional[Dict]:
    """Phone measures of units against ``{split}.align`` and of the matched log-mel k-means
    baseline (as many clusters as the units use distinct tokens), or None without an alignment.

    Args:
        indices: the manifest lines (0-based) that ``unit_lines`` quantize, in that order.
        unit_lines: the tokens of each of those lines, one per frame.
        window: samples per unit frame (``frame_window(model.output_lengths)``).
        png_path: where to plot the phone x unit co-occurrence (None: no plot).
        cache: kept across calls (splits) so the baseline's fit frames are read once.
    Returns:
        ``{"units": measures, "logmel_kmeans": measures, "beats_baseline": bool}``.
    """
    align_path = os.path.join(manifest_dir, f"{split}.{ALIGN_EXT}")
    if not os.path.exists(align_path):
        return None
    alignments = read_alignments(align_path)
    manifest_lines = len(read_manifest(os.path.join(manifest_dir, f"{split}.tsv")).entries)
    if len(alignments) != manifest_lines:
        raise ValueError(f"{align_path}: {len(alignments)} lines for {manifest_lines} manifest lines")
    phones = frame_phone_lines(alignments, indices, [len(u) for u in unit_lines], window, align_path)
    cooc = cooccurrence(phones, unit_lines, align_path)
    if png_path is not None:
        plot_cooccurrence(cooc, png_path, f"{split} units")
    units = phone_measures(cooc)
    baseline = logmel_kmeans_baseline(manifest_dir, split, units["units"], indices, cache=cache)
    return {"units": units, "logmel_kmeans": baseline, "beats_baseline": units["pnmi"] > baseline["pnmi"]}
