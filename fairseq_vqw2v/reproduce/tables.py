"""``tables.md`` and the plots of a reproduction, the paper's numbers beside this run's.

Tables: with several seeds, each row's mean and spread; the acoustic models trained again after a
run on CTC's all-blank plateau, and those still on it, if any; the paper's Table 1 (WSJ layout:
dev and test LER/WER, no LM and 4-gram LM, the char ConvLM on the best row), Table 2 (TIMIT
layout: dev/test PER), the BERT ablation (each unit inventory with and without a BERT, the log-mel
k-means units included), unit quality per quantizer, then the configuration, the corpus and each
stage's time. Plots: ``curves.png`` (training loss of every training stage), ``units.png``
(codebook usage and PNMI per quantizer) and ``error_rates.png`` (test error rate by system, with
and without LM).
"""

import json
import math
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..constants import EVAL_SPLITS
from ..data.dedup import dedup_numpy
from ..data.labels import LABEL_KINDS, error_metric
from ..data.unit_files import unit_path, usage_path
from ..decoding.results import collect, plot
from ..decoding.scoring import PLATEAU_OUTPUT_RATIO
from .pipeline import CHARLM_SYSTEM, LOGMEL_UNITS, QUANTIZERS, SYSTEMS, names_other_chain
from .stages import log_records

ROW_NAMES = {
    "logmel": "log-mel baseline",
    "wav2vec": "wav2vec (continuous)",
    "gumbel": "vq-wav2vec Gumbel",
    "gumbel_bert": "Gumbel + BERT",
    "kmeans": "vq-wav2vec k-means",
    "kmeans_bert": "k-means + BERT",
    "logmel_kmeans": "log-mel k-means (not in the paper)",
    "logmel_kmeans_bert": "log-mel k-means + BERT (not in the paper)",
    f"{CHARLM_SYSTEM}_charlm": "Gumbel + BERT, char ConvLM",
}

# The paper (Baevski et al. 2020): Table 1 (WSJ, BERT base), Table 3 (WSJ, BERT small: the
# k-means rows), Table 2 (TIMIT, BERT small). WSJ cells: (LER, WER) for (decoder, split).
PAPER_WSJ: Dict[str, Dict[Tuple[str, str], Tuple[float, float]]] = {
    "logmel": {("viterbi", "valid"): (6.28, 19.46), ("viterbi", "test"): (4.14, 13.93),
               ("kenlm", "valid"): (3.32, 8.57), ("kenlm", "test"): (2.19, 5.64)},
    "wav2vec": {("viterbi", "valid"): (5.07, 16.24), ("viterbi", "test"): (3.26, 11.20),
                ("kenlm", "valid"): (2.73, 6.96), ("kenlm", "test"): (1.57, 4.32)},
    "gumbel": {("viterbi", "valid"): (7.04, 20.44), ("viterbi", "test"): (4.51, 14.67),
               ("kenlm", "valid"): (3.93, 9.55), ("kenlm", "test"): (2.40, 6.10)},
    "gumbel_bert": {("viterbi", "valid"): (4.13, 13.40), ("viterbi", "test"): (2.62, 9.39),
                    ("kenlm", "valid"): (2.41, 6.28), ("kenlm", "test"): (1.26, 3.62)},
    "kmeans": {("viterbi", "valid"): (7.33, 21.64), ("viterbi", "test"): (4.72, 15.17),
               ("kenlm", "valid"): (4.37, 10.26), ("kenlm", "test"): (2.28, 5.71)},
    "kmeans_bert": {("viterbi", "valid"): (4.31, 13.87), ("viterbi", "test"): (2.70, 9.62),
                    ("kenlm", "valid"): (2.60, 6.62), ("kenlm", "test"): (1.45, 4.08)},
    f"{CHARLM_SYSTEM}_charlm": {("charlm", "valid"): (1.79, 4.46), ("charlm", "test"): (0.93, 2.34)},
}
PAPER_WSJ_BERT_SMALL = {"gumbel_bert": {("viterbi", "test"): (2.81, 9.69), ("kenlm", "test"): (1.46, 4.09)}}
PAPER_TIMIT: Dict[str, Tuple[float, float]] = {  # PER (dev, test)
    "logmel": (16.9, 17.6), "wav2vec": (12.9, 14.7), "gumbel": (15.34, 17.78),
    "gumbel_bert": (9.64, 11.64), "kmeans": (15.65, 18.73), "kmeans_bert": (9.80, 11.40),
}
WSJ_COLUMNS = [("viterbi", "valid"), ("viterbi", "test"), ("kenlm", "valid"), ("kenlm", "test")]
COLUMN_NAMES = {"viterbi": "no LM", "kenlm": "4-gram LM", "charlm": "char ConvLM",
                "valid": "dev", "test": "test"}


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pair(pair) -> str:
    return "-" if pair is None else f"{_fmt(pair[0])} / {_fmt(pair[1])}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(row) + " |" for row in rows]


def wsj_table(results: Dict) -> List[str]:
    """Table 1: rows of systems (and the char ConvLM row), each cell ``ours (paper)`` LER / WER."""
    header = ["system"] + [f"{COLUMN_NAMES[s]} {COLUMN_NAMES[d]} LER / WER (paper)"
                           for d, s in WSJ_COLUMNS]
    rows = []
    for system in list(SYSTEMS) + [f"{CHARLM_SYSTEM}_charlm"]:
        columns = ([("charlm", "valid"), ("charlm", "test")] if system.endswith("_charlm")
                   else WSJ_COLUMNS)
        cells = []
        for decoder, split in columns:
            rates = results.get(system, {}).get(decoder, {}).get(split)
            ours = _pair(None if rates is None else (rates.uer, rates.wer))
            paper = PAPER_WSJ.get(system, {}).get((decoder, split))
            cells.append(f"{ours} ({_pair(paper)})")
        if system.endswith("_charlm"):
            cells = ["-", "-"] + cells
        rows.append([ROW_NAMES[system]] + cells)
    return _table(header, rows)


def timit_table(results: Dict) -> List[str]:
    """Table 2: dev/test PER of every system, greedy decoding (the paper uses no LM on TIMIT)."""
    rows = []
    for system in SYSTEMS:
        cells = []
        for k, split in enumerate(EVAL_SPLITS):
            rates = results.get(system, {}).get("viterbi", {}).get(split)
            paper = PAPER_TIMIT.get(system)
            cells.append(f"{_fmt(None if rates is None else rates.uer)} "
                         f"({_fmt(None if paper is None else paper[k])})")
        rows.append([ROW_NAMES[system]] + cells)
    return _table(["system", "dev PER (paper)", "test PER (paper)"], rows)


def bert_ablation_table(letters: Dict, phones: Dict) -> List[str]:
    """What a BERT adds on each unit inventory: test WER without and with the 4-gram, test PER."""
    pairs = [("gumbel", "gumbel_bert"), ("kmeans", "kmeans_bert"), (LOGMEL_UNITS, "logmel_kmeans_bert")]
    rows = []
    for plain, bert in pairs:
        for system in (plain, bert):
            cells = []
            for decoder in ("viterbi", "kenlm"):
                rates = letters.get(system, {}).get(decoder, {}).get("test")
                paper = PAPER_WSJ_BERT_SMALL.get(system, PAPER_WSJ.get(system, {})).get((decoder, "test"))
                cells.append(f"{_fmt(None if rates is None else rates.wer)} "
                             f"({_fmt(None if paper is None else paper[1])})")
            rates = phones.get(system, {}).get("viterbi", {}).get("test")
            paper = PAPER_TIMIT.get(system)
            cells.append(f"{_fmt(None if rates is None else rates.uer)} "
                         f"({_fmt(None if paper is None else paper[1])})")
            rows.append([ROW_NAMES[system]] + cells)
    return _table(["units", "test WER no LM (paper, BERT small)", "test WER 4-gram (paper)",
                   "test PER (paper)"], rows)


def read_usage(out: str) -> Dict[str, Dict]:
    """Each unit inventory's train usage report (``units/{name}/train.usage.json``)."""
    usage = {}
    for name in QUANTIZERS + (LOGMEL_UNITS,):
        path = usage_path(os.path.join(out, "units", name), "train")
        if os.path.exists(path):
            with open(path) as f:
                usage[name] = json.load(f)
    return usage


def units_table(usage: Dict[str, Dict]) -> List[str]:
    rows = []
    for name, stats in usage.items():
        phones = stats.get("phones") or {}
        units = phones.get("units", {})
        base = phones.get("logmel_kmeans", {})
        rows.append([name, str(stats["distinct_tokens"]), str(stats["possible_tokens"]),
                     f"{stats['code_perplexity']:.1f}", f"{stats['bitrate']:.0f}",
                     _fmt(units.get("pnmi")), _fmt(units.get("phone_purity")),
                     _fmt(base.get("pnmi"))])
    return _table(["units (train)", "distinct", "possible", "code perplexity", "bit/s", "PNMI",
                   "phone purity", "log-mel k-means PNMI (same k)"], rows)


def _points(log_path: str, kind: str, update_key: str, value_key: str) -> List[Tuple[int, float]]:
    """(update, value) of the json ``kind`` records in a stage log, by update (a resumed or
    restarted run's repeated updates keep their last value)."""
    points: Dict[int, float] = {}
    for record in log_records(log_path, kind):
        try:
            points[int(record[update_key])] = float(record[value_key])
        except (ValueError, KeyError):
            continue
    return sorted(points.items())


def training_curves(log_path: str) -> List[Tuple[int, float]]:
    """(update, loss) of fairseq-train's json ``train_inner`` lines in a stage log."""
    return _points(log_path, "train_inner", "num_updates", "loss")


def valid_curve(log_path: str, metric: str) -> List[Tuple[int, float]]:
    """(update, valid ``metric``) of every validation in a stage log."""
    return _points(log_path, "valid", "valid_num_updates", f"valid_{metric}")


def plot_valid_curves(curves: Dict[str, Dict[str, List[Tuple[int, float]]]], png_path: str):
    """One panel per label kind: valid error rate against updates, a colour per system, one line
    per seed's chain (``curves[labels][stage name]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {k: v for k, v in curves.items() if any(v.values())}
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.0), squeeze=False)
    colours = {system: f"C{i}" for i, system in enumerate(SYSTEMS)}
    for ax, (labels, lines) in zip(axes[0], panels.items()):
        named = set()
        for name, points in lines.items():
            if not points:
                continue
            system = name.split("/")[-1]
            ax.plot(*zip(*points), color=colours.get(system), marker=".", alpha=0.8,
                    label=None if system in named else ROW_NAMES.get(system, system))
            named.add(system)
        _label_update_axes(ax, f"acoustic models: valid {error_metric(labels).upper()} (%)")
    _save(fig, png_path)
    return True


def _label_update_axes(ax, title: str):
    """Title, an ``update`` x axis, a grid and the legend of one curves panel."""
    ax.set_title(title)
    ax.set_xlabel("update")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig, png_path: str):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def unigram_perplexity(units_dir: str, dedup_units: bool) -> Optional[float]:
    """Perplexity of the valid units under the train units' unigram distribution (add-one
    smoothed): what a masked LM that ignores context reaches. ``dedup_units``: over
    de-duplicated units, as a BERT trained with ``--dedup-units`` sees them."""
    def counts(split):
        total: Counter = Counter()
        with open(unit_path(units_dir, split), encoding="utf-8", errors="replace") as f:
            for line in f:
                tokens = np.array(line.split(), dtype=object)
                total.update((dedup_numpy(tokens) if dedup_units else tokens).tolist())
        return total

    try:
        train, valid = counts("train"), counts("valid")
    except OSError:
        return None
    vocab = set(train) | set(valid)
    n_train = sum(train.values()) + len(vocab)
    n_valid = sum(valid.values())
    if not n_valid:
        return None
    nll = -sum(c * math.log((train[t] + 1) / n_train) for t, c in valid.items()) / n_valid
    return math.exp(nll)


def bert_table(out: str, chains: Sequence[str], log_paths: Dict[str, str]) -> List[str]:
    """Each BERT's last valid masked-LM perplexity and accuracy (masked positions, predicted from
    context alone) beside the unigram perplexity of its units: a BERT whose perplexity is not
    well below the unigram one has not learned to use context."""
    rows = []
    for chain in chains:
        for units in QUANTIZERS + (LOGMEL_UNITS,):
            stage = f"{chain}/bert/{units}" if chain else f"bert/{units}"
            valid = log_records(log_paths.get(stage, ""), "valid")
            if not valid:
                continue
            last = valid[-1]
            dedup = _trained_on_dedup(os.path.join(out, chain, "bert", units, "checkpoint_last.pt"))
            unigram = unigram_perplexity(os.path.join(out, chain, "units", units), dedup)
            rows.append([stage, "yes" if dedup else "no", str(last.get("valid_num_updates", "-")),
                         _fmt(_float(last.get("valid_ppl"))), _fmt(unigram),
                         _fmt(_float(last.get("valid_accuracy")))])
    return _table(["BERT", "de-duplicated units", "updates", "valid masked-LM perplexity",
                   "unigram perplexity of the units", "valid masked accuracy (%)"], rows)


def _trained_on_dedup(checkpoint: str) -> bool:
    from ..checkpoint import load_fairseq_checkpoint

    try:
        cfg = load_fairseq_checkpoint(checkpoint, mmap=True)["cfg"]
        return bool(cfg["task"].get("dedup_units", False))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return False


def _float(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def seed_table(per_chain: List[Dict], labels: str) -> List[str]:
    """Each system's error rate (LER for letters, PER for phones) as mean +- standard deviation
    over the seeds' chains (n = chains that have the cell), greedy and (letters) 4-gram."""
    import statistics

    decoders = ("viterbi", "kenlm") if labels == "ltr" else ("viterbi",)
    header = ["system"] + [f"{COLUMN_NAMES[s]} {COLUMN_NAMES[d]}" for d in decoders for s in EVAL_SPLITS]
    rows = []
    for system in SYSTEMS:
        cells = []
        for decoder in decoders:
            for split in EVAL_SPLITS:
                values = [r[system][decoder][split].uer for r in per_chain
                          if split in r.get(system, {}).get(decoder, {})]
                if not values:
                    cells.append("-")
                elif len(values) == 1:
                    cells.append(f"{values[0]:.2f} (n=1)")
                else:
                    cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} "
                                 f"(n={len(values)})")
        if any(c != "-" for c in cells):
            rows.append([ROW_NAMES[system]] + cells)
    return _table(header, rows)


def plateau_notes(results: Dict[str, List[Dict]], chains: Sequence[str]) -> List[str]:
    """One line per acoustic model (any chain, letters or phones) whose greedy test output is on
    CTC's all-blank plateau (:attr:`~fairseq_vqw2v.decoding.scoring.ErrorRates.on_plateau`);
    empty when there is none. ``results``: see :func:`chain_results`."""
    notes = []
    for labels in LABEL_KINDS:
        for chain, chain_rates in zip(chains, results[labels]):
            for system, by_decoder in chain_rates.items():
                rates = by_decoder.get("viterbi", {}).get("test")
                if rates is not None and rates.on_plateau:
                    notes.append(f"- {ROW_NAMES[system]}, {chain or 'first chain'}: test "
                                 f"{rates.unit_name} {rates.uer:.2f}, its greedy output "
                                 f"{rates.output_ratio:.2f} {rates.unit_kind}s per reference "
                                 f"{rates.unit_kind}")
    return notes


def plot_curves(curves: Dict[str, List[Tuple[int, float]]], png_path: str):
    """One panel per stage group (pretrain, bert, am/ltr, am/phn, lm), one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: Dict[str, Dict] = {}
    for name, points in curves.items():
        if points:
            group = "/".join(name.split("/")[:2]) if name.startswith("am/") else name.split("/")[0]
            groups.setdefault(group, {})[name] = points
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, (group, lines) in zip(axes[0], groups.items()):
        for name, points in lines.items():
            ax.plot(*zip(*points), label=name.split("/")[-1])
        _label_update_axes(ax, f"{group}: training loss")
    _save(fig, png_path)
    return True


def plot_units(usage: Dict[str, Dict], png_path: str):
    """Distinct tokens and code perplexity, and PNMI against the matched log-mel baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not usage:
        return False
    names = list(usage)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = range(len(names))
    left.bar([i - 0.2 for i in x], [usage[n]["distinct_tokens"] for n in names], 0.4, label="distinct")
    left.bar([i + 0.2 for i in x], [usage[n]["code_perplexity"] for n in names], 0.4, label="perplexity")
    left.set_xticks(list(x), names)
    left.set_title("codebook usage (train)")
    left.legend()
    pnmi = [(usage[n].get("phones") or {}).get("units", {}).get("pnmi", float("nan")) for n in names]
    base = [(usage[n].get("phones") or {}).get("logmel_kmeans", {}).get("pnmi", float("nan")) for n in names]
    right.bar([i - 0.2 for i in x], pnmi, 0.4, label="units")
    right.bar([i + 0.2 for i in x], base, 0.4, label="log-mel k-means, same k")
    right.set_xticks(list(x), names)
    right.set_title("PNMI (train)")
    right.legend()
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    _save(fig, png_path)
    return True


def _results(out: str, labels: str, chain: str = "") -> Dict:
    root = os.path.join(out, chain, "decode", labels)
    try:
        return collect(root, labels)
    except (OSError, ValueError):  # nothing decoded yet
        return {}


def chain_results(out: str, chains: Sequence[str]) -> Dict[str, List[Dict]]:
    """labels -> the scored decodes of each chain of ``chains``, in order (system -> decoder ->
    split -> error rates; empty for a chain with nothing decoded)."""
    return {labels: [_results(out, labels, chain) for chain in chains] for labels in LABEL_KINDS}


def write_tables(out: str, config: Dict, corpus: Dict, times: Dict[str, float],
                 log_paths: Dict[str, str], chains: Sequence[str] = ("",),
                 am_updates: Optional[int] = None,
                 restarted: Optional[Dict[str, Tuple[int, str]]] = None) -> Tuple[str, Dict]:
    """Writes ``out/tables.md`` and the plots; returns the path and the first chain's letter
    results. ``chains``: the seeds' chain folders (``""`` is the first seed's, ``OUT`` itself);
    ``am_updates``: every acoustic model's training budget; ``restarted``: the acoustic models
    trained again after a run on CTC's all-blank plateau (stage -> (run kept, its seed), as
    :meth:`~.stages.Runner.restarted`)."""
    results = chain_results(out, chains)
    letters, phones = (results[labels][chains.index("")] for labels in ("ltr", "phn"))
    usage = read_usage(out)
    lines = ["# vq-wav2vec reproduction", "",
             "Each cell: this run (the paper's number). The paper trained on LibriSpeech 960 h and "
             "evaluated on WSJ (letters) and TIMIT (phones); this run's corpus is below.", "",
             f"Every acoustic model trains to the same budget ({am_updates} updates, the same "
             "flags) at its row's learning rate (the preset's `am_lr`, below), and keeps its best "
             "checkpoint on valid (`valid_curves.png`).", ""]
    if len(chains) == 1:
        lines += ["One training chain (one seed): a difference between two rows smaller than the "
                  "seed-to-seed spread (`--seeds 3` measures it; docs/reproducing.md gives the "
                  "embedded demo's) is no difference.", ""]
    else:
        lines += [f"## Seed spread: {len(chains)} chains (pretraining, units, BERT, features, "
                  "acoustic model), error rate mean ± standard deviation", "",
                  "The tables after this one are the first seed's chain.", ""]
        for labels in LABEL_KINDS:
            if any(results[labels]):
                lines += ([f"{error_metric(labels).upper()} (%):", ""]
                          + seed_table(results[labels], labels) + [""])
    if restarted:
        lines += ["## Acoustic models trained again", "",
                  "Their first run ended on CTC's all-blank plateau (its last validation's greedy "
                  f"output below {PLATEAU_OUTPUT_RATIO:g} units per reference unit), so it trained "
                  "again from scratch with another seed, up to the preset's `am_runs` runs; the "
                  "tables hold the run named here.", ""]
        lines += [f"- {name}: run {run}, `--seed {seed}`"
                  for name, (run, seed) in restarted.items()]
        lines += [""]
    plateau = plateau_notes(results, chains)
    if plateau:
        lines += ["## Acoustic models still on CTC's all-blank plateau", "",
                  f"Their greedy test output holds fewer than {PLATEAU_OUTPUT_RATIO:g} units per "
                  "reference unit, so most of their errors are deletions: the training did not "
                  "leave the plateau where the blank is almost every frame's best label within its "
                  "budget in any of its runs, and the number measures that, not the input. "
                  "They are in the tables as they came out.", ""] + plateau + [""]
    lines += ["## Table 1 (WSJ layout): LER / WER", ""] + wsj_table(letters) + [""]
    lines += ["## Table 2 (TIMIT layout): PER", ""] + timit_table(phones) + [""]
    lines += ["## BERT ablation: each unit inventory with and without a BERT", ""]
    lines += bert_ablation_table(letters, phones) + [""]
    if usage:
        lines += ["## Units", ""] + units_table(usage) + [""]
    bert = bert_table(out, chains, log_paths)
    if len(bert) > 2:
        lines += ["## BERTs: masked-LM perplexity on valid against the units' unigram perplexity",
                  ""] + bert + [""]
    plots = []
    valid = {labels: {name: valid_curve(path, error_metric(labels))
                      for name, path in log_paths.items()
                      if name.split("/")[-3:-1] == ["am", labels]}
             for labels in LABEL_KINDS}
    if plot_valid_curves(valid, os.path.join(out, "valid_curves.png")):
        plots.append("valid_curves.png (valid error rate of every acoustic model against updates, "
                     "one line per seed)")
    curves = {name: training_curves(path) for name, path in log_paths.items()
              if not names_other_chain(name)}
    if plot_curves(curves, os.path.join(out, "curves.png")):
        plots.append("curves.png (training loss of every training stage)")
    if plot_units(usage, os.path.join(out, "units.png")):
        plots.append("units.png (codebook usage and PNMI per quantizer)")
    for labels, results in (("ltr", letters), ("phn", phones)):
        if results:
            plot(results, os.path.join(out, f"error_rates_{labels}.png"))
            plots.append(f"error_rates_{labels}.png (test error rate by system and decoder)")
    if plots:
        lines += ["## Plots", ""] + [f"- {p}" for p in plots] + [""]
    lines += ["## Configuration", "", "```", json.dumps(config, indent=2), "```", ""]
    lines += ["## Corpus", ""] + [f"- {k}: {v}" for k, v in corpus.items()] + [""]
    groups: Dict[str, float] = {}
    for name, seconds in times.items():
        groups[name.split("/")[0]] = groups.get(name.split("/")[0], 0.0) + seconds
    lines += ["## Stage times (seconds, as run; resumed stages summed)", ""]
    lines += _table(["stage", "seconds"], [[n, f"{s:.0f}"] for n, s in times.items()]
                    + [[f"**{g} (all)**", f"{s:.0f}"] for g, s in groups.items()]
                    + [["**total**", f"{sum(times.values()):.0f}"]]) + [""]
    path = os.path.join(out, "tables.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, letters


def best_row(letters: Dict) -> Optional[Tuple[str, str, float]]:
    """(system, decoder, test WER) of the lowest test WER, or None."""
    best = None
    for system, by_decoder in letters.items():
        for decoder, by_split in by_decoder.items():
            rates = by_split.get("test")
            if rates is not None and rates.wer is not None and (best is None or rates.wer < best[2]):
                best = (system, decoder, rates.wer)
    return best

