"""Frozen BERT features of unit sequences, for the acoustic model (vq-wav2vec, section 4).

Used by the featurize CLI (features written to disk) and by the acoustic-model task (features
computed on the fly); both go through :class:`UnitBertFeaturizer` so they agree exactly.
"""

import os
from dataclasses import fields
from typing import List, Optional, Tuple

import torch

from fairseq.data import Dictionary, data_utils

from .checkpoint import check_model_config, load_fairseq_checkpoint
from .data.unit_files import add_mask, codes_to_tokens, load_unit_dictionary
from .models.unit_bert import UnitBertConfig, UnitBertModel


def find_dictionary(checkpoint: str, cfg) -> str:
    """The ``dict.txt`` of a checkpoint: beside it, else in its task's (first) data folder."""
    candidates = [os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "dict.txt")]
    if cfg.get("task") is not None and cfg["task"].get("data"):
        candidates.append(os.path.join(str(cfg["task"]["data"]).split(":")[0], "dict.txt"))
    found = next((p for p in candidates if os.path.exists(p)), None)
    if found is None:
        folders = sorted(set(map(os.path.dirname, candidates)))
        raise FileNotFoundError(f"{checkpoint}: no dict.txt in {folders}")
    return found


def load_unit_bert(path: str) -> Tuple[UnitBertModel, Dictionary]:
    """Loads a ``unit_bert`` checkpoint (trained by ``unit_mlm`` or converted from roberta) with
    its dictionary: ``dict.txt`` beside the checkpoint, else in the task's data folder; ``<mask>``
    is appended as the task does. Returns the model in eval mode on CPU."""
    state = load_fairseq_checkpoint(path)
    cfg = state["cfg"]
    check_model_config(cfg["model"], (UnitBertModel,), path, hint="convert roberta checkpoints "
                     "with `python -m fairseq_vqw2v.cli.convert roberta SRC DEST`")
    model_cfg = UnitBertConfig(
        **{f.name: cfg["model"][f.name] for f in fields(UnitBertConfig) if f.name in cfg["model"]}
    )
    dictionary = load_unit_dictionary(find_dictionary(path, cfg))
    add_mask(dictionary)
    model = UnitBertModel(model_cfg, len(dictionary), dictionary.pad())
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), dictionary


class UnitBertFeaturizer:
    """Frozen ``unit_bert`` features of unit sequences: one C-dim vector per unit frame.

    Utterances longer than the model's ``max_positions`` (minus ``<s>``/``</s>``) are cut into
    consecutive windows, each framed and encoded on its own, and the windows' features are
    concatenated: frames near a window edge see less context than in one long pass, which the
    model could not do anyway (learned positions stop at ``max_positions``).

    Args:
        model, dictionary: from :func:`load_unit_bert`.
        layer: Transformer layer whose output is taken (1-based; default the last one, which is
            what the paper's acoustic models use).
        max_tokens: tokens per forward pass (windows are batched up to this).
    """

    def __init__(self, model: UnitBertModel, dictionary: Dictionary, layer: Optional[int] = None,
                 max_tokens: int = 16384):
        self.model = model.eval()
        self.dictionary = dictionary
        self.layer = layer
        self.max_tokens = max_tokens
        self.window = model.max_positions() - 2
        self.dim = model.cfg.encoder_embed_dim
        # units mapped by token_ids so far, and how many of them the dictionary lacked (<unk>)
        self.units_seen = 0
        self.units_unknown = 0

    @classmethod
    def from_checkpoint(cls, path: str, layer: Optional[int] = None, device: str = "cpu"):
        model, dictionary = load_unit_bert(path)
        return cls(model.to(device), dictionary, layer)

    def token_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """T x G codes (as ``extract_features()['idx']``) -> T dictionary ids (unseen -> unk,
        counted in ``units_unknown``)."""
        ids = torch.tensor([self.dictionary.index(t) for t in codes_to_tokens(codes)],
                           dtype=torch.long)
        self.units_seen += len(ids)
        self.units_unknown += int((ids == self.dictionary.unk()).sum())
        return ids

    @torch.no_grad()
    def __call__(self, utterances: List[torch.Tensor]) -> List[torch.Tensor]:
        """List of T_b unit-id tensors -> list of T_b x C float features (on the model's device)."""
        return self.features(utterances)

    def features(self, utterances: List[torch.Tensor]) -> List[torch.Tensor]:
        """:meth:`__call__` with autograd left as the caller set it (for fine-tuning BERT)."""
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
            feats = self.model.extract_features(tokens, layer=self.layer)
            for (u, w), f in zip(batch, feats):
                pieces[u].append(f[1 : len(w) - 1])
        return [torch.cat(p) if p else torch.zeros(0, self.dim, device=device) for p in pieces]

    def from_audio(self, vq_model, source: torch.Tensor,
                   padding_mask: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """B x T waveforms (B x T bool padding, True = pad) -> list of T'_b x C features, one per
        vq-wav2vec frame: audio -> units -> BERT, for acoustic models computing them on the fly."""
        codes = vq_model.encode(source, padding_mask)
        return self([self.token_ids(c) for c in codes])

