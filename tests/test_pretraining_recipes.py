"""The pretraining recipes in examples/pretrain name only real fields of our task, criterion and
model configs (a typo would fail only when someone launches a multi-GPU run)."""

import os

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_vqw2v.criterions.contrastive import ContrastiveCriterionConfig
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig, VqWav2VecModel, arch_config
from fairseq_vqw2v.tasks.pretraining import PretrainingConfig

RECIPES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "pretrain")
SECTIONS = {
    "task": ("vqw2v_pretraining", PretrainingConfig),
    "criterion": ("vqw2v_contrastive", ContrastiveCriterionConfig),
    "model": ("vq_wav2vec", VqWav2VecConfig),
}


@pytest.mark.parametrize("recipe", ["tiny", "small", "gumbel", "kmeans"])
def test_recipe_sections_fit_our_configs(recipe):
    cfg = OmegaConf.load(os.path.join(RECIPES, f"{recipe}.yaml"))
    for section, (name, dataclass) in SECTIONS.items():
        values = OmegaConf.to_container(cfg[section])
        assert values.pop("_name") == name
        values.pop("data", None)  # ??? (mandatory) until given on the command line
        schema = OmegaConf.structured(dataclass)
        merged = OmegaConf.merge(schema, values)  # raises on an unknown field or a bad type
        for key, value in values.items():
            assert OmegaConf.to_container(merged)[key] == value, key
    if recipe != "tiny":
        assert cfg.model.conv_feature_layers.count("(512") >= 5


# a recipe's own choices where it departs from its arch (the tiny CPU recipe predicts 8 steps)
DEPARTURES = {"tiny": {"prediction_steps": 8}}


@pytest.mark.parametrize("recipe", ["tiny", "small", "gumbel", "kmeans"])
def test_recipe_model_is_its_arch(recipe):
    """Under fairseq-hydra-train the recipes spell the arch out: the spelled-out model is the arch's
    (every field, hence the parameter count: 34.1 M gumbel and 33.0 M kmeans, as released)."""
    values = OmegaConf.to_container(OmegaConf.load(os.path.join(RECIPES, f"{recipe}.yaml")).model)
    values.pop("_name")
    spelled = OmegaConf.to_object(OmegaConf.merge(
        OmegaConf.structured(VqWav2VecConfig(infonce=False, max_update=0)), values))
    arch = arch_config(f"vq_wav2vec_{recipe}", **DEPARTURES.get(recipe, {}))
    used = {"gumbel": ("vq_depth", "vq_temp"), "kmeans": ("vq_gamma",)}
    ignored = [f for kind, names in used.items() if kind != spelled.vq_type for f in names]
    for name in vars(arch):
        if name not in ignored:
            assert tuple_if_list(getattr(spelled, name)) == tuple_if_list(getattr(arch, name)), name
    with torch.device("meta"):
        counts = [sum(p.numel() for p in VqWav2VecModel(c).parameters()) for c in (spelled, arch)]
    assert counts[0] == counts[1]


def tuple_if_list(value):
    return tuple(value) if isinstance(value, list) else value
