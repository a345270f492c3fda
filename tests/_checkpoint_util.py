"""vq_wav2vec checkpoints as fairseq-train saves them, for tests and benchmarks that need one
without training it."""

import dataclasses
import os

import torch

from fairseq_vqw2v.checkpoint import fairseq_envelope
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel


def save_vq_checkpoint(path, model: VqWav2VecModel, data, **overrides) -> str:
    """Saves ``model`` (config and weights) at ``path`` as trained on ``data`` by the
    pretraining task, its config fields replaced by ``overrides`` (crafted checkpoints);
    returns the path."""
    config = {**dataclasses.asdict(model.cfg), "_name": "vq_wav2vec", **overrides}
    cfg = {"common": {"seed": 1}, "model": config, "criterion": None,
           "task": {"_name": "vqw2v_pretraining", "data": str(data)},
           "checkpoint": {"save_dir": os.path.dirname(str(path)), "restore_file": "checkpoint_last.pt"}}
    torch.save(fairseq_envelope(cfg, model.state_dict()), path)
    return str(path)
