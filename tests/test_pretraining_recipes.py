"""The pretraining recipes in examples/pretrain name only real fields of our task, criterion and
model configs (a typo would fail only when someone launches a multi-GPU run)."""

import os

import pytest
from omegaconf import OmegaConf

from fairseq_vqw2v.criterions.contrastive import ContrastiveCriterionConfig
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig
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
