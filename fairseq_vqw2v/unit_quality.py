"""How good discrete units are: codebook usage (distinct tokens, perplexity, bitrate, a frequency
plot), and how well they follow phones (purity, PNMI, a phone x unit plot, and the log-mel
k-means baseline every learned unit inventory should beat: :mod:`fairseq_vqw2v.logmel_kmeans`,
with as many clusters as the units use distinct tokens, so any corpus says whether learned units
beat seconds of clustering). Phones come from ``{split}.align`` files, each frame labelled with
the phone at its centre (:mod:`fairseq_vqw2v.data.alignments`).

Measures (fairseq's ``examples/hubert/measure_teacher_quality.py``, imported, not copied): with
P(phone, unit) the frame co-occurrence, phone purity = sum over units of max over phones
P(phone, unit) (``ref pur``: the frame accuracy of labelling each unit with its commonest
phone), unit purity = sum over phones of max over units (``hyp pur``), PNMI = I(phone; unit) /
H(phone) (``MI/H(ref)``: the share of phone uncertainty a unit removes).
"""

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
from fairseq.examples.hubert.measure_teacher_quality import comp_norm_mutual_info, comp_purity

from .constants import FRAME_RATE, FRAME_STRIDE, SAMPLE_RATE
from .data.alignments import ALIGN_EXT, frame_phone_lines, read_alignments
from .data.manifest import read_manifest
from .data.unit_files import SEPARATOR, usage_path
from .logmel_kmeans import FIT_SPLIT, MAX_FIT_FRAMES, SEED, fit_frames, kmeans_units, logmel_frames
from .modules.logmel import LogMelFilterbank
from .modules.perplexity import perplexity


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


def write_usage_report(dest: str, split: str, counts: Counter, num_vars: int, groups: int,
                       phones: Optional[Dict] = None, title: str = "units") -> Dict:
    """Writes ``{split}.usage.json`` (:func:`usage_stats`, with ``phones`` when given: the phone
    measures against alignments) and ``{split}.usage.png`` (:func:`plot_code_frequencies`);
    returns the stats."""
    stats = usage_stats(counts, num_vars, groups)
    if phones is not None:
        stats["phones"] = phones
    with open(usage_path(dest, split), "w") as f:
        json.dump(stats, f, indent=2)
    plot_code_frequencies(counts, usage_path(dest, split, "png"), f"{split} {title}")
    return stats


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


def logmel_kmeans_baseline(manifest_dir: str, split: str, k: int, indices: Sequence[int],
                           fit_split: str = FIT_SPLIT, seed: int = SEED,
                           max_fit_frames: int = MAX_FIT_FRAMES,
                           cache: Optional[Dict[str, List[torch.Tensor]]] = None) -> Dict[str, float]:
    """Phone measures of K log-mel k-means clusters on the ``indices`` lines of ``split``, fit on
    about ``max_fit_frames`` frames of ``fit_split`` (``split`` itself when ``{fit_split}.tsv``
    is absent). ``cache`` (a dict kept across calls) holds the fit frames, read once."""
    cache = {} if cache is None else cache
    if not os.path.exists(os.path.join(manifest_dir, f"{fit_split}.tsv")):
        fit_split = split
    fit_path = os.path.join(manifest_dir, f"{fit_split}.tsv")
    if fit_split not in cache:
        cache[fit_split] = fit_frames(fit_path, max_fit_frames=max_fit_frames, seed=seed)
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
