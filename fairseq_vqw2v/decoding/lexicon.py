"""Lexicon files: one ``word<TAB>w o r d |`` line per spelling (fairseq / flashlight format).

A word may have several lines (several spellings). Spellings are label tokens of the acoustic
model's letter dictionary; the closing ``|`` is the word boundary the CTC model emits.
"""

import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

from fairseq.data import Dictionary

from fairseq_vqw2v.constants import WORD_BOUNDARY
from fairseq_vqw2v.data.text_files import decoding
from fairseq_vqw2v.errors import InputError, require_file

Lexicon = Dict[str, List[List[str]]]
"""word -> its spellings (lists of label tokens), in file order."""


def spell(word: str) -> List[str]:
    """``"word"`` -> ``["w", "o", "r", "d", "|"]``."""
    return list(word) + [WORD_BOUNDARY]


def unknown_labels(spelling: Iterable[str], tgt_dict: Dictionary) -> List[str]:
    """Tokens of ``spelling`` that are not labels of ``tgt_dict`` (its specials included)."""
    return [
        t for t in spelling if t not in tgt_dict.indices or tgt_dict.index(t) < tgt_dict.nspecial
    ]


def read_lexicon(path: str, tgt_dict: Optional[Dictionary] = None) -> Lexicon:
    """Reads a lexicon; with ``tgt_dict``, every spelling token must be one of its labels.

    Bad lines raise ``ValueError("path:line: reason")``; a missing file ``FileNotFoundError``.
    """
    require_file(path, "lexicon")
    lexicon: Lexicon = OrderedDict()
    with decoding(path), open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise InputError(f"{path}:{lineno}: expected 'word<TAB>spelling', got {line!r}")
            word, spelling = fields[0], fields[1:]
            if tgt_dict is not None:
                unknown = unknown_labels(spelling, tgt_dict)
                if unknown:
                    raise InputError(
                        f"{path}:{lineno}: word {word!r} is spelled with {unknown} which the "
                        f"letter dictionary does not have"
                    )
            lexicon.setdefault(word, []).append(spelling)
    if not lexicon:
        raise InputError(f"{path}: empty lexicon")
    return lexicon


def write_lexicon(path: str, words: Iterable[str]) -> int:
    """Writes one ``word<TAB>w o r d |`` line per word (atomically); returns the word count."""
    tmp = f"{path}.tmp"
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for word in words:
            f.write(f"{word}\t{' '.join(spell(word))}\n")
            count += 1
    os.replace(tmp, path)
    return count
