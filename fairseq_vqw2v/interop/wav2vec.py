"""Converts checkpoints of fairseq's built-in ``wav2vec`` model (any vq_type; trained with
``fairseq-train --arch wav2vec`` or the released vq-wav2vec.pt / vq-wav2vec_kmeans.pt) into
``vq_wav2vec`` checkpoints of this plugin."""

import logging
import os
import re
from dataclasses import fields
from typing import Dict

import torch
from omegaconf import OmegaConf

from fairseq_vqw2v.checkpoint import CheckpointError, load_fairseq_checkpoint, model_name
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig

logger = logging.getLogger(__name__)

# fairseq wraps each conv block in an nn.Sequential; ours names the parts
STATE_DICT_RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^feature_aggregator\.conv_layers\.(\d+)\.1\.", r"feature_aggregator.conv_layers.\1.conv."),
    (r"^feature_aggregator\.conv_layers\.(\d+)\.3\.", r"feature_aggregator.conv_layers.\1.norm."),
    (r"^vector_quantizer\.projection\.0\.", r"vector_quantizer.projection."),
    (r"^vector_quantizer\.projection\.1\.", r"vector_quantizer.norm."),
]

# Reference options our model does not implement (none is used by the paper or the recipes)
UNSUPPORTED = {"aggregator": "cnn", "project_features": "none"}


def convert_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """fairseq ``Wav2VecModel`` parameter names -> ``VqWav2VecModel`` names (same tensors)."""
    converted = {}
    for key, value in state_dict.items():
        for pattern, replacement in STATE_DICT_RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def convert_config(model_cfg, infonce: bool, max_update: int) -> Dict:
    """fairseq ``wav2vec`` model config -> our config as a plain dict (with ``_name``)."""
    for name, supported in UNSUPPORTED.items():
        value = model_cfg.get(name, supported)
        if value != supported:
            raise ValueError(f"wav2vec checkpoint uses {name}={value!r}; only {supported!r} is supported")
    source = OmegaConf.to_container(model_cfg, resolve=False)
    ours = {
        f.name: source[f.name]
        for f in fields(VqWav2VecConfig)
        if f.name in source and f.name not in ("_name", "infonce", "max_update")
    }
    ours["_name"] = "vq_wav2vec"
    ours["vq_temp"] = list(ours.get("vq_temp", VqWav2VecConfig.vq_temp))
    ours["infonce"] = bool(infonce)
    ours["max_update"] = int(max_update)
    return ours


def convert_wav2vec_checkpoint(src: str, dest: str) -> Dict:
    """Reads fairseq ``wav2vec`` checkpoint ``src``, writes a ``vq_wav2vec`` checkpoint ``dest``
    (training state other than the optimizer is kept). Returns our model config."""
    # the loader has refused layer lists that are not literals: they are copied as they are
    state = load_fairseq_checkpoint(src)
    cfg = state["cfg"]
    name = model_name(cfg.model)
    if name != "wav2vec":
        raise CheckpointError(f"{src}: expected a fairseq 'wav2vec' checkpoint, found model {name!r}")
    criterion = cfg.get("criterion") or {}
    infonce = criterion.get("infonce", False) if hasattr(criterion, "get") else False
    max_update = cfg.optimization.get("max_update", 0) if cfg.get("optimization") else 0
    model_cfg = convert_config(cfg.model, infonce, max_update)

    # fairseq saves configs as plain containers (its loader turns them back into DictConfigs)
    out_cfg = OmegaConf.to_container(cfg, resolve=False)
    out_cfg["model"] = model_cfg
    out_cfg["task"] = {"_name": "vqw2v_pretraining", "data": cfg.task.get("data") if cfg.task else None}
    out = {k: v for k, v in state.items() if k not in ("last_optimizer_state", "model", "cfg", "args")}
    out.update(cfg=out_cfg, args=None, model=convert_state_dict(state["model"]))
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = dest + ".tmp"
    torch.save(out, tmp)
    os.replace(tmp, dest)
    logger.info(f"converted {src} ({model_cfg.get('vq_type', 'none')}) -> {dest}")
    return model_cfg
