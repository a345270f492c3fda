"""The unit file format: ``{split}.src`` token lines and the ``dict.txt`` that counts them.

One token per 10 ms frame; with G groups of V codewords a token is the G indices joined by ``-``
(``12-301`` for G=2, a single integer such as ``37`` for G=1). A ``{split}.src`` file holds one
line of space-separated tokens per manifest line, in manifest order, and ``dict.txt`` is a
fairseq ``Dictionary`` file (``token count``, most frequent first), so ``fairseq-preprocess
--only-source`` and the unit BERT read them as they are.

Everything that writes or reads these files, or turns tokens into codes and back, is here.
"""

import array
import logging
import math
import os
import re
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from fairseq.data import Dictionary

from ..errors import InputError, MissingInputError
from .shards import finished_parts, manifest_order, remove_parts
from .text_files import decoding, load_dictionary, write_dictionary

logger = logging.getLogger(__name__)

SEPARATOR = "-"
UNIT_TOKEN = re.compile(rf"^\d+({re.escape(SEPARATOR)}\d+)*$")
MASK = "<mask>"
MAX_UNKNOWN_UNITS = 0.05
"""Default ``--max-unknown-units``: the largest share of units missing from a dictionary before
:func:`check_unknown_units` stops (a few unseen codes are normal; more means mismatched files)."""
UNIT_DICT = "dict.txt"
"""A unit folder's dictionary: fairseq's name, which ``unit_mlm`` (like ``masked_lm``) reads."""


def unit_path(folder: str, split: str) -> str:
    """``{folder}/{split}.src``: a split's unit lines."""
    return os.path.join(folder, f"{split}.src")


def unit_dict_path(folder: str) -> str:
    """``{folder}/dict.txt``: the dictionary of a folder's units."""
    return os.path.join(folder, UNIT_DICT)


def usage_path(folder: str, split: str, ext: str = "json") -> str:
    """``{folder}/{split}.usage.{ext}``: the usage report of a split's units (``json``, written
    with ``quantize --report`` and by ``logmel_units``) or its plot (``png``)."""
    return os.path.join(folder, f"{split}.usage.{ext}")


class UnitFileError(InputError):
    """A malformed unit file; the message names the file and line."""


def codes_to_tokens(codes: torch.Tensor) -> List[str]:
    """T x G codeword indices -> T tokens ``i0-i1-...``."""
    # one flat list: a T x G tensor's nested tolist() alone took 4x this whole function
    groups = codes.size(1)
    digits = list(map(str, codes.reshape(-1).tolist()))
    return list(map(SEPARATOR.join, zip(*(digits[g::groups] for g in range(groups)))))


def tokens_to_codes(line: str, groups: int, where: str = "") -> torch.Tensor:
    """A line of tokens -> T x G long tensor; ``where`` (``file:line``) prefixes errors."""
    rows = []
    for token in line.split():
        parts = token.split(SEPARATOR)
        if len(parts) != groups or not all(p.isdigit() for p in parts):
            raise UnitFileError(f"{where}: token {token!r} is not {groups} indices joined by '-'")
        rows.append([int(p) for p in parts])
    return torch.tensor(rows, dtype=torch.long).view(-1, groups)


def write_unit_lines(path: str, lines: Iterable[List[str]]) -> Counter:
    """Writes one line of tokens per utterance (atomically); returns the token counts."""
    counts = Counter()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for tokens in lines:
            counts.update(tokens)
            f.write(" ".join(tokens) + "\n")
    os.replace(tmp, path)
    return counts


def read_unit_codes(path: str) -> List[torch.Tensor]:
    """The codes of every line of a ``.src`` file, one T x G long tensor per line (G read from
    the first token); malformed tokens and empty lines raise errors naming ``path:line``."""
    with decoding(path), open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    first = lines[0].split()[0] if lines and lines[0].split() else ""
    groups = first.count(SEPARATOR) + 1
    codes = []
    for lineno, line in enumerate(lines, start=1):
        if not line.split():
            raise UnitFileError(f"{path}:{lineno}: empty line (an utterance without units)")
        codes.append(tokens_to_codes(line, groups, f"{path}:{lineno}"))
    return codes


def check_unknown_units(unknown: int, total: int, limit: float, units: str, dictionary: str
                        ) -> None:
    """Refuses units of which more than a share ``limit`` (``--max-unknown-units``) are missing
    from the dictionary: units and dictionary (or BERT) made from different quantizers, where a
    BERT would learn, or see, mostly ``<unk>``. ``units`` and ``dictionary`` name the files."""
    share = unknown / max(total, 1)
    if share > limit:
        raise UnitFileError(
            f"{units}: {unknown} of {total} units ({share:.0%}) are not in the dictionary of "
            f"{dictionary} (limit --max-unknown-units {limit:.0%}): were the units and the "
            "dictionary made by the same quantizer?"
        )


def read_unit_file(path: str, dictionary: Dictionary, max_unknown: Optional[float] = None,
                   dictionary_path: str = "the dictionary") -> Tuple[np.ndarray, np.ndarray]:
    """Reads a ``.src`` unit file into (all token ids concatenated, int32; line offsets, N + 1).

    Units missing from ``dictionary`` become ``<unk>`` (counted and logged; more than a share
    ``max_unknown`` of them is :func:`check_unknown_units`' error, naming ``dictionary_path``);
    tokens that are not units, and empty lines, raise :class:`UnitFileError` naming
    ``path:line``. For corpora of hundreds of millions of units, binarize once with
    fairseq-preprocess instead.
    """
    ids = array.array("i")
    offsets = [0]
    unk = dictionary.unk()
    lookup = dictionary.indices
    with decoding(path), open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                raise UnitFileError(f"{path}:{lineno}: empty line (an utterance without units)")
            line_ids = [lookup.get(tok, -1) for tok in tokens]
            for tok, idx in zip(tokens, line_ids):
                if idx < 0 and not UNIT_TOKEN.match(tok):
                    raise UnitFileError(
                        f"{path}:{lineno}: {tok!r} is not a unit token (expected e.g. '12-305')"
                    )
            ids.extend(line_ids)
            offsets.append(len(ids))
    if len(offsets) == 1:
        raise UnitFileError(f"{path}: no utterances (an empty unit file)")
    tokens = np.frombuffer(ids, dtype=np.int32).copy()
    unknown = int((tokens < 0).sum())
    if max_unknown is not None:
        check_unknown_units(unknown, len(tokens), max_unknown, path, dictionary_path)
    if unknown:
        tokens[tokens < 0] = unk
        logger.warning(f"{path}: {unknown} of {len(tokens)} units not in the dictionary: <unk>")
    return tokens, np.asarray(offsets, dtype=np.int64)


def read_dictionary_counts(path: str) -> Counter:
    """Token counts of a ``dict.txt``."""
    counts = Counter()
    with decoding(path), open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UnitFileError(f"{path}:{n}: expected 'token count', got {line.rstrip()!r}")
            counts[parts[0]] += int(parts[1])
    return counts


def merge_unit_shards(dest: str, splits: List[str], num_shards: int) -> Tuple[int, Counter]:
    """Writes every split's ``{split}.src`` in ``dest`` from the parts of its ``num_shards``
    shards, in manifest order, and the ``dict.txt`` counting them all, as a single job over
    ``splits`` does; removes the parts. Returns (lines written, token counts)."""
    parts = finished_parts(dest, splits, num_shards)
    orders = {split: manifest_order(folders) for split, folders in parts.items()}
    lines, counts = 0, Counter()
    for split, folders in parts.items():
        part_lines = []
        for folder in folders:
            with open(unit_path(folder, split)) as f:
                part_lines.append(f.read().splitlines())
        counts.update(write_unit_lines(unit_path(dest, split),
                                       (part_lines[p][j].split() for p, j in orders[split])))
        lines += len(orders[split])
    write_dictionary(unit_dict_path(dest), counts)
    remove_parts(parts)
    return lines, counts


def dictionary_codebook(path: str) -> Tuple[int, int]:
    """(V, G) of the units a ``dict.txt`` counts: the largest code + 1, and the groups."""
    counts = read_dictionary_counts(path)
    if not counts:
        raise UnitFileError(f"{path}: no units")
    codes = [[int(i) for i in token.split(SEPARATOR)] for token in counts]
    return max(max(c) for c in codes) + 1, len(codes[0])


def load_unit_dictionary(path: str) -> Dictionary:
    """The quantizer's ``dict.txt``; missing or holding no unit is an error naming it."""
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: unit dictionary not found (written by the quantizer)")
    dictionary = load_dictionary(path)
    if len(dictionary) == dictionary.nspecial:
        raise UnitFileError(f"{path}: empty unit dictionary (no unit: every unit would be <unk>)")
    return dictionary


def dictionary_state(dictionary: Dictionary) -> Dict[str, list]:
    """The symbols after the specials and their counts, in index order: plain lists, which a
    checkpoint can carry (and :func:`dictionary_from_state` reads back) so that a model needs no
    ``dict.txt`` found through the data path recorded at training time."""
    start = dictionary.nspecial
    return {"symbols": dictionary.symbols[start:], "counts": dictionary.count[start:]}


def dictionary_from_state(state: Dict[str, list]) -> Dictionary:
    """The dictionary :func:`dictionary_state` describes, with the same indices."""
    dictionary = Dictionary()
    for symbol, count in zip(state["symbols"], state["counts"]):
        dictionary.add_symbol(symbol, n=count)
    return dictionary


def add_mask(dictionary: Dictionary) -> int:
    """Appends ``<mask>`` after the units, as fairseq's masked_lm task does (so a unit BERT
    trained by either task has the same vocabulary); returns its index."""
    return dictionary.add_symbol(MASK)


class UnitDictionary(Dictionary):
    """fairseq ``Dictionary`` over all V^G tokens without storing them: index = 4 + flat code.

    ``fairseq-generate`` prints hypotheses through its target dictionary; this one turns the flat
    index back into ``i0-i1``. The codebook shape is known only once a model is loaded, hence
    :meth:`set_codebook`.
    """

    def __init__(self):
        super().__init__()
        self.num_vars = self.groups = None

    def set_codebook(self, num_vars: int, groups: int):
        if groups * math.log2(num_vars) >= 31:
            # fairseq-generate casts hypothesis tokens to int32
            raise ValueError(
                f"{num_vars}^{groups} unit tokens do not fit fairseq-generate's int32 token ids; "
                f"use python -m fairseq_vqw2v.cli.quantize instead"
            )
        self.num_vars, self.groups = num_vars, groups

    def flat_index(self, codes: torch.Tensor) -> torch.Tensor:
        """... x G codes -> ... token indices."""
        weights = self.num_vars ** torch.arange(self.groups - 1, -1, -1, device=codes.device)
        return self.nspecial + (codes * weights).sum(-1)

    def __len__(self):
        return self.nspecial + (self.num_vars or 0) ** (self.groups or 0)

    def __getitem__(self, index):
        index = int(index)
        if index < self.nspecial:
            return self.symbols[index]
        flat, digits = index - self.nspecial, []
        for _ in range(self.groups):
            flat, digit = divmod(flat, self.num_vars)
            digits.append(str(digit))
        return SEPARATOR.join(reversed(digits))

    def index(self, sym):
        if sym in self.indices:
            return self.indices[sym]
        return int(self.flat_index(tokens_to_codes(sym, self.groups, "token"))[0])
