"""Error rates of hypotheses against references: WER, LER (letters) and PER (TIMIT phones).

Both sides are label lines in the label files' format: letters ``h e l l o | w o r l d |``
(``.ltr``) or phones ``sil dh ah ...`` (``.phn``).

- WER: edit distance over words, the words being the letters joined and split on ``|``.
- LER: edit distance over letter tokens with the word boundary kept as a unit, the convention of
  wav2letter and fairseq's ``uer`` (a missing space between two words costs one error). The
  boundary is counted in the ``.ltr`` form, one closing ``|`` per word, so the leading or doubled
  silences a CTC decoder may emit are not errors: only the words and their spelling are scored.
- PER: edit distance over phones after folding both sides to the 39-phone set of Lee and Hon
  (:func:`fairseq_vqw2v.data.phones.fold_timit_phones`; ``q`` is deleted, 39-set phones fold to
  themselves). WER is not defined for phones.
"""

from dataclasses import dataclass
from typing import List, Optional

import editdistance

from fairseq_vqw2v.constants import WORD_BOUNDARY
from fairseq_vqw2v.data.labels import LABEL_KINDS, LABEL_UNITS, UNIT_METRICS
from fairseq_vqw2v.data.text_norm import words_to_letters
from fairseq_vqw2v.data.phones import fold_timit_phones


def letters_to_words(tokens: List[str]) -> str:
    """``["h", "i", "|", "y", "o", "u", "|"]`` -> ``"hi you"`` (fairseq's ``letter`` post-process)."""
    return " ".join("".join(tokens).replace(WORD_BOUNDARY, " ").split())


def _units(line: str, unit_kind: str) -> List[str]:
    tokens = line.split()
    if unit_kind == "phone":
        return fold_timit_phones(tokens)
    return words_to_letters(letters_to_words(tokens)).split()


PLATEAU_OUTPUT_RATIO = 0.5
"""A CTC model whose output holds fewer units than this per reference unit has more than half of
them deleted: it is still on CTC's all-blank plateau, and its error rate measures a training that
did not start rather than its input (trained models of the embedded run emit 0.69-0.98 per
reference unit, those on the plateau 0.03-0.06; docs/reproducing.md)."""


def below_plateau_bound(output_ratio: float) -> bool:
    """Whether a CTC model's greedy output, ``output_ratio`` hypothesis units per reference unit,
    is below :data:`PLATEAU_OUTPUT_RATIO`: the model is still on CTC's all-blank plateau. The
    bound itself is not on it."""
    return output_ratio < PLATEAU_OUTPUT_RATIO


@dataclass
class ErrorRates:
    """Accumulated edit-distance counts; ``unit_kind`` is ``'letter'`` (LER) or ``'phone'`` (PER)."""

    word_errors: int = 0
    words: int = 0
    unit_errors: int = 0
    units: int = 0
    unit_kind: str = "letter"
    hyp_units: int = 0
    """Units of the hypotheses, scored as the references' (:attr:`output_ratio`)."""

    def __post_init__(self):
        if self.unit_kind not in LABEL_UNITS.values():
            raise ValueError(f"unit_kind must be 'letter' or 'phone', got {self.unit_kind!r}")

    def add(self, ref: str, hyp: str) -> None:
        """Scores one hypothesis label line against its reference label line.

        An empty reference has no error rate and raises ``ValueError``; an empty hypothesis is
        all deletions.
        """
        ref_units = _units(ref, self.unit_kind)
        if not ref_units:
            raise ValueError(f"empty reference {ref!r}: an error rate needs at least one unit")
        hyp_units = _units(hyp, self.unit_kind)
        self.unit_errors += editdistance.eval(ref_units, hyp_units)
        self.units += len(ref_units)
        self.hyp_units += len(hyp_units)
        if self.unit_kind == "letter":
            ref_words = letters_to_words(ref.split()).split()
            hyp_words = letters_to_words(hyp.split()).split()
            self.word_errors += editdistance.eval(ref_words, hyp_words)
            self.words += len(ref_words)

    @property
    def wer(self) -> Optional[float]:
        """Word error rate in percent; ``None`` for phones or before any reference."""
        if self.unit_kind == "phone" or self.words == 0:
            return None
        return 100.0 * self.word_errors / self.words

    @property
    def uer(self) -> Optional[float]:
        """Letter (LER) or phone (PER) error rate in percent; ``None`` before any reference."""
        return 100.0 * self.unit_errors / self.units if self.units else None

    @property
    def output_ratio(self) -> Optional[float]:
        """Hypothesis units per reference unit; ``None`` before any reference. A trained CTC model
        emits about as many as the references hold; one still on CTC's all-blank plateau, where
        the blank is almost every frame's best label, emits almost none."""
        return self.hyp_units / self.units if self.units else None

    @property
    def on_plateau(self) -> bool:
        """Whether :attr:`output_ratio` is on CTC's all-blank plateau (:func:`below_plateau_bound`)."""
        return self.units > 0 and below_plateau_bound(self.output_ratio)

    @property
    def unit_name(self) -> str:
        """``'LER'`` or ``'PER'``: how tables call :attr:`uer`."""
        return UNIT_METRICS[self.unit_kind].upper()

    def merge(self, other: "ErrorRates") -> "ErrorRates":
        """Counts of both (e.g. two shards of a test set); the unit kinds must agree."""
        if other.unit_kind != self.unit_kind:
            raise ValueError(f"cannot merge {self.unit_kind} and {other.unit_kind} error rates")
        return ErrorRates(
            word_errors=self.word_errors + other.word_errors,
            words=self.words + other.words,
            unit_errors=self.unit_errors + other.unit_errors,
            units=self.units + other.units,
            unit_kind=self.unit_kind,
            hyp_units=self.hyp_units + other.hyp_units,
        )

    __add__ = merge

    def __str__(self) -> str:
        parts = []
        if self.wer is not None:
            parts.append(f"WER {self.wer:.2f} ({self.word_errors}/{self.words})")
        if self.uer is not None:
            parts.append(f"{self.unit_name} {self.uer:.2f} ({self.unit_errors}/{self.units}), "
                         f"{self.hyp_units} {self.unit_kind}s output")
        return ", ".join(parts) or f"no {self.unit_kind} reference scored"


def score(refs: List[str], hyps: List[str], labels: str) -> ErrorRates:
    """Error rates of ``hyps`` against ``refs``, label lines of kind ``labels`` (``ltr``/``phn``).

    Errors name the 1-based position of the offending pair (the line of the label file).
    """
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {sorted(LABEL_KINDS)}, got {labels!r}")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    rates = ErrorRates(unit_kind=LABEL_UNITS[labels])
    for i, (ref, hyp) in enumerate(zip(refs, hyps), start=1):
        try:
            rates.add(ref, hyp)
        except ValueError as e:
            raise ValueError(f"utterance {i}: {e}") from e
    return rates
