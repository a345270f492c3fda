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
  (:class:`~fairseq_vqw2v.modules.layer_weights.WeightedLayerSum`). From cached features it
  selects among the layers featurize wrote (:func:`cached_layer_positions`; ``last`` reads them
  all).

Every frontend has ``output_dim`` (C) and ``output_layers`` (K, 1 for B x T' x C).

What the model reads is decided here, once: the task resolves ``--input`` and its data flags
into a :class:`FrontendSpec` (:meth:`FrontendSpec.resolve`: where the frames come from, the
upstream checkpoints and their SHA-256, the shape of cached features or units), records it in the
model's config, and the model builds its frontend from the spec read back
(:meth:`FrontendSpec.of_model`, :func:`build_frontend`), also from a checkpoint.

Frozen upstream models run in eval mode under ``torch.inference_mode()``; their weights stay out
of the acoustic model's checkpoint (:class:`FrozenUpstreams`), which records the checkpoint files'
paths and SHA-256 instead.
"""

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..data.feature_files import feature_index, feature_layers
from ..data.unit_files import dictionary_codebook, unit_dict_path
from ..modules.logmel import LogMelFilterbank
from ..modules.masked_group_norm import frame_mask
from .unit_bert import UnitBertFeaturizer, layer_numbers
from .vq_wav2vec import codebook_shape, load_vq_wav2vec

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


def checked_sha256(path: Optional[str], recorded: Optional[str], flag: str, needed_by: str) -> str:
    """The SHA-256 of the checkpoint ``path`` that ``--input needed_by`` needs, after checking
    it is given, readable and, when the model recorded one, the same file."""
    if not path:
        raise ValueError(f"--input {needed_by} needs {flag} PATH")
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot read the checkpoint: {e}") from e
    if recorded and digest != recorded:
        raise ValueError(
            f"{flag} {path}: this file (sha256 {digest[:12]}...) is not the checkpoint the acoustic "
            f"model was trained on (sha256 {recorded[:12]}...); pass that checkpoint with {flag}"
        )
    return digest


def input_source(input: str, features: Optional[str], units_dir: Optional[str]) -> str:
    """What the datasets feed the model for ``--input``: ``audio``, cached ``features`` (bert,
    wav2vec with ``--features``) or ``units`` (units, bert with ``--units-dir``)."""
    if input in ("bert", "wav2vec") and features:
        return "features"
    if input in ("units", "bert") and units_dir:
        return "units"
    return "audio"


@dataclass(frozen=True)
class FrontendSpec:
    """What the acoustic model reads, resolved once.

    Attributes:
        input: the ``--input`` kind (:data:`INPUT_KINDS`).
        source: what the datasets feed, :func:`input_source`.
        upstream, upstream_sha256: the vq_wav2vec checkpoint, when the model computes from audio
            anything but log-mel.
        bert, bert_sha256: the unit_bert checkpoint, for ``--input bert`` not read from features.
        feature_dim, feature_layers: cached features: channels C, and the layer indices of
            K-layer BERT features (None: one layer).
        unit_vars, unit_groups: the codebook of a units folder.
    """

    input: str
    source: str = "audio"
    upstream: Optional[str] = None
    upstream_sha256: Optional[str] = None
    bert: Optional[str] = None
    bert_sha256: Optional[str] = None
    feature_dim: int = 0
    feature_layers: Optional[Tuple[int, ...]] = None
    unit_vars: int = 0
    unit_groups: int = 0

    def __post_init__(self):
        if self.input not in INPUT_KINDS:
            raise ValueError(f"--input must be one of {INPUT_KINDS}, got {self.input!r}")

    @property
    def needs_upstream(self) -> bool:
        return self.source == "audio" and self.input != "logmel"

    @property
    def needs_bert(self) -> bool:
        return self.input == "bert" and self.source != "features"

    @property
    def continuous(self) -> bool:
        """Whether ``--input-norm`` applies."""
        return self.input in CONTINUOUS_INPUTS

    @classmethod
    def resolve(cls, input: str, upstream: Optional[str], bert: Optional[str],
                features: Optional[str], units_dir: Optional[str], split: str) -> "FrontendSpec":
        """The spec of a training run: the task's flags, the shape of its cached features (of
        ``split``) or units folder, and the SHA-256 of the upstream checkpoints it needs."""
        spec = cls(input=input, source=input_source(input, features, units_dir),
                   upstream=upstream, bert=bert)
        if spec.source == "features":
            layers = feature_layers(features, split)
            spec = replace(spec, feature_dim=int(feature_index(features, split)[0].shape[-1]),
                           feature_layers=tuple(layers) if layers else None)
        if spec.source == "units":
            vars_, groups = dictionary_codebook(unit_dict_path(units_dir))
            spec = replace(spec, unit_vars=vars_, unit_groups=groups)
        if spec.needs_upstream:
            spec = replace(spec, upstream_sha256=checked_sha256(upstream, None, "--upstream", input))
        if spec.needs_bert:
            spec = replace(spec, bert_sha256=checked_sha256(bert, None, "--bert", input))
        return spec

    def record(self, model_cfg) -> None:
        """Writes the spec into a ``w2l_ctc`` config, saved with the model."""
        model_cfg.source_kind = self.source
        model_cfg.source_dim = self.feature_dim
        model_cfg.feature_layers = ",".join(map(str, self.feature_layers or ()))
        model_cfg.unit_vars, model_cfg.unit_groups = self.unit_vars, self.unit_groups
        model_cfg.upstream_sha256, model_cfg.bert_sha256 = self.upstream_sha256, self.bert_sha256

    @classmethod
    def of_model(cls, model_cfg) -> "FrontendSpec":
        """The spec recorded in a ``w2l_ctc`` config."""
        layers = model_cfg.feature_layers
        return cls(
            input=model_cfg.input, source=model_cfg.source_kind,
            upstream=model_cfg.upstream, upstream_sha256=model_cfg.upstream_sha256,
            bert=model_cfg.bert, bert_sha256=model_cfg.bert_sha256,
            feature_dim=model_cfg.source_dim,
            feature_layers=tuple(int(i) for i in layers.split(",")) if layers else None,
            unit_vars=model_cfg.unit_vars, unit_groups=model_cfg.unit_groups,
        )


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


def wav2vec_dim(vq) -> int:
    """Channels C of a vq_wav2vec's aggregator output ``c``."""
    return vq.feature_aggregator.conv_layers[-1].conv.out_channels


def wav2vec_c(vq, source: torch.Tensor, padding_mask: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """B x T audio (B x T padding mask, True = pad) -> (B x T' x C aggregator output ``c``, B
    valid frames): wav2vec features, for ``--input wav2vec`` and for featurize alike."""
    c = vq.extract_features(source, padding_mask)["c"]  # B x C x T'
    return c.transpose(1, 2), vq.output_lengths((~padding_mask).long().sum(1))


class Wav2vecFrontend(Frontend):
    """B x T audio -> B x T' x C aggregator output ``c`` of a frozen vq_wav2vec model."""

    def __init__(self, upstreams: FrozenUpstreams):
        super().__init__()
        self.upstreams = upstreams
        self.output_dim = wav2vec_dim(upstreams.vq)

    def forward(self, source, lengths):
        return self._c(source, lengths)

    @_frozen
    def _c(self, source, lengths):
        return wav2vec_c(self.upstreams.vq, *_vq_input(self.upstreams, source, lengths))


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
    """Features read from disk (B x T x C, or B x T x K x C for K layers): passed through, or the
    layers at ``positions`` of the K taken (B x T x K' x C; B x T x C for one)."""

    def __init__(self, dim: int, layers: int = 1, positions: Optional[List[int]] = None):
        super().__init__()
        self.output_dim = dim
        self.positions = positions
        self.output_layers = layers if positions is None else len(positions)

    def forward(self, source, lengths):
        if self.positions is None:
            return source, lengths
        if len(self.positions) == 1:
            return source[:, :, self.positions[0]], lengths
        return source[:, :, self.positions], lengths


def cached_layer_positions(spec: FrontendSpec, bert_layers: str) -> Optional[List[int]]:
    """Where, among the K layers of cached BERT features (``featurize --layers``), the layers of
    ``--bert-layers`` are; None: read every cached layer. ``last`` (the default) reads what
    featurize cached, ``all`` every cached layer of several, ``N`` or a comma list those layers,
    which must have been cached. Features of one layer record no index, so any one layer is
    taken as the one featurize wrote."""
    cached = spec.feature_layers
    if bert_layers == "last" or (bert_layers == "all" and cached):
        return None
    wanted = None if bert_layers == "all" else layer_numbers(bert_layers)
    if not cached:
        if wanted is not None and len(wanted) == 1:
            return None
        raise ValueError(f"--bert-layers {bert_layers}: the cached features hold one layer per "
                         f"frame; featurize --layers {bert_layers} writes several")
    missing = [i for i in wanted if i not in cached]
    if missing:
        raise ValueError(f"--bert-layers {bert_layers}: layer(s) {','.join(map(str, missing))} "
                         f"are not in the cached features (layers {','.join(map(str, cached))}, "
                         f"from featurize --layers)")
    return [cached.index(i) for i in wanted]


def build_frontend(spec: FrontendSpec, unit_embed_dim: int, bert_layers: str = "last",
                   finetune_bert: bool = False, freeze_bert_updates: int = 0) -> Frontend:
    """The frontend of ``spec``, its upstream checkpoints loaded (and their SHA-256 checked
    against the recorded ones). ``unit_embed_dim``: ``--input units``; the rest: ``--input bert``
    (see :class:`BertFrontend`)."""
    if spec.source == "features":
        return PrecomputedFrontend(
            spec.feature_dim, len(spec.feature_layers) if spec.feature_layers else 1,
            cached_layer_positions(spec, bert_layers) if spec.input == "bert" else None)
    if spec.input == "logmel":
        return LogMelFrontend()
    upstreams = FrozenUpstreams()
    if spec.needs_upstream:
        checked_sha256(spec.upstream, spec.upstream_sha256, "--upstream", spec.input)
        vq, vq_task = load_vq_wav2vec(spec.upstream)
        upstreams.normalize_audio = bool(vq_task.get("normalize", False))
        upstreams.add("vq", vq)
    if spec.input == "wav2vec":
        return Wav2vecFrontend(upstreams)
    if spec.input == "units":
        if spec.source == "audio":
            num_vars, groups = codebook_shape(upstreams.vq)
        else:
            num_vars, groups = spec.unit_vars, spec.unit_groups
        return UnitFrontend(num_vars, groups, unit_embed_dim, upstreams)
    checked_sha256(spec.bert, spec.bert_sha256, "--bert", spec.input)
    featurizer = UnitBertFeaturizer.from_checkpoint(spec.bert, bert_layers)
    return BertFrontend(featurizer, upstreams, finetune=finetune_bert,
                        freeze_updates=freeze_bert_updates)
