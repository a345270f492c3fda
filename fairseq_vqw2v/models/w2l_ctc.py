"""``w2l_ctc``: a wav2letter-style convolutional acoustic model with a CTC output layer.

frontend (log-mel | frozen wav2vec ``c`` | unit embeddings | frozen or fine-tuned BERT features,
see :mod:`.frontends`) -> input norm -> dropout ->
:class:`~fairseq_vqw2v.modules.w2l_conv.W2lConvStack` -> linear layer to the label dictionary
(the CTC blank is its ``<s>``).

``--input-norm`` normalises the continuous inputs (wav2vec ``c`` and BERT features, cached or
computed on the fly; :class:`~fairseq_vqw2v.modules.input_norm.InputNorm`): ``utterance`` (the
default) per utterance and channel over the valid frames, as the log-mel frontend normalises its
filterbanks; ``frame`` a LayerNorm over the channels of each frame; ``none`` raw. Log-mel (already
normalised) and unit embeddings (learned) are left alone. Models saved before the option existed
read their inputs raw and keep doing so.

``--bert-layers`` (``--input bert``) picks the BERT hidden states read: ``last`` (the paper's),
a layer ``N`` (0: the embeddings' output; ``--bert-layer N`` is the older spelling), a comma list
or ``all``; with several, a learned softmax-weighted sum of them (weights start equal, as SUPERB's
featurizer) comes before the input norm. Cached features carry their layers (``featurize
--layers``): the model learns weights over the K layers of its feature files.

The paper trained wav2letter acoustic models with the ASG criterion; we train them with CTC.
"""

import logging
from dataclasses import dataclass, field, fields
from typing import Optional

import torch
import torch.nn as nn
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from omegaconf import II

from ..modules.input_norm import INPUT_NORMS, InputNorm
from ..modules.layer_weights import WeightedLayerSum
from ..modules.w2l_conv import (
    ACTIVATIONS,
    W2L_TIMIT_LAYERS,
    W2L_TINY_LAYERS,
    W2L_WSJ_LAYERS,
    W2lConvStack,
)
from ..precision import compile_in_place
from . import frontends
from ._arch import set_arch_defaults

logger = logging.getLogger(__name__)


@dataclass
class W2lCtcConfig(FairseqDataclass):
    conv_layers: str = field(
        default=W2L_TINY_LAYERS,
        metadata={"help": "conv layers [(out_channels, kernel, stride, dropout), ...]"},
    )
    activation: ChoiceEnum(ACTIVATIONS) = field(
        default="glu", metadata={"help": "activation after each conv (glu halves the channels)"}
    )
    weight_norm: bool = field(default=False, metadata={"help": "weight-normalise every conv"})
    input_dropout: float = field(default=0.0, metadata={"help": "dropout on the frontend output"})
    input_norm: ChoiceEnum(INPUT_NORMS) = field(
        default="utterance",
        metadata={"help": "--input wav2vec or bert: normalise the features per utterance and "
                  "channel over the valid frames (utterance), by a LayerNorm per frame with "
                  "learned gain and bias (frame), or not at all (none)"},
    )
    unit_embed_dim: int = field(
        default=256, metadata={"help": "--input units: embedding size (split over the G groups)"}
    )
    bert_layers: str = field(
        default="last",
        metadata={"help": "--input bert: the hidden states read: last, N (0: the embeddings' "
                  "output), a comma list or all (several: a learned weighted sum); with "
                  "--features, among the layers featurize cached (last: all of them)"},
    )
    bert_layer: Optional[int] = field(
        default=None, metadata={"help": "older spelling of --bert-layers N"}
    )
    finetune_upstream: bool = field(
        default=False,
        metadata={"help": "--input bert: fine-tune the unit BERT with the CTC loss (not frozen)"},
    )
    upstream_lr_scale: float = field(
        default=0.1, metadata={"help": "with --finetune-upstream: BERT's updates are scaled by this"}
    )
    freeze_upstream_updates: int = field(
        default=0,
        metadata={"help": "with --finetune-upstream: BERT stays frozen for this many updates"},
    )
    # what the task feeds the model: the task fills these from its FrontendSpec (see
    # frontends.py), and they are saved with the model
    input: str = II("task.input")
    labels: str = II("task.labels")
    upstream: Optional[str] = II("task.upstream")
    bert: Optional[str] = II("task.bert")
    source_kind: str = field(
        default="audio", metadata={"help": "set by the task: audio, features or units"}
    )
    source_dim: int = field(
        default=0, metadata={"help": "set by the task: feature size of cached features"}
    )
    feature_layers: str = field(
        default="", metadata={"help": "set by the task: BERT layers of cached K-layer features "
                              "(comma list; empty: one layer)"}
    )
    unit_vars: int = field(
        default=0, metadata={"help": "set by the task: codebook size of a units folder"}
    )
    unit_groups: int = field(default=0, metadata={"help": "set by the task: groups of a units folder"})
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the conv stack (on CPU it needs a C++ compiler; without "
                  "one the model runs uncompiled and says so)"},
    )
    upstream_sha256: Optional[str] = field(
        default=None, metadata={"help": "set by the task: SHA-256 of the --upstream checkpoint"}
    )
    bert_sha256: Optional[str] = field(
        default=None, metadata={"help": "set by the task: SHA-256 of the --bert checkpoint"}
    )


SAVED_BEFORE_OPTION = {"input_norm": "none"}
"""What models saved before an option existed did, where its default now differs."""


def fill_missing_options(cfg) -> None:
    """Adds to a checkpoint's model config the options it was saved without (fairseq fills no
    defaults for a config named by its arch): :data:`SAVED_BEFORE_OPTION`, else the default."""
    defaults = W2lCtcConfig()
    for f in fields(W2lCtcConfig):
        if f.name not in cfg:
            cfg[f.name] = SAVED_BEFORE_OPTION.get(f.name, getattr(defaults, f.name))


def bert_layers(cfg: W2lCtcConfig) -> str:
    """``--bert-layers``, or its older spelling ``--bert-layer N``."""
    if cfg.bert_layer is None:
        return cfg.bert_layers
    if cfg.bert_layers != "last":
        raise ValueError(f"give --bert-layers {cfg.bert_layers} or --bert-layer {cfg.bert_layer}, "
                         "not both")
    return str(cfg.bert_layer)


@register_model("w2l_ctc", dataclass=W2lCtcConfig)
class W2lCtcModel(BaseFairseqModel):
    """Input: what the task's ``--input`` gives (``source`` B x T audio, B x T x C features or
    B x T x G codes, with ``source_lengths`` B); output: B x T' x V label logits."""

    def __init__(self, cfg: W2lCtcConfig, num_labels: int):
        super().__init__()
        self.cfg = cfg
        spec = frontends.FrontendSpec.of_model(cfg)
        self.frontend = frontends.build_frontend(
            spec, cfg.unit_embed_dim, bert_layers=bert_layers(cfg),
            finetune_bert=cfg.finetune_upstream, freeze_bert_updates=cfg.freeze_upstream_updates,
        )
        layers = self.frontend.output_layers
        self.layer_weights = WeightedLayerSum(layers) if layers > 1 else None
        self.input_norm = InputNorm(cfg.input_norm if spec.continuous else "none",
                                    self.frontend.output_dim)
        self.dropout = nn.Dropout(cfg.input_dropout)
        self.body = W2lConvStack(
            self.frontend.output_dim, cfg.conv_layers, activation=cfg.activation,
            weight_norm=cfg.weight_norm,
        )
        self.output = nn.Linear(self.body.out_channels, num_labels)
        if cfg.compile:
            compile_in_place([self.body])

    @classmethod
    def build_model(cls, cfg: W2lCtcConfig, task):
        return cls(cfg, len(task.target_dictionary))

    def features(self, source: torch.Tensor, source_lengths: torch.Tensor):
        """What the conv stack reads: (B x T x C normalised frontend output, B valid frames)."""
        x, lengths = self.frontend(source, source_lengths)
        if self.layer_weights is not None:
            x = self.layer_weights(x)  # B x T x K x C -> B x T x C
        x = self.input_norm(x, lengths)
        # log-mel features are fp32; the weights are fp16 in fairseq's --fp16
        return x.to(self.output.weight.dtype), lengths

    def forward(self, source: torch.Tensor, source_lengths: torch.Tensor):
        """-> dict ``logits`` (B x T' x V), ``lengths`` (B valid frames), ``padding_mask``
        (B x T', True on padding)."""
        x, lengths = self.features(source, source_lengths)
        x, lengths = self.body(self.dropout(x), lengths)
        logits = self.output(x)
        padding_mask = torch.arange(logits.size(1), device=logits.device)[None, :] >= lengths[:, None]
        return {"logits": logits, "lengths": lengths, "padding_mask": padding_mask}

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output["logits"].float()
        return logits.log_softmax(-1) if log_probs else logits.softmax(-1)

    def upstream_parameters(self):
        """Parameters of a fine-tuned upstream (their updates are scaled by upstream_lr_scale)."""
        bert = getattr(self.frontend, "bert", None)
        return list(bert.parameters()) if bert is not None else []


@register_model_architecture("w2l_ctc", "w2l_ctc_wsj")
def w2l_ctc_wsj(cfg):
    """wav2letter's Gated ConvNet for WSJ (Liptchinsky et al. 2017; the acoustic model of the
    wav2vec and vq-wav2vec WSJ experiments): recipe ``conv_glu/wsj/network.arch``, 16 weight-normed
    GLU layers with dropout 0.25 (see ``W2L_WSJ_LAYERS``)."""
    set_arch_defaults(cfg, conv_layers=W2L_WSJ_LAYERS, activation="glu", weight_norm=True)


@register_model_architecture("w2l_ctc", "w2l_ctc_timit")
def w2l_ctc_timit(cfg):
    """The wav2vec paper's TIMIT model (after Zeghidour et al. 2018; wav2letter recipe
    ``timit/configs/conv_relu/network.arch``): 7 convs, kernel 5, 1000 channels, PReLU, dropout
    0.7 (see ``W2L_TIMIT_LAYERS``)."""
    set_arch_defaults(cfg, conv_layers=W2L_TIMIT_LAYERS, activation="prelu", weight_norm=False)


@register_model_architecture("w2l_ctc", "w2l_ctc_tiny")
def w2l_ctc_tiny(cfg):
    """A small GLU stack for CPU demos: minutes per epoch on one hour of audio."""
    set_arch_defaults(cfg, conv_layers=W2L_TINY_LAYERS, activation="glu", weight_norm=False)
