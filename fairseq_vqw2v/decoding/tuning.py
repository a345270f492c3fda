"""Search of the decoder's LM weight and word score on a dev set.

The caller computes emissions once and passes ``decode_fn(lm_weight, word_score)`` returning one
hypothesis label line per utterance; every point is scored against the references.
"""

import logging
import random
from typing import Callable, Dict, List, Sequence, Tuple

from fairseq_vqw2v.decoding.scoring import score

logger = logging.getLogger(__name__)

Point = Tuple[float, float]
"""(lm_weight, word_score)."""


def grid(lm_weights: Sequence[float], word_scores: Sequence[float]) -> List[Point]:
    """Every combination, LM weight major."""
    return [(w, s) for w in lm_weights for s in word_scores]


def random_points(
    n: int, lm_weight_range: Tuple[float, float], word_score_range: Tuple[float, float], seed: int
) -> List[Point]:
    """``n`` points drawn uniformly from the two ranges (reproducible with ``seed``)."""
    rng = random.Random(seed)
    return [
        (round(rng.uniform(*lm_weight_range), 4), round(rng.uniform(*word_score_range), 4))
        for _ in range(n)
    ]


def search(
    decode_fn: Callable[[float, float], List[str]],
    refs: List[str],
    labels: str,
    points: List[Point],
) -> List[Dict]:
    """Decodes and scores every point; rows ``lm_weight, word_score, wer, uer``, best first.

    Rows are ranked by WER (by the unit error rate for phones, where WER is ``None``), ties by
    the unit error rate, then by the order of ``points``.
    """
    if not points:
        raise ValueError("no (lm_weight, word_score) point to search")
    rows = []
    for i, (lm_weight, word_score) in enumerate(points, start=1):
        rates = score(refs, decode_fn(lm_weight, word_score), labels)
        rows.append({"lm_weight": lm_weight, "word_score": word_score,
                     "wer": rates.wer, "uer": rates.uer})
        logger.info("point %d/%d: lm_weight %g word_score %g: %s", i, len(points), lm_weight,
                    word_score, rates)
    # sorted() is stable: ties keep the order of ``points``
    return sorted(rows, key=lambda r: (r["uer"] if r["wer"] is None else r["wer"], r["uer"]))


def format_table(rows: List[Dict]) -> str:
    """Markdown table of :func:`search` rows."""
    def pct(value):
        return "-" if value is None else f"{value:.2f}"

    lines = ["| lm_weight | word_score | WER | UER |", "|---|---|---|---|"]
    lines += [f"| {r['lm_weight']:g} | {r['word_score']:g} | {pct(r['wer'])} | {pct(r['uer'])} |"
              for r in rows]
    return "\n".join(lines)
