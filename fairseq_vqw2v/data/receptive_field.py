"""The receptive field of a conv stack: the shortest audio that yields a frame."""

from typing import Sequence, Tuple


def receptive_field(conv_layers: Sequence[Tuple[int, int, int]]) -> int:
    """Samples seen by one output frame of a conv stack of ``(dim, kernel, stride)`` layers.

    A file shorter than this yields no frame at all, so it cannot be used for training.
    """
    field_size, jump = 1, 1
    for _, kernel, stride in conv_layers:
        field_size += (kernel - 1) * jump
        jump *= stride
    return field_size
