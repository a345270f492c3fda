"""Conversion of fairseq ``roberta`` masked-LM checkpoints (trained by ``masked_lm`` on unit
tokens, e.g. the released RoBERTa-on-k-means-units archive: ``model.pt`` + ``dict.txt``) into
``unit_bert`` checkpoints.

The map is explicit: every ``roberta`` parameter has one destination, q/k/v projections are
concatenated into our fused projection, and anything unmapped (other than classification heads,
which a masked LM does not use) is an error rather than silently dropped.
"""

import argparse
import os
import shutil
from dataclasses import fields
from typing import Dict

import torch

from ..checkpoint import fairseq_envelope, load_fairseq_checkpoint, model_name
from ..models.unit_bert import UnitBertConfig, find_dictionary

# roberta name (after the "encoder.sentence_encoder." / "encoder.lm_head." prefix) -> ours
_EMBEDDING_KEYS = {
    "embed_tokens.weight": "encoder.embed_tokens.weight",
    "embed_positions.weight": "encoder.embed_positions.weight",
    "layernorm_embedding.weight": "encoder.embed_norm.weight",
    "layernorm_embedding.bias": "encoder.embed_norm.bias",
    "emb_layer_norm.weight": "encoder.embed_norm.weight",  # fairseq <= 0.10 name
    "emb_layer_norm.bias": "encoder.embed_norm.bias",
}
_LAYER_KEYS = {
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn.out_proj.bias": "self_attn.out_proj.bias",
    "self_attn.in_proj_weight": "self_attn.qkv.weight",  # fairseq <= 0.9: fused, q-k-v order
    "self_attn.in_proj_bias": "self_attn.qkv.bias",
    "self_attn_layer_norm.weight": "attn_norm.weight",
    "self_attn_layer_norm.bias": "attn_norm.bias",
    "fc1.weight": "fc1.weight",
    "fc1.bias": "fc1.bias",
    "fc2.weight": "fc2.weight",
    "fc2.bias": "fc2.bias",
    "final_layer_norm.weight": "ffn_norm.weight",
    "final_layer_norm.bias": "ffn_norm.bias",
}
_HEAD_KEYS = {
    "dense.weight": "lm_head.dense.weight",
    "dense.bias": "lm_head.dense.bias",
    "layer_norm.weight": "lm_head.norm.weight",
    "layer_norm.bias": "lm_head.norm.bias",
    "bias": "lm_head.bias",
    "weight": "lm_head.weight",  # tied to the token embedding in both models
}
ROBERTA_ARCHS = ("roberta", "roberta_base", "roberta_large", "roberta_prenorm")
_SKIPPED = ("sentence_encoder.version",)


def roberta_state_to_unit_bert(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Maps a ``roberta`` state dict (``encoder.*`` or the older ``decoder.*``) to ours."""
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    unknown = []
    for name, value in state.items():
        key = name.split(".", 1)[1] if name.startswith(("encoder.", "decoder.")) else name
        if key in _SKIPPED or key.startswith("classification_heads."):
            continue  # a masked LM does not use classification heads
        if key.startswith("sentence_encoder."):
            key = key[len("sentence_encoder.") :]
            if key in _EMBEDDING_KEYS:
                out[_EMBEDDING_KEYS[key]] = value
                continue
            if key.startswith("layers."):
                _, index, rest = key.split(".", 2)
                prefix = f"encoder.layers.{index}."
                if rest in _LAYER_KEYS:
                    out[prefix + _LAYER_KEYS[rest]] = value
                    continue
                module, _, param = rest.partition("_proj.")
                if module in ("self_attn.q", "self_attn.k", "self_attn.v"):
                    qkv.setdefault(f"{prefix}self_attn.qkv.{param}", {})[module[-1]] = value
                    continue
        elif key.startswith("lm_head.") and key[len("lm_head.") :] in _HEAD_KEYS:
            out[_HEAD_KEYS[key[len("lm_head.") :]]] = value
            continue
        unknown.append(name)
    for dest, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"incomplete q/k/v projections for {dest}: {sorted(parts)}")
        out[dest] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if unknown:
        raise ValueError(f"roberta parameters with no unit_bert counterpart: {unknown[:8]}")
    return out


def unit_bert_config_from_roberta(model_cfg) -> UnitBertConfig:
    """Reads roberta's model config (``argparse.Namespace`` or omegaconf) into ours, refusing
    variants our model does not implement."""

    def get(name, default=None):
        if isinstance(model_cfg, argparse.Namespace):
            return getattr(model_cfg, name, default)
        return model_cfg.get(name, default)

    unsupported = {
        "encoder_normalize_before": (get("encoder_normalize_before", False), False),
        "layernorm_embedding": (get("layernorm_embedding", True), True),
        "untie_weights_roberta": (get("untie_weights_roberta", False), False),
        "activation_fn": (get("activation_fn", "gelu"), "gelu"),
        "no_scale_embedding": (get("no_scale_embedding", True), True),
        "encoder_learned_pos": (get("encoder_learned_pos", True), True),
    }
    bad = {k: v for k, (v, want) in unsupported.items() if v != want}
    if bad:
        raise ValueError(f"roberta variant not supported by unit_bert: {bad}")
    values = {f.name: get(f.name) for f in fields(UnitBertConfig) if get(f.name) is not None}
    values.pop("_name", None)
    return UnitBertConfig(**values)


def convert_roberta_checkpoint(src: str, dest: str) -> str:
    """Converts ``src`` (a roberta ``model.pt``, or a folder with ``model.pt`` + ``dict.txt``)
    into a ``unit_bert`` checkpoint at ``dest``, with ``dict.txt`` copied beside it.

    The dictionary is ``dict.txt`` beside ``src`` (or in the folder), else in the checkpoint's
    task data folder. Returns ``dest``.
    """
    path = os.path.join(src, "model.pt") if os.path.isdir(src) else src
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: roberta checkpoint not found")
    state = load_fairseq_checkpoint(path)
    cfg = state["cfg"]
    arch = model_name(cfg["model"])
    if arch not in ROBERTA_ARCHS:
        raise ValueError(f"{path}: not a roberta checkpoint (model {arch!r})")
    model_cfg = unit_bert_config_from_roberta(cfg["model"])
    weights = roberta_state_to_unit_bert(state["model"])

    dict_path = find_dictionary(path, cfg)

    dest_dir = os.path.dirname(os.path.abspath(dest))
    os.makedirs(dest_dir, exist_ok=True)
    if os.path.abspath(dict_path) != os.path.join(dest_dir, "dict.txt"):
        shutil.copyfile(dict_path, os.path.join(dest_dir, "dict.txt"))
    torch.save(unit_bert_checkpoint(model_cfg, weights, dest_dir), dest)
    return dest



def unit_bert_checkpoint(model_cfg: UnitBertConfig, weights, data_dir: str) -> dict:
    """A fairseq-format checkpoint (dataclass ``cfg``) that fairseq's loaders and ours accept."""
    model = {f.name: getattr(model_cfg, f.name) for f in fields(model_cfg)}
    model["_name"] = "unit_bert"
    # a plain dict, as fairseq's trainer saves it (omegaconf objects need more unpickling)
    cfg = {
        "common": {"seed": 1},
        "model": model,
        "task": {
            "_name": "unit_mlm",
            "data": data_dir,
            "tokens_per_sample": model_cfg.max_positions,
        },
        "criterion": {"_name": "span_mlm"},
    }
    return fairseq_envelope(cfg, weights, criterion_name="SpanMlmCriterion")
