"""The project's one word convention for transcriptions: transliteration to a-z, normalised words
(``.wrd``) and their letters (``.ltr``, fairseq's ``libri_labels.py``)."""

import re
import unicodedata
from typing import List

from fairseq_vqw2v.constants import WORD_BOUNDARY

_NOT_WORD_CHAR = re.compile(r"[^a-z' ]+")

# letters NFKD does not decompose into a-z plus marks, and apostrophe look-alikes
_TRANSLITERATION = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l",
    "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ı": "i",
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
})


def transliterate(text: str) -> str:
    """Latin letters with diacritics to a-z (``café`` -> ``cafe``, ``straße`` -> ``strasse``),
    typographic apostrophes to ``'``; other characters are left as they are."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def foreign_letters(text: str) -> List[str]:
    """Letters of ``text`` that :func:`normalize_words` cannot write in a-z (sorted, unique)."""
    return sorted({c for c in transliterate(text).lower()
                   if unicodedata.category(c).startswith("L") and not "a" <= c <= "z"})


def normalize_words(text: str) -> str:
    """Project word convention: lower case, letters a-z and apostrophes only, single spaces.

    Letters are transliterated first (:func:`transliterate`); hyphens and other punctuation
    become spaces (``"Well-known, isn't it?"`` -> ``"well known isn't it"``); apostrophes
    standing alone are dropped. Letters with no a-z form (:func:`foreign_letters`) split words:
    callers that must not lose them check that first.
    """
    words = _NOT_WORD_CHAR.sub(" ", transliterate(text).lower()).split()
    return " ".join(w for w in words if w.strip("'"))


def words_to_letters(words: str) -> str:
    """``"hello world"`` -> ``"h e l l o | w o r l d |"`` (fairseq's ``libri_labels.py``)."""
    return " ".join(" ".join(w) + " " + WORD_BOUNDARY for w in words.split())
