"""vq-wav2vec (Baevski et al., 2020): conv encoder -> (Gumbel | k-means | no) quantizer -> causal
conv aggregator -> contrastive prediction of future frames.

The forward output and the ``get_*`` methods are those of fairseq's ``wav2vec`` model, so
fairseq's ``wav2vec`` criterion and our ``vqw2v_contrastive`` work on either model; parameter
names follow fairseq's too, up to the explicit mapping in ``fairseq_vqw2v.interop.wav2vec``.
"""

import argparse
import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from fairseq.models.wav2vec.wav2vec import Wav2VecModel
from omegaconf import II

from fairseq_vqw2v.constants import LARGE_ENCODER
from fairseq_vqw2v.data.receptive_field import receptive_field
from fairseq_vqw2v.models._arch import set_arch_defaults
from fairseq_vqw2v.modules.contrastive import ContrastivePredictor
from fairseq_vqw2v.modules.conv_aggregator import ConvAggregator
from fairseq_vqw2v.modules.conv_encoder import ConvFeatureEncoder
from fairseq_vqw2v.modules.gumbel_quantizer import GUMBEL_TEMP, GumbelQuantizer
from fairseq_vqw2v.modules.kmeans_quantizer import KmeansQuantizer
from fairseq_vqw2v.modules.layer_lists import WAV2VEC_LAYER_FIELDS, parse_layer_list
from fairseq_vqw2v.modules.masked_group_norm import frame_mask
from fairseq_vqw2v.precision import compile_in_place


ACTIVATION_CHOICES = ChoiceEnum(["relu", "gelu"])
VQ_TYPE_CHOICES = ChoiceEnum(["none", "gumbel", "kmeans"])
TEMP_SCHEDULE_CHOICES = ChoiceEnum(["exponential", "linear"])

LARGE_AGGREGATOR = "[" + ", ".join(f"(512, {k}, 1)" for k in range(2, 14)) + "]"


@dataclass
class VqWav2VecConfig(FairseqDataclass):
    prediction_steps: int = field(default=12, metadata={"help": "number of future steps to predict"})
    sample_distance: Optional[int] = field(
        default=None,
        metadata={"help": "draw negatives only from the first N frames (fairseq semantics)"},
    )
    cross_sample_negatives: int = field(
        default=0, metadata={"help": "negatives drawn from any utterance of the batch"}
    )
    num_negatives: int = field(default=10, metadata={"help": "negatives drawn from the same utterance"})
    conv_feature_layers: str = field(
        default=LARGE_ENCODER,
        metadata={"help": "encoder conv layers [(dim, kernel, stride), ...]; stride product 160"},
    )
    conv_aggregator_layers: str = field(
        default=LARGE_AGGREGATOR,
        metadata={"help": "aggregator conv layers [(dim, kernel, stride), ...]"},
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout in the aggregator and predictions"})
    dropout_features: float = field(default=0.0, metadata={"help": "dropout on the (quantized) features"})
    dropout_agg: float = field(default=0.0, metadata={"help": "dropout on the aggregator output"})
    no_conv_bias: bool = field(default=False, metadata={"help": "no bias in the aggregator convs"})
    agg_zero_pad: bool = field(
        default=False, metadata={"help": "zero instead of replication padding in the aggregator"}
    )
    skip_connections_feat: bool = field(
        default=False, metadata={"help": "skip connections in the encoder"}
    )
    skip_connections_agg: bool = field(
        default=True, metadata={"help": "skip connections in the aggregator"}
    )
    residual_scale: float = field(default=0.5, metadata={"help": "residuals are scaled by sqrt(value)"})
    log_compression: bool = field(default=True, metadata={"help": "log(|x| + 1) on the encoder output"})
    balanced_classes: bool = field(
        default=False, metadata={"help": "weight negatives by 1/num_negatives in the BCE loss"}
    )
    non_affine_group_norm: bool = field(default=False, metadata={"help": "group norms without affine"})
    offset: str = field(
        default="auto",
        metadata={"help": "first predicted frame; 'auto' = ceil(encoder receptive field / stride)"},
    )
    activation: ACTIVATION_CHOICES = field(default="relu", metadata={"help": "activation function"})
    vq_type: VQ_TYPE_CHOICES = field(
        default="none", metadata={"help": "quantizer: none (continuous wav2vec), gumbel or kmeans"}
    )
    vq_vars: int = field(default=320, metadata={"help": "codewords per group (V)"})
    vq_groups: int = field(default=2, metadata={"help": "number of groups (G)"})
    vq_dim: int = field(default=0, metadata={"help": "quantized vector size; 0 = encoder dim"})
    vq_depth: int = field(default=1, metadata={"help": "layers of the Gumbel logit projection"})
    combine_groups: bool = field(default=False, metadata={"help": "one codebook shared by the groups"})
    vq_temp: Tuple[float, float, float] = field(
        default=GUMBEL_TEMP,
        metadata={"help": "Gumbel temperature (start, end, decay); decay is used only by 'exponential'"},
    )
    temp_schedule: TEMP_SCHEDULE_CHOICES = field(
        default="exponential",
        metadata={
            "help": "exponential: max(start * decay^update, end) (fairseq); linear: start -> end over "
            "temp_anneal_fraction * max_update updates, then end (paper)"
        },
    )
    temp_anneal_fraction: float = field(
        default=0.7, metadata={"help": "share of max_update the linear schedule anneals over"}
    )
    vq_gamma: float = field(default=0.25, metadata={"help": "k-means commitment loss weight"})
    infonce: bool = II("criterion.infonce")
    max_update: int = II("optimization.max_update")
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the conv stacks (on CPU it needs a C++ compiler; without "
                  "one the model runs uncompiled and says so)"},
    )


def _resolved(value, default):
    """Config values still holding an unresolved ``${...}`` interpolation (a config built outside
    fairseq-train, with no criterion/optimization section) fall back to ``default``."""
    if isinstance(value, str) and value.startswith("${"):
        return default
    return value


def receptive_field_offset(layers: List[Tuple[int, int, int]]) -> int:
    """fairseq's ``offset=auto``: ceil(receptive field / total stride) of the encoder."""
    return math.ceil(receptive_field(layers) / math.prod(stride for _, _, stride in layers))


@register_model("vq_wav2vec", dataclass=VqWav2VecConfig)
class VqWav2VecModel(BaseFairseqModel):
    """Input B x T raw 16 kHz audio; frames every 160 samples with the standard encoder."""

    def __init__(self, cfg: VqWav2VecConfig):
        super().__init__()
        self.cfg = cfg
        activation = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        affine = not cfg.non_affine_group_norm
        encoder_layers = parse_layer_list(
            cfg.conv_feature_layers, "conv_feature_layers", WAV2VEC_LAYER_FIELDS
        )
        aggregator_layers = parse_layer_list(
            cfg.conv_aggregator_layers, "conv_aggregator_layers", WAV2VEC_LAYER_FIELDS
        )
        embed = encoder_layers[-1][0]

        self.feature_extractor = ConvFeatureEncoder(
            encoder_layers, cfg.log_compression, cfg.skip_connections_feat,
            cfg.residual_scale, affine, activation,
        )
        vq_dim = cfg.vq_dim if cfg.vq_dim > 0 else embed
        self.vector_quantizer = None
        if cfg.vq_type == "gumbel":
            max_update = _resolved(cfg.max_update, 0) or 0
            self.vector_quantizer = GumbelQuantizer(
                dim=embed, num_vars=cfg.vq_vars, groups=cfg.vq_groups,
                combine_groups=cfg.combine_groups, vq_dim=vq_dim, temp=cfg.vq_temp,
                schedule=cfg.temp_schedule,
                anneal_updates=int(cfg.temp_anneal_fraction * max_update),
                activation=activation, weight_proj_depth=cfg.vq_depth, weight_proj_factor=2,
            )
        elif cfg.vq_type == "kmeans":
            self.vector_quantizer = KmeansQuantizer(
                dim=embed, num_vars=cfg.vq_vars, groups=cfg.vq_groups,
                combine_groups=cfg.combine_groups, vq_dim=vq_dim, gamma=cfg.vq_gamma,
            )
        elif cfg.vq_type not in ("none", None):
            raise ValueError(f"unknown vq_type {cfg.vq_type!r}")

        self.feature_aggregator = ConvAggregator(
            aggregator_layers, embed=vq_dim, dropout=cfg.dropout,
            skip_connections=cfg.skip_connections_agg, residual_scale=cfg.residual_scale,
            affine_group_norm=affine, conv_bias=not cfg.no_conv_bias, zero_pad=cfg.agg_zero_pad,
            activation=activation,
        )
        offset = receptive_field_offset(encoder_layers) if cfg.offset == "auto" else int(cfg.offset)
        self.wav2vec_predictions = ContrastivePredictor(
            in_dim=aggregator_layers[-1][0], out_dim=vq_dim,
            prediction_steps=cfg.prediction_steps, num_negatives=cfg.num_negatives,
            cross_sample_negatives=cfg.cross_sample_negatives,
            sample_distance=cfg.sample_distance, dropout=cfg.dropout, offset=offset,
            balanced_classes=cfg.balanced_classes, infonce=bool(_resolved(cfg.infonce, False)),
        )
        self.dropout_feats = nn.Dropout(p=cfg.dropout_features)
        self.dropout_agg = nn.Dropout(p=cfg.dropout_agg)
        if cfg.compile:
            compile_in_place([self.feature_extractor, self.feature_aggregator])

    @classmethod
    def build_model(cls, cfg: VqWav2VecConfig, task=None):
        return cls(cfg)

    def output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """B sample counts -> B frame counts (frames fully inside the audio)."""
        return self.feature_extractor.output_lengths(input_lengths)

    def _encoder_features(self, source, padding_mask):
        """The conv encoder's (z ``B x C x T'``, frame lengths or None)."""
        if source.dim() != 2:
            raise ValueError(f"source must be B x T audio, got shape {tuple(source.shape)}")
        if padding_mask is not None and padding_mask.shape != source.shape:
            raise ValueError(
                f"padding_mask shape {tuple(padding_mask.shape)} != source shape {tuple(source.shape)}"
            )
        lengths = None
        if padding_mask is not None and bool(padding_mask.any()):
            lengths = (~padding_mask).long().sum(1)
        return self.feature_extractor(source, lengths)

    def _features(self, source, padding_mask):
        """Encoder + quantizer: (z, quantizer result with codes or None, frame lengths or None).

        Without padding, lengths stay None: the unmasked paths are fairseq's exact computation."""
        z, frame_lengths = self._encoder_features(source, padding_mask)
        if self.vector_quantizer is None:
            return z, None, frame_lengths
        mask = None if frame_lengths is None else frame_mask(frame_lengths, z.size(-1))
        q_res = self.vector_quantizer(z, produce_targets=True, frame_mask=mask)
        return z, q_res, frame_lengths

    def forward(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """source: B x T audio; padding_mask: B x T bool, True = padding.

        Returns fairseq ``Wav2VecModel``'s dict (``cpc_logits``, ``cpc_targets`` and the
        quantizer's ``num_vars``, ``code_perplexity``, ``prob_perplexity``/``kmeans_loss``,
        ``temp``) plus ``codes`` (B x T' x G long) and the quantizer's G x V ``code_counts``
        (and ``soft_code_counts``) when quantizing.
        """
        result = {}
        z, q_res, frame_lengths = self._features(source, padding_mask)
        features = z
        if q_res is not None:
            features = q_res.pop("x")
            result["codes"] = q_res.pop("targets")
            result.update(q_res)
        x = self.dropout_agg(self.feature_aggregator(self.dropout_feats(features), frame_lengths))
        result["cpc_logits"], result["cpc_targets"] = self.wav2vec_predictions(
            x, features, frame_lengths
        )
        return result

    @torch.no_grad()
    def extract_features(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None):
        """-> dict ``z`` (B x C x T'), ``q`` (B x C x T'; ``z`` without VQ), ``idx`` (B x T' x G
        long; only with VQ), ``c`` (B x C x T'), and ``padding_mask`` (B x T' bool, True = padding)
        when a padding mask was given."""
        z, q_res, frame_lengths = self._features(source, padding_mask)
        out = {"z": z, "q": z}
        if q_res is not None:
            out["q"], out["idx"] = q_res["x"], q_res["targets"]
        out["c"] = self.feature_aggregator(out["q"], frame_lengths)
        if padding_mask is not None:
            lengths = self.output_lengths((~padding_mask).long().sum(1))
            out["padding_mask"] = ~frame_mask(lengths, z.size(-1))
        return out

    @torch.no_grad()
    def encode(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
               ) -> List[torch.Tensor]:
        """Audio -> discrete units: the codes of each utterance, without its padding frames
        (the Gumbel quantizer's argmax codes, the k-means quantizer's nearest codewords, in
        training mode too: units are what a trained model infers).

        Args:
            source (Tensor): audio, ``B x T``.
            padding_mask (Tensor, optional): ``B x T`` bool, True on padding.

        Returns:
            List[Tensor]: B long tensors of codes, ``T'_b x G``, on the device of ``source``.
        """
        codebook_shape(self)  # a model without a quantizer has no units: say so, by name
        z, frame_lengths = self._encoder_features(source, padding_mask)
        mask = None if frame_lengths is None else frame_mask(frame_lengths, z.size(-1))
        codes = self.vector_quantizer.codes(z, mask)
        if frame_lengths is None:
            return list(codes)
        return [c[:n] for c, n in zip(codes, frame_lengths.tolist())]

    # fairseq's criteria read model outputs through these; share fairseq's own implementations
    get_logits = Wav2VecModel.get_logits
    get_targets = Wav2VecModel.get_targets
    get_target_weights = Wav2VecModel.get_target_weights
    get_extra_losses = Wav2VecModel.get_extra_losses


def codebook_shape(model) -> Tuple[int, int]:
    """(V, G) of a quantizing vq_wav2vec model: codewords per group and groups."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "vq_type"):
        raise ValueError(
            f"{type(model).__name__} is not a vq_wav2vec model; convert fairseq wav2vec "
            f"checkpoints first (python -m fairseq_vqw2v.cli.convert)"
        )
    if cfg.vq_type in (None, "none"):
        raise ValueError("this vq_wav2vec model has vq_type none: it has no discrete units")
    return int(cfg.vq_vars), int(cfg.vq_groups)


def load_vq_wav2vec(path: str, device: str = "cpu"):
    """A ``vq_wav2vec`` checkpoint's model (eval mode, on ``device``) and the task config it was
    trained with; other models are refused before anything is built."""
    from ..checkpoint import load_model

    model, cfg, _ = load_model(
        path, (VqWav2VecModel,),
        hint="convert fairseq wav2vec checkpoints first (python -m fairseq_vqw2v.cli.convert wav2vec)",
    )
    return model.eval().to(device), cfg.task


def load_quantizer(checkpoint: str, device: str = "cpu"):
    """:func:`load_vq_wav2vec` of a checkpoint that must quantize (audio -> units)."""
    model, task_cfg = load_vq_wav2vec(checkpoint, device)
    codebook_shape(model)  # fails early, naming the model, when it does not quantize
    return model, task_cfg


def arch_config(arch: str, **overrides) -> VqWav2VecConfig:
    """The config of a registered arch, for building models outside fairseq-train.

    ``infonce`` and ``max_update`` default to False / 0 unless given (fairseq-train takes them
    from the criterion and optimization sections).
    """
    from fairseq.models import ARCH_CONFIG_REGISTRY

    if arch not in ARCH_CONFIG_REGISTRY or not arch.startswith("vq_wav2vec"):
        raise ValueError(f"unknown vq_wav2vec arch {arch!r}")
    args = argparse.Namespace(**overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    values = {"infonce": False, "max_update": 0}
    values.update(
        {f.name: getattr(args, f.name) for f in fields(VqWav2VecConfig) if hasattr(args, f.name)}
    )
    return VqWav2VecConfig(**values)


@register_model_architecture("vq_wav2vec", "vq_wav2vec_gumbel")
def vq_wav2vec_gumbel(cfg):
    """fairseq README's vq-wav2vec Gumbel recipe (34.1 M params, as the released vq-wav2vec.pt)."""
    set_arch_defaults(
        cfg,
        conv_feature_layers=LARGE_ENCODER,
        conv_aggregator_layers=LARGE_AGGREGATOR,
        activation="gelu",
        offset="auto",
        skip_connections_agg=True,
        residual_scale=0.5,
        vq_type="gumbel",
        vq_groups=2,
        vq_depth=2,
        combine_groups=True,
        vq_vars=320,
        vq_temp=GUMBEL_TEMP,
        prediction_steps=12,
        num_negatives=10,
        cross_sample_negatives=0,
    )


@register_model_architecture("vq_wav2vec", "vq_wav2vec_kmeans")
def vq_wav2vec_kmeans(cfg):
    """The README recipe with only ``vq_type=kmeans`` changed, as the README instructs (so groups
    share one codebook, ``combine_groups``): 33.0 M params, as vq-wav2vec_kmeans.pt."""
    set_arch_defaults(cfg, vq_type="kmeans")
    vq_wav2vec_gumbel(cfg)


@register_model_architecture("vq_wav2vec", "vq_wav2vec_small")
def vq_wav2vec_small(cfg):
    """The paper's ablation model: 5-layer encoder, 7 aggregator layers of kernel 3, 512 ch."""
    set_arch_defaults(
        cfg,
        conv_feature_layers="[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2)]",
        conv_aggregator_layers="[" + ", ".join(["(512, 3, 1)"] * 7) + "]",
    )
    vq_wav2vec_gumbel(cfg)


@register_model_architecture("vq_wav2vec", "vq_wav2vec_tiny")
def vq_wav2vec_tiny(cfg):
    """128 channels, 5 encoder + 5 aggregator convs, 2 x 320 Gumbel codes: for the CPU demo."""
    set_arch_defaults(
        cfg,
        conv_feature_layers="[(128, 10, 5), (128, 8, 4), (128, 4, 2), (128, 4, 2), (128, 4, 2)]",
        conv_aggregator_layers="[(128, 2, 1), (128, 3, 1), (128, 4, 1), (128, 5, 1), (128, 6, 1)]",
        # A depth-2 logit projection starts (default init) with logits of std ~0.07 across codes,
        # far below the Gumbel noise: the sampled codes are random and a run of a few hundred
        # updates never learns (fairseq's reference does the same). The depth-1 projection uses
        # fairseq's N(0, 1) init, so codes depend on the input from the first update.
        vq_depth=1,
    )
    vq_wav2vec_gumbel(cfg)
