"""What every task of the plugin shares: its config's checkpoint and precision options, the checks
of them at setup, and train/valid steps under ``--autocast``."""

import importlib.util
import logging
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II
from omegaconf.errors import InterpolationResolutionError

from ..checkpoint import check_restore_file
from ..precision import bf16_autocast

logger = logging.getLogger(__name__)

AUTOCAST_CHOICES = ChoiceEnum(["none", "bf16"])


@dataclass
class CommonTaskConfig(FairseqDataclass):
    """Gives a task fairseq-train's checkpoint folder, so that it can check the checkpoint a run
    would resume from before fairseq loads it (a truncated one fails there with a stack trace),
    and fairseq's precision flags, so that it can check them against ``--autocast``."""

    autocast: AUTOCAST_CHOICES = field(
        default="none",
        metadata={"help": "bf16: forward and loss under torch.autocast to bf16, weights, "
                  "gradients and optimizer in fp32 (CPUs with AVX512-BF16/AMX, bf16 GPUs; fp32 "
                  "elsewhere, with a message). fairseq's --bf16 is bf16 weights on TPUs"},
    )
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    bf16: bool = II("common.bf16")
    fp16: bool = II("common.fp16")
    amp: bool = II("common.amp")


def _resolved(cfg, name: str):
    """``cfg.name``, or None where its interpolation has nothing to resolve against (a config
    built outside fairseq-train, e.g. a checkpoint's task config loaded for decoding)."""
    try:
        value = getattr(cfg, name, None)
    except InterpolationResolutionError:
        return None
    return None if isinstance(value, str) and "${" in value else value


def check_config(cfg) -> None:
    """What ``setup_task`` checks before fairseq builds anything: the checkpoint a run resumes
    from (:func:`check_restore_file`) and the precision flags."""
    save_dir, restore_file = _resolved(cfg, "save_dir"), _resolved(cfg, "restore_file")
    if save_dir is not None and restore_file is not None:
        check_restore_file(save_dir, restore_file)
    if _resolved(cfg, "bf16") and importlib.util.find_spec("torch_xla") is None:
        # fairseq's --bf16 implies --tpu: the trainer would fail looking for an XLA device
        raise ValueError("--bf16 is fairseq's TPU mode (bf16 weights through torch_xla, not "
                         "installed); for bf16 mixed precision on CPU or GPU use --autocast bf16")
    fairseq_flags = [f"--{name}" for name in ("bf16", "fp16", "amp") if _resolved(cfg, name)]
    if cfg.autocast != "none" and fairseq_flags:
        raise ValueError(f"--autocast {cfg.autocast} and {' '.join(fairseq_flags)} both set the "
                         "precision: use one")
    if _resolved(cfg, "amp") and not torch.cuda.is_available():
        logger.warning("--amp is fairseq's CUDA mixed precision (fp16, loss scaling): without a "
                       "GPU it trains in fp32; use --autocast bf16")


class AutocastTask(FairseqTask):
    """A task whose train and valid steps run the forward and loss under ``--autocast``."""

    def _autocast(self, model, criterion):
        """``criterion`` as fairseq's steps call it, under this task's autocast: fairseq's own
        steps stay in use (backward outside autocast, as torch asks)."""
        if self.cfg.autocast == "none":
            return criterion
        device_type = next(model.parameters()).device.type

        def forward(model, sample):
            with bf16_autocast(device_type):
                loss, sample_size, logging_output = criterion(model, sample)
            return loss.float(), sample_size, logging_output

        return forward

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        return super().train_step(sample, model, self._autocast(model, criterion), optimizer,
                                  update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        return super().valid_step(sample, model, self._autocast(model, criterion))
