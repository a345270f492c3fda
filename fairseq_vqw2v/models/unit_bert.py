"""``unit_bert``: a BERT masked-LM over discrete speech units (vq-wav2vec, section 3.3), and its
frozen features for the acoustic model (section 4).

The featurize CLI (features written to disk) and the acoustic model (features computed on the
fly) both go through :class:`UnitBertFeaturizer`, so they agree exactly.
"""

import os
import threading
from dataclasses import dataclass, field, fields
from typing import List, Optional, Sequence, Tuple

import torch

from fairseq.data import Dictionary, data_utils
from fairseq.utils import split_paths
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

from ..checkpoint import check_model_config, load_fairseq_checkpoint
from ..data.dedup import dedup, expand
from ..data.unit_files import (add_mask, codes_to_tokens, dictionary_from_state,
                               load_unit_dictionary)
from ..errors import MissingInputError
from ..modules.transformer import MaskedLMHead, TransformerEncoder, init_bert_params
from ..precision import compile_in_place
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
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile each Transformer layer, for GPUs (on CPU it needs a C++ "
                  "compiler, and its kernels measured slower than these eager layers)"},
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
        if cfg.compile:
            compile_in_place(self.encoder.layers)

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

    def hidden_states(self, src_tokens: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """src_tokens: B x T -> B x T x K x C hidden states of the K ``layers`` (0 is the
        embeddings' output after their LayerNorm, i the output of Transformer layer i)."""
        _, states = self.encoder(src_tokens, num_layers=max(layers), return_all=True)
        return torch.stack([states[i] for i in layers], dim=2)

    def max_positions(self):
        return self.cfg.max_positions


UNIT_DICTIONARY_STATE = "unit_dictionary"
"""Key of the task state in which ``unit_mlm`` checkpoints carry their dictionary (``<mask>``
included)."""


def layer_numbers(spec: str) -> List[int]:
    """The layers of a ``--bert-layers``/``--layers`` value that is a layer ``N`` or a comma list
    ``0,4,8`` (not ``last`` or ``all``, which depend on the layers there are)."""
    try:
        return [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(f"BERT layers {spec!r}: give last, all, a layer number or a comma list "
                         f"of them") from None


def bert_layer_indices(spec: str, num_layers: int) -> List[int]:
    """``--bert-layers``/``--layers`` -> hidden-state indices (0: the embeddings' output, i:
    Transformer layer i): ``last`` (the paper's), a layer ``N``, a comma list ``0,4,8`` or ``all``
    (the embeddings and every layer, for a learned weighted sum as SUPERB's featurizer)."""
    if spec == "last":
        return [num_layers]
    if spec == "all":
        return list(range(num_layers + 1))
    layers = layer_numbers(spec)
    if not all(0 <= i <= num_layers for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"BERT layers {spec!r}: distinct layers in 0..{num_layers} (0 is the "
                         f"embeddings' output), this BERT has {num_layers} Transformer layers")
    return layers


def find_dictionary(checkpoint: str, cfg) -> str:
    """The ``dict.txt`` of a checkpoint: beside it, else in its task's (first) data folder."""
    candidates = [os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "dict.txt")]
    if cfg.get("task") is not None and cfg["task"].get("data"):
        candidates.append(os.path.join(split_paths(str(cfg["task"]["data"]))[0], "dict.txt"))
    found = next((p for p in candidates if os.path.exists(p)), None)
    if found is None:
        folders = sorted(set(map(os.path.dirname, candidates)))
        raise MissingInputError(f"{checkpoint}: no dict.txt in {folders}")
    return found


def load_unit_bert(path: str) -> Tuple[UnitBertModel, Dictionary]:
    """Loads a ``unit_bert`` checkpoint (trained by ``unit_mlm`` or converted from roberta) with
    its dictionary: the one it carries (``unit_mlm`` checkpoints), else ``dict.txt`` beside the
    checkpoint or in the task's data folder, with ``<mask>`` appended as the task does. Returns
    the model in eval mode on CPU."""
    model, dictionary, _ = _load_unit_bert(path)
    return model, dictionary


def _load_unit_bert(path: str):
    """:func:`load_unit_bert` and the checkpoint's task config."""
    state = load_fairseq_checkpoint(path)
    cfg = state["cfg"]
    check_model_config(cfg["model"], (UnitBertModel,), path, hint="convert roberta checkpoints "
                     "with `python -m fairseq_vqw2v.cli.convert roberta SRC DEST`")
    model_cfg = UnitBertConfig(
        **{f.name: cfg["model"][f.name] for f in fields(UnitBertConfig) if f.name in cfg["model"]}
    )
    carried = (state.get("task_state") or {}).get(UNIT_DICTIONARY_STATE)
    if carried:
        dictionary = dictionary_from_state(carried)
    else:
        dictionary = load_unit_dictionary(find_dictionary(path, cfg))
        add_mask(dictionary)
    model = UnitBertModel(model_cfg, len(dictionary), dictionary.pad())
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), dictionary, cfg.get("task") or {}


class UnitBertFeaturizer:
    """Frozen ``unit_bert`` features of unit sequences: per unit frame, one C-dim vector (one
    layer) or K x C (the K layers asked for).

    Utterances longer than the model's ``max_positions`` (minus ``<s>``/``</s>``) are cut into
    consecutive windows, each framed and encoded on its own, and the windows' features are
    concatenated: frames near a window edge see less context than in one long pass, which the
    model could not do anyway (learned positions stop at ``max_positions``).

    A BERT trained on de-duplicated units (``unit_mlm --dedup-units``, recorded in its checkpoint's
    task config and read by :meth:`from_checkpoint`) reads each utterance with consecutive repeats
    merged (:mod:`fairseq_vqw2v.data.dedup`; windows cut the merged sequence), and its features
    are expanded back by the durations: T frames of units always give T feature frames.

    Args:
        model, dictionary: from :func:`load_unit_bert`.
        layers: the hidden states taken (:func:`bert_layer_indices`); default ``last``, what the
            paper's acoustic models use.
        max_tokens: tokens per forward pass (windows are batched up to this).
        dedup_units: the model was trained on de-duplicated units.
    """

    # featurize computes batches in threads (cli.map_batches); one lock for the class, which a
    # deep copy of a model holding a featurizer leaves alone (a lock cannot be copied)
    _counting = threading.Lock()

    def __init__(self, model: UnitBertModel, dictionary: Dictionary, layers: str = "last",
                 max_tokens: int = 16384, dedup_units: bool = False):
        self.model = model.eval()
        self.dedup_units = dedup_units
        self.dictionary = dictionary
        self.layers = bert_layer_indices(layers, len(model.encoder.layers))
        self.max_tokens = max_tokens
        self.window = model.max_positions() - 2
        self.dim = model.cfg.encoder_embed_dim
        # per frame: C (one layer) or K x C
        self.frame_shape = (self.dim,) if len(self.layers) == 1 else (len(self.layers), self.dim)
        # units mapped by token_ids so far, and how many of them the dictionary lacked (<unk>)
        self.units_seen = 0
        self.units_unknown = 0

    @classmethod
    def from_checkpoint(cls, path: str, layers: str = "last", device: str = "cpu"):
        model, dictionary, task_cfg = _load_unit_bert(path)
        return cls(model.to(device), dictionary, layers,
                   dedup_units=bool(task_cfg.get("dedup_units", False)))

    def token_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """T x G codes (as ``extract_features()['idx']``) -> T dictionary ids (unseen -> unk,
        counted in ``units_unknown``)."""
        ids = torch.tensor([self.dictionary.index(t) for t in codes_to_tokens(codes)],
                           dtype=torch.long)
        unknown = int((ids == self.dictionary.unk()).sum())
        with self._counting:
            self.units_seen += len(ids)
            self.units_unknown += unknown
        return ids

    @torch.no_grad()
    def __call__(self, utterances: List[torch.Tensor]) -> List[torch.Tensor]:
        """List of T_b unit-id tensors -> list of T_b x C (one layer) or T_b x K x C float
        features (on the model's device)."""
        return self.features(utterances)

    def features(self, utterances: List[torch.Tensor]) -> List[torch.Tensor]:
        """:meth:`__call__` with autograd left as the caller set it (for fine-tuning BERT)."""
        if self.dedup_units:
            runs = [dedup(ids) for ids in utterances]  # (T'_b ids, T'_b durations)
            feats = self._features([ids for ids, _ in runs])
            return [expand(f, durations) for f, (_, durations) in zip(feats, runs)]
        return self._features(utterances)

    def _features(self, utterances: List[torch.Tensor]) -> List[torch.Tensor]:
        device = next(self.model.parameters()).device
        bos, eos, pad = self.dictionary.bos(), self.dictionary.eos(), self.dictionary.pad()
        windows = []  # (utterance, tokens of the framed window)
        for u, ids in enumerate(utterances):
            for start in range(0, max(len(ids), 1), self.window):
                chunk = ids[start : start + self.window]
                windows.append((u, torch.cat([chunk.new([bos]), chunk, chunk.new([eos])])))
        pieces: List[List[torch.Tensor]] = [[] for _ in utterances]
        per_batch = max(1, self.max_tokens // (self.window + 2))
        for b in range(0, len(windows), per_batch):
            batch = windows[b : b + per_batch]
            tokens = data_utils.collate_tokens([w for _, w in batch], pad).to(device)
            feats = self.model.hidden_states(tokens, self.layers)  # B x T x K x C
            for (u, w), f in zip(batch, feats):
                pieces[u].append(f[1 : len(w) - 1])
        # T_b x K x C -> T_b x C for one layer
        return [torch.cat(p).view(-1, *self.frame_shape) for p in pieces]

    def from_audio(self, vq_model, source: torch.Tensor,
                   padding_mask: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """B x T waveforms (B x T bool padding, True = pad) -> list of T'_b x C features, one per
        vq-wav2vec frame: audio -> units -> BERT, for acoustic models computing them on the fly."""
        codes = vq_model.encode(source, padding_mask)
        return self([self.token_ids(c) for c in codes])


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
