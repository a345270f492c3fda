"""Command-line entry points: thin wrappers over the package."""

import logging
import sys
from typing import Callable, Optional


def run(command: Callable[[], Optional[str]], level: int = logging.INFO) -> int:
    """Runs one CLI command: logging set up, its one-line summary printed, and bad input (an
    ``OSError`` or ``ValueError`` naming the file at fault) printed as ``error: ...`` with exit
    status 1 instead of a traceback."""
    # force: importing fairseq may already have configured the root logger
    logging.basicConfig(format="%(levelname)s | %(name)s | %(message)s", level=level, force=True)
    try:
        summary = command()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if summary:
        print(summary)
    return 0
