"""``unit_bert``: a BERT masked-LM over discrete speech units (vq-wav2vec, section 3.3)."""

from dataclasses import dataclass, field
from typing import Optional

import torch

from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

from ..modules.transformer import MaskedLMHead, TransformerEncoder, init_bert_params
from ._arch import set_arch_defaults


@dataclass
class UnitBertConfig(FairseqDataclass):
    encoder_layers: int = field(default=24, metadata={"help": "number of Transformer layers"})
    encoder_embed_dim: int = field(default=1024, metadata={"help": "model dimension"})
    encoder_ffn_embed_dim: int = field(default=4096, metadata={"help": "feed-forward dimension"})
    encoder_attention_heads: int = field(default=16, metadata={"help": "attention heads"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and residuals"})
    attention_dropout: float = field(
        default=0.1, metadata={"help": "dropout on attention probabilities"}
    )
    activation_dropout: float = field(
        default=0.0, metadata={"help": "dropout after the feed-forward activation"}
    )
    max_positions: int = field(
        default=512, metadata={"help": "longest sequence (tokens, framing included)"}
    )


@register_model("unit_bert", dataclass=UnitBertConfig)
class UnitBertModel(BaseFairseqModel):
    """Transformer encoder + masked-LM head tied to the token embeddings."""

    def __init__(self, cfg: UnitBertConfig, vocab_size: int, padding_idx: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerEncoder(
            vocab_size,
            padding_idx,
            layers=cfg.encoder_layers,
            dim=cfg.encoder_embed_dim,
            ffn_dim=cfg.encoder_ffn_embed_dim,
            heads=cfg.encoder_attention_heads,
            max_positions=cfg.max_positions,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
        )
        self.lm_head = MaskedLMHead(cfg.encoder_embed_dim, self.encoder.embed_tokens.weight)
        self.apply(init_bert_params)

    @classmethod
    def build_model(cls, cfg: UnitBertConfig, task):
        dictionary = task.source_dictionary
        return cls(cfg, len(dictionary), dictionary.pad())

    def forward(
        self, src_tokens: torch.Tensor, masked_tokens: Optional[torch.Tensor] = None, **unused
    ) -> torch.Tensor:
        """src_tokens: B x T -> logits B x T x V, or N x V for the N True positions of
        ``masked_tokens`` (B x T bool): the LM head runs only where there is a target."""
        x, _ = self.encoder(src_tokens)
        if masked_tokens is not None:
            x = x[masked_tokens]
        return self.lm_head(x)

    def extract_features(self, src_tokens: torch.Tensor, layer: Optional[int] = None):
        """src_tokens: B x T -> B x T x C output of Transformer layer ``layer`` (1-based;
        default the last one)."""
        if layer is not None and not 1 <= layer <= len(self.encoder.layers):
            raise ValueError(f"layer must be in 1..{len(self.encoder.layers)}, got {layer}")
        return self.encoder(src_tokens, num_layers=layer)[0]

    def max_positions(self):
        return self.cfg.max_positions


@register_model_architecture("unit_bert", "unit_bert_large")
def unit_bert_large(cfg):
    set_arch_defaults(
        cfg,
        encoder_layers=24,
        encoder_embed_dim=1024,
        encoder_ffn_embed_dim=4096,
        encoder_attention_heads=16,
    )


@register_model_architecture("unit_bert", "unit_bert_base")
def unit_bert_base(cfg):
    set_arch_defaults(
        cfg,
        encoder_layers=12,
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=3072,
        encoder_attention_heads=12,
    )


@register_model_architecture("unit_bert", "unit_bert_small")
def unit_bert_small(cfg):
    set_arch_defaults(
        cfg,
        encoder_layers=12,
        encoder_embed_dim=512,
        encoder_ffn_embed_dim=2048,
        encoder_attention_heads=8,
        dropout=0.05,
        attention_dropout=0.05,
    )


@register_model_architecture("unit_bert", "unit_bert_tiny")
def unit_bert_tiny(cfg):
    set_arch_defaults(
        cfg,
        encoder_layers=2,
        encoder_embed_dim=128,
        encoder_ffn_embed_dim=512,
        encoder_attention_heads=4,
        dropout=0.05,
        attention_dropout=0.05,
        max_positions=256,
    )
