"""What every task of the plugin shares in its config."""

from dataclasses import dataclass

from fairseq.dataclass import FairseqDataclass
from omegaconf import II
from omegaconf.errors import InterpolationResolutionError

from ..checkpoint import check_restore_file


@dataclass
class ResumableTaskConfig(FairseqDataclass):
    """Gives a task fairseq-train's checkpoint folder, so that it can check the checkpoint a run
    would resume from before fairseq loads it (a truncated one fails there with a stack trace)."""

    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")


def check_resume(cfg) -> None:
    """:func:`check_restore_file` for a task config; skipped where the interpolations have
    nothing to resolve against (a config built outside fairseq-train, e.g. a checkpoint's task
    config loaded for decoding)."""
    try:
        save_dir, restore_file = getattr(cfg, "save_dir", None), getattr(cfg, "restore_file", None)
    except InterpolationResolutionError:
        return
    if isinstance(save_dir, str) and isinstance(restore_file, str) and "${" not in save_dir + restore_file:
        check_restore_file(save_dir, restore_file)
