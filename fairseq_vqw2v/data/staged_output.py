"""A command's output files, complete or absent.

A CLI that writes several files (``quantize``: every split's ``.src``, labels and reports, then
``dict.txt``) and fails half-way (a bad audio file in the last split, a full disk, Ctrl-C) must not
leave some of them behind: a ``train.src`` without its ``dict.txt`` looks like a finished run.
:func:`staged_folder` gives it a hidden folder inside the destination to write into, and moves
what it holds into place only once everything has been written.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def staged_folder(dest: str) -> Iterator[str]:
    """A new hidden folder inside ``dest`` (created if needed) for the block to write into.

    When the block ends without an error, each entry of the folder replaces the one of the same
    name in ``dest`` (a folder replaces a folder); on an error nothing is moved. The hidden folder
    is removed in both cases, so ``dest`` holds either every output or none of this run's.
    """
    os.makedirs(dest, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".partial-", dir=dest)
    try:
        yield stage
        for name in sorted(os.listdir(stage)):
            target = os.path.join(dest, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(stage, name), target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
