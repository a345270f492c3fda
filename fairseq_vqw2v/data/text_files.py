"""Text files that cannot be decoded, named by ``file:line``; fairseq dictionaries read and written.

Python's ``UnicodeDecodeError`` gives a byte position within whatever chunk the reader was
decoding, and no file name. Every reader of our text files (manifests, labels, ``.src``,
``dict*.txt``, lexicons, transcripts, alignments) wraps its reading in :func:`decoding`, which
turns it into an :class:`~fairseq_vqw2v.errors.InputError` naming the file, line and byte.
"""

import os
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from fairseq.data import Dictionary

from ..errors import InputError


class UndecodableTextError(InputError):
    """A text file that is not UTF-8; the message is ``file:line: ...``."""


def undecodable(path: str) -> UndecodableTextError:
    """The error for ``path``, found again line by line (the first line that does not decode)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return UndecodableTextError(
                    f"{path}:{lineno}: not UTF-8 text (byte "
                    f"0x{raw[e.start]:02x} at column {e.start + 1}): a binary file, or text in "
                    f"another encoding (convert it with iconv -t UTF-8)"
                )
    return UndecodableTextError(f"{path}: not UTF-8 text")


@contextmanager
def decoding(path: str) -> Iterator[None]:
    """Reads of ``path`` inside the block raise :func:`undecodable`'s error instead of a bare
    ``UnicodeDecodeError``."""
    try:
        yield
    except UnicodeDecodeError:
        raise undecodable(path) from None


def load_dictionary(path: str) -> Dictionary:
    """fairseq's ``Dictionary.load(path)``; fairseq turns a decoding error into a bare
    ``Exception`` naming neither line nor byte, which becomes :func:`undecodable`'s error."""
    try:
        return Dictionary.load(path)
    except Exception as e:
        if isinstance(e.__context__, UnicodeError):
            raise undecodable(path) from None
        raise


def write_dictionary(path: str, counts: Counter) -> None:
    """A fairseq dictionary file (``dict.txt``, ``dict.ltr.txt``): ``symbol count`` lines, most
    frequent first, ties by symbol, so the same counts always give the same indices; written
    atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for symbol, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            f.write(f"{symbol} {n}\n")
    os.replace(tmp, path)
