"""Results of decoding runs: fairseq-generate outputs scored and laid out as the paper's table.

A results folder holds ``{system}/{decoder}/generate-{split}.txt`` (``fairseq-generate --task
vqw2v_asr ... --results-path RESULTS/{system}/{decoder}``, without ``--post-process``, so that
``T-``/``H-`` lines are label lines).
"""

import os
import re
from typing import Dict, List, Tuple

from ..constants import EVAL_SPLITS
from ..data.labels import LABEL_UNITS, error_metric
from .scoring import ErrorRates, score

DECODER_NAMES = {"viterbi": "no LM", "kenlm": "4-gram LM", "charlm": "char LM"}
_LINE = re.compile(r"^([TH])-(\d+)\t(?:[^\t]*\t)?(.*)$")


def read_generate_output(path: str) -> Tuple[List[str], List[str]]:
    """(references, hypotheses) of a fairseq-generate output, in utterance-id order."""
    refs, hyps = {}, {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            m = _LINE.match(line.rstrip("\n"))
            if m:
                (refs if m[1] == "T" else hyps)[int(m[2])] = m[3]
    if not refs or refs.keys() != hyps.keys():
        raise ValueError(f"{path}: expected T- and H- lines for the same utterances "
                         f"({len(refs)} T-, {len(hyps)} H-)")
    ids = sorted(refs)
    return [refs[i] for i in ids], [hyps[i] for i in ids]


def collect(root: str, labels: str) -> Dict[str, Dict[str, Dict[str, ErrorRates]]]:
    """system -> decoder -> split -> error rates, for every generate output under ``root``."""
    results: Dict[str, Dict[str, Dict[str, ErrorRates]]] = {}
    for system in sorted(os.listdir(root)):
        for decoder in DECODER_NAMES:
            for split in EVAL_SPLITS:
                path = os.path.join(root, system, decoder, f"generate-{split}.txt")
                if os.path.exists(path):
                    rates = score(*read_generate_output(path), labels)
                    results.setdefault(system, {}).setdefault(decoder, {})[split] = rates
    if not results:
        raise ValueError(f"{root}: no {{system}}/{{decoder}}/generate-{{split}}.txt files")
    return results


def _cell(rates: ErrorRates) -> str:
    if rates is None:
        return "-"
    return f"{rates.uer:.2f}" if rates.wer is None else f"{rates.uer:.2f} / {rates.wer:.2f}"


def format_table(results, labels: str) -> str:
    decoders = [d for d in DECODER_NAMES if any(d in r for r in results.values())]
    # letters spell words, so their rows carry WER too
    unit = error_metric(labels).upper() + (" / WER" if LABEL_UNITS[labels] == "letter" else "")
    header = ["system"] + [f"{split} {DECODER_NAMES[d]} ({unit})" for d in decoders for split in EVAL_SPLITS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system, by_decoder in results.items():
        cells = [_cell(by_decoder.get(d, {}).get(split)) for d in decoders for split in EVAL_SPLITS]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, png_path: str, split: str = "test"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results)
    decoders = [d for d in DECODER_NAMES if any(split in results[s].get(d, {}) for s in systems)]
    fig, ax = plt.subplots(figsize=(1.6 * len(systems) + 2, 4))
    width = 0.8 / max(len(decoders), 1)
    for k, decoder in enumerate(decoders):
        values = []
        for s in systems:
            rates = results[s].get(decoder, {}).get(split)
            values.append(float("nan") if rates is None else (rates.wer if rates.wer is not None else rates.uer))
        ax.bar([i + k * width for i in range(len(systems))], values, width, label=DECODER_NAMES[decoder])
    ax.set_xticks([i + width * (len(decoders) - 1) / 2 for i in range(len(systems))], systems)
    metric = "WER" if any(r.wer is not None for d in results.values() for x in d.values() for r in x.values()) else "PER"
    ax.set_ylabel(f"{split} {metric} (%)")
    ax.set_title(f"{split} {metric} by system and decoder")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
