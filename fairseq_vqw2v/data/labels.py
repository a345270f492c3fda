"""Transcription labels for CTC: the label dictionary and label files aligned with a manifest.

A label file ``{split}.{ltr,phn}`` has one line per manifest line (see :mod:`.manifest`); its
dictionary is fairseq's ``dict.{ltr,phn}.txt`` beside the manifests, built from the train labels
when missing (fairseq's ``audio_finetuning`` convention). The CTC blank is the dictionary's
``<s>`` (index 0), as in fairseq's ``ctc`` criterion and wav2vec 2.0 models; the other specials
(``<pad>``, ``</s>``, ``<unk>``) never occur in targets.
"""

import logging
import os
from collections import Counter
from typing import List

import torch
from fairseq.data import Dictionary

from .manifest import ManifestError, read_lines
from .text_files import UndecodableTextError, decoding, load_dictionary, write_dictionary

logger = logging.getLogger(__name__)

LABEL_UNITS = {"ltr": "letter", "phn": "phone"}
"""Label file extension -> the unit it holds and is scored in: letters (``|`` closing every word,
LER) and phones (PER)."""

LABEL_KINDS = tuple(LABEL_UNITS)
"""The label file extensions, the choices of ``--labels``."""

UNIT_METRICS = {"letter": "ler", "phone": "per"}
"""Unit -> the name of its error rate: the metric the ``ctc_asr`` criterion logs on valid (what
``--best-checkpoint-metric`` and the valid curves read), upper-cased in tables."""


def error_metric(labels: str) -> str:
    """The error rate's metric name (:data:`UNIT_METRICS`) of label files ``labels``."""
    return UNIT_METRICS[LABEL_UNITS[labels]]


def ctc_blank(dictionary: Dictionary) -> int:
    """Index of the CTC blank: ``<s>``, fairseq's convention."""
    return dictionary.bos()


def read_label_lines(path: str, expected: int) -> List[str]:
    """The lines of a label file, checked: one non-empty line per manifest line.

    Args:
        expected: number of manifest lines the file must match.
    """
    lines = read_lines(path, "labels")
    if len(lines) != expected:
        raise ManifestError(
            f"{path}: {len(lines)} label lines but the manifest has {expected} utterances"
        )
    for lineno, line in enumerate(lines, start=1):
        if not line.split():
            raise ManifestError(f"{path}:{lineno}: empty label line")
    return lines


def load_label_dictionary(data: str, labels: str, train_split: str = "train") -> Dictionary:
    """``{data}/dict.{labels}.txt``; when missing, built from ``{train_split}.{labels}`` and written
    there (symbols by frequency), so that every later run and the decoder share it."""
    path = os.path.join(data, f"dict.{labels}.txt")
    if os.path.exists(path):
        try:
            dictionary = load_dictionary(path)
        except UndecodableTextError:
            raise
        except Exception as e:  # fairseq raises ValueError/RuntimeError on a malformed line
            raise ManifestError(f"{path}: not a fairseq dictionary: {e}") from e
        if len(dictionary) <= dictionary.nspecial:
            raise ManifestError(f"{path}: the label dictionary is empty")
        return dictionary
    source = os.path.join(data, f"{train_split}.{labels}")
    if not os.path.exists(source):
        raise ManifestError(f"{path}: no label dictionary, and no {source} to build it from")
    counts = Counter()
    with decoding(source), open(source, encoding="utf-8-sig") as f:
        for line in f:
            counts.update(line.split())
    if not counts:
        raise ManifestError(f"{source}: no labels to build {path} from")
    write_dictionary(path, counts)
    logger.info(f"wrote {path}: {len(counts)} symbols from {source}")
    return Dictionary.load(path)


def encode_labels(path: str, lines: List[str], dictionary: Dictionary) -> List[torch.Tensor]:
    """Label lines -> 1-D long tensors of dictionary ids; an unknown symbol is an error naming
    ``path:line`` (a target must never be ``<unk>``)."""
    encoded = []
    for lineno, line in enumerate(lines, start=1):
        ids = []
        for symbol in line.split():
            index = dictionary.indices.get(symbol)
            if index is None or index < dictionary.nspecial:
                raise ManifestError(
                    f"{path}:{lineno}: symbol {symbol!r} is not in the label dictionary"
                )
            ids.append(index)
        encoded.append(torch.tensor(ids, dtype=torch.long))
    return encoded
