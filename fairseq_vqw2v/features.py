"""Frozen BERT features of unit sequences, for the acoustic model (vq-wav2vec, section 4).

Used by the featurize CLI (features written to disk) and by the acoustic-model task (features
computed on the fly); both go through :class:`UnitBertFeaturizer` so they agree exactly.
"""

import os
from dataclasses import fields
from typing import Optional, Tuple

import torch

from fairseq.data import Dictionary

from .checkpoint import load_fairseq_checkpoint
from .models.unit_bert import UnitBertConfig, UnitBertModel


def load_unit_bert(path: str) -> Tuple[UnitBertModel, Dictionary]:
    """Loads a ``unit_bert`` checkpoint (trained by ``unit_mlm`` or converted from roberta) with
    its dictionary: ``dict.txt`` beside the checkpoint, else in the task's data folder; ``<mask>``
    is appended as the task does. Returns the model in eval mode on CPU."""
    state = load_fairseq_checkpoint(path)
    cfg = state["cfg"]
    if cfg["model"].get("_name") != "unit_bert":
        raise ValueError(f"{path}: not a unit_bert checkpoint (model {cfg['model'].get('_name')!r}); "
                         "convert roberta checkpoints with `python -m fairseq_vqw2v.cli.convert roberta`")
    model_cfg = UnitBertConfig(
        **{f.name: cfg["model"][f.name] for f in fields(UnitBertConfig) if f.name in cfg["model"]}
    )
    candidates = [os.path.join(os.path.dirname(os.path.abspath(path)), "dict.txt")]
    if cfg.get("task") is not None and cfg["task"].get("data"):
        candidates.append(os.path.join(str(cfg["task"]["data"]).split(":")[0], "dict.txt"))
    dict_path = next((p for p in candidates if os.path.exists(p)), None)
    if dict_path is None:
        raise FileNotFoundError(f"{path}: no dict.txt beside it or in {candidates[1:]}")
    dictionary = Dictionary.load(dict_path)
    dictionary.add_symbol("<mask>")
    model = UnitBertModel(model_cfg, len(dictionary), dictionary.pad())
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), dictionary
