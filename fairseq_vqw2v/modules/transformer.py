"""A BERT/RoBERTa Transformer encoder with a masked-LM head, attention via SDPA.

The numerics follow fairseq's ``roberta`` (post-LN blocks, learned positions offset past the
padding index, LayerNorm on the embeddings, exact GELU, LM head dense -> GELU -> LN -> tied output
projection + bias) so that a converted ``roberta`` checkpoint gives the same outputs. Differences
are only in layout and speed: batch-first tensors, one fused q/k/v projection,
``F.scaled_dot_product_attention`` (which dispatches to fused kernels and skips the mask when
there is no padding), and on CPU oneDNN GEMMs (:mod:`.onednn_linear`) and a cheaper dropout mask
(:mod:`.fast_dropout`).
"""

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast_dropout import Dropout, attention
from .onednn_linear import Linear, linear


def init_bert_params(module: nn.Module) -> None:
    """BERT initialisation: N(0, 0.02) weights, zero biases, zero padding embedding."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = Linear(dim, 3 * dim)
        self.out_proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: B x T x C; attn_mask: B x 1 x 1 x T additive (0 or -inf on padding) or None
        -> B x T x C."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, attn_mask, self.dropout, self.training)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


class TransformerLayer(nn.Module):
    """Post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
    ):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.activation_dropout = Dropout(activation_dropout)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: B x T x C -> B x T x C."""
        x = self.attn_norm(x + self.dropout(self.self_attn(x, attn_mask)))
        h = self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))
        return self.ffn_norm(x + self.dropout(h))


class TransformerEncoder(nn.Module):
    """Token + learned position embeddings, embedding LayerNorm, a stack of post-LN layers.

    Positions count non-padding tokens from ``padding_idx + 1`` (fairseq's convention), so the
    position table has ``max_positions + padding_idx + 1`` rows.
    """

    def __init__(
        self,
        vocab_size: int,
        padding_idx: int,
        layers: int,
        dim: int,
        ffn_dim: int,
        heads: int,
        max_positions: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
    ):
        super().__init__()
        self.padding_idx = padding_idx
        self.max_positions = max_positions
        self.embed_tokens = nn.Embedding(vocab_size, dim, padding_idx)
        self.embed_positions = nn.Embedding(max_positions + padding_idx + 1, dim, padding_idx)
        self.embed_norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, ffn_dim, heads, dropout, attention_dropout, activation_dropout)
            for _ in range(layers)
        )

    def forward(
        self, tokens: torch.Tensor, num_layers: Optional[int] = None, return_all: bool = False
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """tokens: B x T -> (B x T x C output of layer ``num_layers`` (default: last),
        [embedding output, layer 1, ...] when ``return_all``, else [])."""
        if tokens.size(1) > self.max_positions:
            raise ValueError(
                f"sequence of {tokens.size(1)} tokens exceeds max_positions={self.max_positions}"
            )
        not_pad = tokens.ne(self.padding_idx)
        positions = torch.cumsum(not_pad, dim=1) * not_pad + self.padding_idx
        x = self.embed_norm(self.embed_tokens(tokens) + self.embed_positions(positions))
        x = self.dropout(x)
        attn_mask = None
        if not bool(not_pad.all()):
            x = x * not_pad.unsqueeze(-1).type_as(x)
            # additive and built once: a boolean mask would be converted again in every layer
            attn_mask = torch.zeros(not_pad.shape, dtype=x.dtype, device=x.device)
            attn_mask = attn_mask.masked_fill(~not_pad, float("-inf"))[:, None, None, :]
        states = [x] if return_all else []
        for layer in self.layers[: num_layers if num_layers is not None else len(self.layers)]:
            x = layer(x, attn_mask)
            if return_all:
                states.append(x)
        return x, states


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> projection onto the (tied) token embeddings + bias."""

    def __init__(self, dim: int, weight: nn.Parameter):
        super().__init__()
        self.dense = Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(weight.size(0)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: ... x C -> ... x V logits."""
        return linear(self.norm(F.gelu(self.dense(features))), self.weight, self.bias)
