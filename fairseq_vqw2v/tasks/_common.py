"""What every task of the plugin shares in its config."""

import os
from dataclasses import dataclass

import torch
from fairseq.dataclass import FairseqDataclass
from omegaconf import II
from omegaconf.errors import InterpolationResolutionError

from ..checkpoint import check_restore_file

# fairseq wraps the model in torch's DistributedDataParallel with device_ids=[device_id], which
# torch refuses for a CPU model: the error comes after setup, from deep inside torch
CUDA_ONLY_DDP_BACKENDS = ("c10d", "pytorch_ddp")
LOAD_ON_ALL_RANKS = "--load-checkpoint-on-all-dp-ranks"


@dataclass
class TrainingTaskConfig(FairseqDataclass):
    """Gives a task the fairseq-train options it checks before fairseq acts on them: the
    checkpoint a run would resume from (a truncated one fails in fairseq with a stack trace) and
    the distributed setup."""

    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    cpu: bool = II("common.cpu")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")
    load_checkpoint_on_all_dp_ranks: bool = II("checkpoint.load_checkpoint_on_all_dp_ranks")


def check_training_run(cfg) -> None:
    """Checks the checkpoint to resume from (:func:`check_restore_file`), that every process can
    load it, and that the DDP backend can wrap a CPU model; skipped where the interpolations have nothing to resolve against (a
    config built outside fairseq-train, e.g. a checkpoint's task config loaded for decoding)."""
    try:
        save_dir, restore_file = getattr(cfg, "save_dir", None), getattr(cfg, "restore_file", None)
        world_size = getattr(cfg, "distributed_world_size", None)
        on_cpu = getattr(cfg, "cpu", None) or not torch.cuda.is_available()
        ddp_backend = str(getattr(cfg, "ddp_backend", None))
        load_on_all_ranks = getattr(cfg, "load_checkpoint_on_all_dp_ranks", None)
    except InterpolationResolutionError:
        return
    distributed = isinstance(world_size, int) and world_size > 1
    if isinstance(save_dir, str) and isinstance(restore_file, str) and "${" not in save_dir + restore_file:
        check_restore_file(save_dir, restore_file)
        path = restore_file if os.path.isabs(restore_file) else os.path.join(save_dir, restore_file)
        # fairseq's rank 0 sends the others the checkpoint it loaded, config as an omegaconf
        # object, which torch >= 2.6 refuses to unpickle there (weights_only): each reads the file
        if distributed and load_on_all_ranks is False and os.path.isfile(path):
            raise ValueError(
                f"resuming {path} on {world_size} processes needs {LOAD_ON_ALL_RANKS}: without it "
                f"fairseq's other processes fail to unpickle the checkpoint rank 0 sends them"
            )
    if distributed and on_cpu and ddp_backend in CUDA_ONLY_DDP_BACKENDS:
        raise ValueError(
            f"--ddp-backend {ddp_backend} (fairseq's default) cannot train on CPU with "
            f"--distributed-world-size {world_size}: torch's DistributedDataParallel takes no "
            f"device ids for a CPU model. Use --ddp-backend legacy_ddp (with "
            f"--distributed-backend gloo); see examples/distributed."
        )
