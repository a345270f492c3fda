"""fairseq_vqw2v: vq-wav2vec, BERT on discrete units and CTC acoustic models as a fairseq plugin.

Importing the package (or passing its folder to ``--user-dir``) registers every model, task and
criterion it defines with fairseq's registries, puts our checks in front of fairseq's checkpoint
loading (:func:`fairseq_vqw2v.checkpoint.install_fairseq_checks`) and makes the project's own
user-facing errors end fairseq's binaries with their one-line message
(:func:`fairseq_vqw2v.errors.install_excepthook`).

This is the one module whose import changes the process, on purpose: it is fairseq's entry point
for ``--user-dir`` (fairseq-train and fairseq-generate import it, and nothing else of ours,
before they build anything), so registration happens here, and so do the two hooks above and the
warning filters below. They must be in place before fairseq's own calls into hydra and torch
warn (or load a checkpoint), and no later hook of ours runs before those calls; each filter
matches one known message from one module, so every other warning still shows. Everything else
that sets process-wide state (oneDNN's primitive cache, glibc's allocator) is an explicit call
where a process starts training or inference.
"""

import warnings

__version__ = "0.1.0"

# Warnings that fairseq's own calls into hydra and torch raise on every run and that say nothing
# about the user's run, as (message regex, module the warning is attributed to, category). Each
# filter matches one message from one module, so every other warning, ours included, still shows.
KNOWN_HARMLESS_WARNINGS = (
    (r"hydra\.experimental\.initialize\(\) is no longer experimental",
     r"hydra\.experimental\.initialize", UserWarning),
    (r"\s*The version_base parameter is not specified", r"hydra\.experimental\.initialize",
     UserWarning),
    (r"hydra\.experimental\.compose\(\) is no longer experimental",
     r"hydra\.experimental\.compose", UserWarning),
    (r"In '\w+': Usage of deprecated keyword in package header", r"hydra\.core\.default_element",
     UserWarning),
    # raised with a stack level above the outermost frame, so Python attributes it to "sys"
    (r"\s*'\w+' is validated against ConfigStore schema with the same name", r"sys$", UserWarning),
    (r"\s*The strict flag in the compose API is deprecated", r"hydra\.compose", UserWarning),
    # fairseq always asks for pinned memory; on a CPU-only run torch says it is not used
    (r"'pin_memory' argument is set as true but no accelerator is found",
     r"torch\.utils\.data\.dataloader", UserWarning),
    (r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", r"fairseq\.tasks\.fairseq_task",
     FutureWarning),
    # fairseq's wav2vec criterion logs float(loss term) of tensors that require grad
    (r"Converting a tensor with requires_grad=True to a scalar",
     r"fairseq\.criterions\.wav2vec_criterion", UserWarning),
)


def _quiet_known_harmless() -> None:
    for message, module, category in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


_quiet_known_harmless()

from . import criterions, models, tasks  # noqa: E402, F401  (registration side effects)
from .checkpoint import install_fairseq_checks  # noqa: E402
from .errors import install_excepthook  # noqa: E402

install_fairseq_checks()
install_excepthook()
