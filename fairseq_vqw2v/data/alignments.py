"""Phone alignments: the ``{split}.align`` file format and the phone of each frame.

``{split}.align`` (written by ``manifests.synth``): one line per manifest line, the utterance's
phone segments ``phone:end_seconds`` in order (``pau:0.184 dh:0.233 ...``); a segment starts
where the previous one ends, the first at 0.

Frames: a front end whose frame ``t`` covers samples ``[t * stride, t * stride + window)`` (the
conv encoder and the Kaldi log-mel both snip edges; stride 160 = 10 ms) labels frame ``t`` with
the phone whose segment holds the frame's centre ``t * stride + window / 2``; a centre at or past
the last end time (kal16's audio ends inside its final ``pau``) takes the last phone. So the
encoder (window 465 samples for the standard 5-layer stack) and the log-mel (400 samples) are
each matched to the phones they actually see.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np

from ..constants import FRAME_STRIDE, SAMPLE_RATE
from .text_files import decoding

ALIGN_EXT = "align"

ALIGN_TOLERANCE_SECONDS = 0.05
"""An alignment may end this much before the last frame centre (flite's end times are rounded
to 1 ms and its wavs end within 5 ms of them); ending earlier means the wrong alignment file."""

Segments = List[Tuple[str, float]]


def format_alignment(segments: Segments) -> str:
    """[(phone, end seconds)] -> an ``.align`` line, ``pau:0.184 dh:0.233 ...``."""
    return " ".join(f"{phone}:{end:.3f}" for phone, end in segments)


def parse_alignment(line: str, where: str) -> Segments:
    """``pau:0.184 dh:0.233 ...`` -> [(phone, end seconds)]; ``where`` (``file:line``) prefixes
    errors (a malformed token, end times not increasing, an empty line)."""
    segments, previous = [], 0.0
    for token in line.split():
        phone, sep, end = token.rpartition(":")
        try:
            end = float(end)
        except ValueError:
            end = math.nan
        if not sep or not phone or not math.isfinite(end):
            raise ValueError(f"{where}: expected 'phone:end_seconds', got {token!r}")
        if end < previous:
            raise ValueError(f"{where}: segment {token!r} ends before the previous one ({previous})")
        segments.append((phone, end))
        previous = end
    if not segments:
        raise ValueError(f"{where}: empty alignment")
    return segments


def read_alignments(path: str) -> List[Segments]:
    """The segments of every line of an ``.align`` file."""
    with decoding(path), open(path, encoding="utf-8") as f:
        return [parse_alignment(line, f"{path}:{n}") for n, line in enumerate(f, 1)]


def frame_phones(segments: Segments, num_frames: int, window: int, stride: int = FRAME_STRIDE,
                 sample_rate: int = SAMPLE_RATE, where: str = "alignment") -> List[str]:
    """The phone at the centre of each of ``num_frames`` frames (see the module docstring).

    Raises ValueError naming ``where`` when the last centre lies more than
    ``ALIGN_TOLERANCE_SECONDS`` past the alignment's end.
    """
    phones = [p for p, _ in segments]
    ends = np.array([e for _, e in segments])
    centres = (np.arange(num_frames) * stride + window / 2) / sample_rate
    if num_frames and centres[-1] > ends[-1] + ALIGN_TOLERANCE_SECONDS:
        raise ValueError(
            f"{where}: the alignment ends at {ends[-1]:.3f} s but frame {num_frames - 1} is "
            f"centred at {centres[-1]:.3f} s: alignment and audio do not match"
        )
    # a centre equal to an end time belongs to the next segment: segments are [start, end)
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(phones) - 1)
    return [phones[i] for i in index]


def frame_phone_lines(alignments: Sequence[Segments], indices: Sequence[int],
                      num_frames: Sequence[int], window: int, path: str) -> List[List[str]]:
    """``frame_phones`` of the utterances ``indices`` (0-based lines of ``path``, the alignment
    file, which errors name) with ``num_frames`` frames each."""
    if len(indices) and max(indices) >= len(alignments):
        raise ValueError(f"{path}: {len(alignments)} lines, but line {max(indices) + 1} is needed")
    return [frame_phones(alignments[i], n, window, where=f"{path}:{i + 1}")
            for i, n in zip(indices, num_frames)]
