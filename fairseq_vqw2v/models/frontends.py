"""What the acoustic model sees: one frontend per ``--input`` kind, each ``(source, lengths) ->
(B x T' x C features, B frame lengths)``.

- ``logmel``: 80-dim Kaldi log-mel filterbanks of the waveform (the paper's baseline);
- ``wav2vec``: the aggregator output ``c`` of a frozen ``vq_wav2vec`` checkpoint (with
  ``vq_type none`` the paper's "wav2vec" row, with a quantizer its "vq-wav2vec" rows);
- ``units``: the codes of a frozen ``vq_wav2vec`` (or read from a ``.src`` folder), embedded by a
  learned table per group;
- ``bert``: ``unit_bert`` features of those units, frozen (or fine-tuned), or read from files that
  ``featurize`` wrote; ``--bert-layers`` picks the last layer (the paper's), layer N, or ``all``
  (or a comma list): then the frontend gives B x T' x K x C, K hidden states per frame, which the
  acoustic model sums with learned weights
  (:class:`~fairseq_vqw2v.modules.layer_weights.WeightedLayerSum`).

Every frontend has ``output_dim`` (C) and ``output_layers`` (K, 1 for B x T' x C).

Frozen upstream models run in eval mode under ``torch.inference_mode()``; their weights stay out
of the acoustic model's checkpoint (:class:`FrozenUpstreams`), which records the checkpoint files'
paths and SHA-256 instead.
"""

import hashlib
import logging
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..modules.logmel import LogMelFilterbank
from ..modules.masked_group_norm import frame_mask
from .unit_bert import UnitBertFeaturizer

logger = logging.getLogger(__name__)

INPUT_KINDS = ("logmel", "wav2vec", "units", "bert")
CONTINUOUS_INPUTS = ("wav2vec", "bert")
"""The inputs that ``--input-norm`` normalises (log-mel normalises itself; units are embedded)."""


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (what an acoustic model records of its upstream checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FrozenUpstreams(nn.Module):
    """Upstream models whose weights the acoustic model uses but does not own.

    They are submodules (so ``.to(device)`` moves them) but their parameters never require grad,
    they stay in eval mode whatever ``train()`` says, and their entries are left out of
    ``state_dict()`` (restored from the loaded models when a state dict is loaded).
    """

    def __init__(self, normalize_audio: bool = False):
        super().__init__()
        # the vq_wav2vec upstream sees audio as its pretraining task did
        self.normalize_audio = normalize_audio
        self._register_state_dict_hook(FrozenUpstreams._drop_from_state)
        self._register_load_state_dict_pre_hook(self._fill_from_self, with_module=False)

    def add(self, name: str, model: nn.Module):
        model.requires_grad_(False)
        self.add_module(name, model.eval())

    def train(self, mode: bool = True):
        return super().train(False)

    @staticmethod
    def _drop_from_state(module, state_dict, prefix, local_metadata):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]
        return state_dict

    def _fill_from_self(self, state_dict, prefix, *args):
        for name, model in self.named_children():
            for key, value in model.state_dict().items():
                state_dict.setdefault(f"{prefix}{name}.{key}", value)


def _padding_mask(source: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return ~frame_mask(lengths, source.size(1))


def _vq_input(upstreams: FrozenUpstreams, source, lengths):
    """(audio, padding mask) for the vq_wav2vec upstream: each utterance normalised over its own
    samples to zero mean and unit variance when its pretraining task did (fairseq's
    ``F.layer_norm`` of the whole waveform)."""
    padding_mask = _padding_mask(source, lengths)
    if upstreams.normalize_audio:
        valid = (~padding_mask).to(source.dtype)
        n = valid.sum(1, keepdim=True)
        mean = (source * valid).sum(1, keepdim=True) / n
        var = (((source - mean) * valid) ** 2).sum(1, keepdim=True) / n
        source = ((source - mean) / torch.sqrt(var + 1e-5)) * valid
    return source, padding_mask


def _frozen(fn):
    """Runs ``fn`` under inference mode; the outputs are cloned into normal tensors so that the
    trainable layers after them can save them for backward."""

    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    return wrapper


class Frontend(nn.Module):
    """``(source, lengths) -> (B x T' x C or B x T' x K x C, B frame lengths)``."""

    output_layers = 1


class LogMelFrontend(Frontend):
    """B x T audio -> B x T' x 80 normalised log-mel (25 ms window, 10 ms hop)."""

    def __init__(self):
        super().__init__()
        self.fbank = LogMelFilterbank()
        self.output_dim = self.fbank.num_mel_bins

    def forward(self, source, lengths):
        return self.fbank(source, lengths)


class Wav2vecFrontend(Frontend):
    """B x T audio -> B x T' x C aggregator output ``c`` of a frozen vq_wav2vec model."""

    def __init__(self, upstreams: FrozenUpstreams):
        super().__init__()
        self.upstreams = upstreams
        self.output_dim = upstreams.vq.feature_aggregator.conv_layers[-1].conv.out_channels

    def forward(self, source, lengths):
        return self._c(source, lengths)

    @_frozen
    def _c(self, source, lengths):
        vq = self.upstreams.vq
        c = vq.extract_features(*_vq_input(self.upstreams, source, lengths))["c"]
        return c.transpose(1, 2), vq.output_lengths(lengths)


def _encode_units(upstreams: FrozenUpstreams, source, lengths
                  ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """B x T audio -> (the T'_b x G codes of each utterance, B frame lengths), from the frozen
    quantizing vq_wav2vec."""
    with torch.inference_mode():
        codes = upstreams.vq.encode(*_vq_input(upstreams, source, lengths))
    frames = torch.tensor([len(c) for c in codes], device=source.device)
    return [c.clone() for c in codes], frames


class UnitFrontend(Frontend):
    """Discrete units -> a learned embedding per group, concatenated: B x T' x (G * dim / G).

    The source is audio (quantized by the frozen upstream) or, from a ``.src`` folder, codes
    (B x T x G long) already. Units are embedded frame by frame: de-duplicating them and expanding
    the embeddings back by the durations would give the same frames, so there is no de-duplicated
    variant of this frontend.
    """

    def __init__(self, num_vars: int, groups: int, embed_dim: int,
                 upstreams: Optional[FrozenUpstreams] = None):
        super().__init__()
        if embed_dim % groups:
            raise ValueError(f"unit_embed_dim {embed_dim} is not a multiple of {groups} groups")
        self.upstreams = upstreams
        self.num_vars, self.groups = num_vars, groups
        self.embed = nn.ModuleList(nn.Embedding(num_vars, embed_dim // groups) for _ in range(groups))
        self.output_dim = embed_dim

    def forward(self, source, lengths):
        if source.dtype.is_floating_point:
            codes, lengths = _encode_units(self.upstreams, source, lengths)
            source = _pad(codes)
        if int(source.max()) >= self.num_vars:
            raise ValueError(f"unit code {int(source.max())} >= codebook size {self.num_vars}")
        x = torch.cat([embed(source[..., g]) for g, embed in enumerate(self.embed)], dim=-1)
        return x.masked_fill(~frame_mask(lengths, x.size(1)).unsqueeze(-1), 0.0), lengths


class BertFrontend(Frontend):
    """Units -> ``unit_bert`` features (B x T' x C, or B x T' x K x C for K layers): frozen, or
    fine-tuned end to end.

    The source is audio (quantized by the frozen vq_wav2vec) or codes from a ``.src`` folder. A
    BERT trained on de-duplicated units gets them so, its features expanded back to one per unit
    frame (:class:`~fairseq_vqw2v.models.unit_bert.UnitBertFeaturizer`). Fine-tuning: BERT's parameters are trainable, but while ``num_updates < freeze_updates`` it
    runs without gradients (the optimizer skips parameters without a gradient).
    """

    def __init__(self, featurizer: UnitBertFeaturizer, upstreams: FrozenUpstreams,
                 finetune: bool = False, freeze_updates: int = 0):
        super().__init__()
        self.upstreams = upstreams
        self.finetune = finetune
        self.freeze_updates = freeze_updates
        self.num_updates = 0
        if finetune:
            # trainable: a submodule of the acoustic model, in its checkpoint
            self.bert = featurizer.model
        else:
            upstreams.add("bert", featurizer.model)
        self.featurizer = featurizer
        self.output_dim = self.featurizer.dim
        self.output_layers = len(self.featurizer.layers)

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates

    def forward(self, source, lengths):
        if source.dtype.is_floating_point:
            codes, lengths = _encode_units(self.upstreams, source, lengths)
        else:
            codes = [c[:n] for c, n in zip(source, lengths.tolist())]
        ids = [self.featurizer.token_ids(c.cpu()).to(source.device) for c in codes]
        if self.finetune and self.training and self.num_updates >= self.freeze_updates:
            self.featurizer.model.train()
            feats = self.featurizer.features(ids)
        else:
            self.featurizer.model.eval()
            with torch.inference_mode():
                feats = self.featurizer.features(ids)
            feats = [f.clone() for f in feats]
        return _pad(feats), lengths


def _pad(tensors: List[torch.Tensor]) -> torch.Tensor:
    """B tensors T_b x ... -> B x max T_b x ..., zero-padded."""
    return nn.utils.rnn.pad_sequence(tensors, batch_first=True)


class PrecomputedFrontend(Frontend):
    """Features read from disk (B x T x C, or B x T x K x C for K layers): passed through."""

    def __init__(self, dim: int, layers: int = 1):
        super().__init__()
        self.output_dim = dim
        self.output_layers = layers

    def forward(self, source, lengths):
        return source, lengths
