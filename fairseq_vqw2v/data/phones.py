"""TIMIT phone sets and the standard 61 -> 39 folding of Lee and Hon (1989).

K.-F. Lee and H.-W. Hon, "Speaker-independent phone recognition using hidden Markov models",
IEEE Trans. ASSP 37(11), 1989. Every TIMIT phone-recognition result (the vq-wav2vec paper's
included) trains on the 61 (or 48) phones of the ``.PHN`` files and scores PER on the folded 39.
The table below is the one of Kaldi's ``egs/timit/s5/conf/phones.60-48-39.map`` (used by fairseq's
``examples/wav2vec/unsupervised/scripts/prepare_timit.sh``): closures, pauses, epenthetic silence
and ``h#`` become ``sil``; the glottal stop ``q`` is deleted. Repeated ``sil`` (a closure after a
pause) is kept, as Kaldi keeps it.
"""

from typing import Dict, Iterable, List, Optional

TIMIT_61 = (
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh "
    "hv ih ix iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh"
).split()
"""The 61 phone labels of TIMIT's ``.PHN`` files."""

SILENCE = "sil"

_FOLDS = {
    "ao": "aa",
    "ax": "ah",
    "ax-h": "ah",
    "axr": "er",
    "hv": "hh",
    "ix": "ih",
    "el": "l",
    "em": "m",
    "en": "n",
    "nx": "n",
    "eng": "ng",
    "zh": "sh",
    "ux": "uw",
    **{p: SILENCE for p in ("pcl", "tcl", "kcl", "bcl", "dcl", "gcl", "h#", "pau", "epi")},
    "q": None,
}

FOLD_61_TO_39: Dict[str, Optional[str]] = {p: _FOLDS.get(p, p) for p in TIMIT_61}
"""61-phone label -> 39-phone label, ``None`` for a deleted phone (``q``)."""

TIMIT_39 = sorted({p for p in FOLD_61_TO_39.values() if p is not None})
"""The 39 folded phones, ``sil`` included."""


def fold_timit_phones(phones: Iterable[str]) -> List[str]:
    """Folds a sequence of 61-set phones to the 39 set, deleting ``q``.

    Already-folded phones map to themselves (``sil`` included), so folding is idempotent and the
    same function scores references and hypotheses. An unknown phone raises ``ValueError``.
    """
    folded = []
    for phone in phones:
        if phone == SILENCE:
            folded.append(phone)
            continue
        if phone not in FOLD_61_TO_39:
            raise ValueError(f"unknown TIMIT phone {phone!r} (expected one of the 61 TIMIT phones)")
        target = FOLD_61_TO_39[phone]
        if target is not None:
            folded.append(target)
    return folded
