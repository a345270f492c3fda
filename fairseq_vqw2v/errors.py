"""The project's user-facing errors, and how the fairseq binaries print them.

Bad input that the user can fix (a manifest line, a unit file, a checkpoint, an undecodable text
file) raises an :class:`InputError` whose message names the file (and line) at fault. Our CLIs
print such messages as ``error: ...``; ``fairseq-train`` and ``fairseq-generate`` would print a
Python traceback of 30 lines above the one that matters, so :func:`install_excepthook` (run when
the plugin is imported) makes an uncaught :class:`InputError` end the process with its message
alone and exit status 1. ``VQW2V_TRACEBACK=1`` in the environment keeps the full traceback; any
other exception keeps its traceback too.
"""

import os
import sys

TRACEBACK_VARIABLE = "VQW2V_TRACEBACK"


class InputError(ValueError):
    """Bad input the user can fix; the message starts with the file (and line) at fault."""


class MissingInputError(InputError, FileNotFoundError):
    """An input file that does not exist; the message starts with its path."""


def require_file(path: str, what: str) -> None:
    """:class:`MissingInputError` naming ``path`` unless it is a file (flashlight, for one,
    would just abort)."""
    if not os.path.isfile(path):
        raise MissingInputError(f"{path}: {what} not found")


def _message(error: InputError) -> str:
    """The error's own message; a torch DataLoader worker re-raises it with the worker's
    traceback prepended, whose last line is ``module.Class: message``."""
    text = str(error)
    marker = f"{type(error).__name__}: "
    return text.rsplit(marker, 1)[-1].strip() if "Original Traceback" in text else text


def _print_input_errors(previous):
    def hook(exc_type, error, tb):
        if issubclass(exc_type, InputError) and not os.environ.get(TRACEBACK_VARIABLE):
            print(f"error: {_message(error)}", file=sys.stderr)
            return
        previous(exc_type, error, tb)

    hook.prints_input_errors = True
    return hook


def install_excepthook() -> None:
    """Uncaught :class:`InputError`\\ s end the process with their message alone (exit status
    1, as for any uncaught exception); other exceptions go to the hook installed before. Idempotent."""
    if not getattr(sys.excepthook, "prints_input_errors", False):
        sys.excepthook = _print_input_errors(sys.excepthook)
