"""What every training task of the plugin shares: its config's checkpoint, distributed and
precision options, the checks of them at setup, and train/valid steps under ``--autocast``."""

import importlib.util
import logging
import os
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II
from omegaconf.errors import InterpolationResolutionError

from ..checkpoint import check_restore_file, restore_path
from ..modules.onednn_linear import limit_primitive_cache
from ..precision import bf16_autocast

logger = logging.getLogger(__name__)

AUTOCAST_CHOICES = ChoiceEnum(["none", "bf16"])

# fairseq wraps the model in torch's DistributedDataParallel with device_ids=[device_id], which
# torch refuses for a CPU model: the error comes after setup, from deep inside torch
CUDA_ONLY_DDP_BACKENDS = ("c10d", "pytorch_ddp")
LOAD_ON_ALL_RANKS = "--load-checkpoint-on-all-dp-ranks"


@dataclass
class TrainingTaskConfig(FairseqDataclass):
    """Gives a task the fairseq-train options it checks before fairseq acts on them: the
    checkpoint a run would resume from (a truncated one fails in fairseq with a stack trace), the
    distributed setup, and fairseq's precision flags against ``--autocast``."""

    autocast: AUTOCAST_CHOICES = field(
        default="none",
        metadata={"help": "bf16: forward and loss under torch.autocast to bf16, weights, "
                  "gradients and optimizer in fp32 (CPUs with AVX512-BF16/AMX, bf16 GPUs; fp32 "
                  "elsewhere, with a message). fairseq's --bf16 is bf16 weights on TPUs"},
    )
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    cpu: bool = II("common.cpu")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")
    load_checkpoint_on_all_dp_ranks: bool = II("checkpoint.load_checkpoint_on_all_dp_ranks")
    bf16: bool = II("common.bf16")
    fp16: bool = II("common.fp16")
    amp: bool = II("common.amp")
    train_subset: str = II("dataset.train_subset")


def _resolved(cfg, name: str):
    """``cfg.name``, or None where its interpolation has nothing to resolve against (a config
    built outside fairseq-train, e.g. a checkpoint's task config loaded for decoding)."""
    try:
        value = getattr(cfg, name, None)
    except InterpolationResolutionError:
        return None
    return None if isinstance(value, str) and "${" in value else value


def is_train_split(cfg, split: str) -> bool:
    """Whether fairseq-train trains on ``split`` (``--train-subset``, any name: a pretraining
    split of more audio than train's, say); "train" where nothing resolves the option (a
    checkpoint's task config loaded for decoding)."""
    return split == (_resolved(cfg, "train_subset") or "train")


def check_training_run(cfg) -> None:
    """What ``setup_task`` checks before fairseq builds anything: the checkpoint to resume from
    (:func:`check_restore_file`) and that every process can load it, that the DDP backend can
    wrap a CPU model, and the precision flags."""
    save_dir, restore_file = _resolved(cfg, "save_dir"), _resolved(cfg, "restore_file")
    world_size = _resolved(cfg, "distributed_world_size")
    distributed = isinstance(world_size, int) and world_size > 1
    if save_dir is not None and restore_file is not None:
        check_restore_file(save_dir, restore_file)
        path = restore_path(save_dir, restore_file)
        # fairseq's rank 0 sends the others the checkpoint it loaded, config as an omegaconf
        # object, which torch >= 2.6 refuses to unpickle there (weights_only): each reads the file
        if (distributed and _resolved(cfg, "load_checkpoint_on_all_dp_ranks") is False
                and os.path.isfile(path)):
            raise ValueError(
                f"resuming {path} on {world_size} processes needs {LOAD_ON_ALL_RANKS}: without it "
                f"fairseq's other processes fail to unpickle the checkpoint rank 0 sends them"
            )
    on_cpu = _resolved(cfg, "cpu") or not torch.cuda.is_available()
    ddp_backend = str(_resolved(cfg, "ddp_backend"))
    if distributed and on_cpu and ddp_backend in CUDA_ONLY_DDP_BACKENDS:
        raise ValueError(
            f"--ddp-backend {ddp_backend} (fairseq's default) cannot train on CPU with "
            f"--distributed-world-size {world_size}: torch's DistributedDataParallel takes no "
            f"device ids for a CPU model. Use --ddp-backend legacy_ddp (with "
            f"--distributed-backend gloo); see examples/distributed."
        )
    if _resolved(cfg, "bf16") and importlib.util.find_spec("torch_xla") is None:
        # fairseq's --bf16 implies --tpu: the trainer would fail looking for an XLA device
        raise ValueError("--bf16 is fairseq's TPU mode (bf16 weights through torch_xla, not "
                         "installed); for bf16 mixed precision on CPU or GPU use --autocast bf16")
    if _resolved(cfg, "fp16") and on_cpu:
        # fairseq's fp16 optimizers keep state and check overflows with CUDA tensors: on CPU
        # the first update (or the first overflow) fails deep in fairseq
        raise ValueError("--fp16 (and --memory-efficient-fp16) is fairseq's CUDA half precision: "
                         "without a GPU use --autocast bf16")
    fairseq_flags = [f"--{name}" for name in ("bf16", "fp16", "amp") if _resolved(cfg, name)]
    if cfg.autocast != "none" and fairseq_flags:
        raise ValueError(f"--autocast {cfg.autocast} and {' '.join(fairseq_flags)} both set the "
                         "precision: use one")
    if _resolved(cfg, "amp") and not torch.cuda.is_available():
        logger.warning("--amp is fairseq's CUDA mixed precision (fp16, loss scaling): without a "
                       "GPU it trains in fp32; use --autocast bf16")


class AutocastTask(FairseqTask):
    """A task whose train and valid steps run the forward and loss under ``--autocast``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        # a process builds a task to train or decode with it: set it up before any model runs
        limit_primitive_cache()

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
