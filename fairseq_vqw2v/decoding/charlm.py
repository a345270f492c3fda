"""Character-LM decoding (the paper's char ConvLM): beam search scored by a letter-level LM.

The LM reads the same symbols as the acoustic model's letter dictionary (letters and ``|``), so
it scores every emitted token, within lexicon words (``LexiconDecoder`` with a token LM) or
freely (``LexiconFreeDecoder``). Two LMs are supported:

- ``fconv``: a fairseq ``fconv_lm`` checkpoint of the stock ``language_modeling`` task trained on
  the corpus written as letters (``python -m fairseq_vqw2v.cli.lm charlm-data``), wrapped as a
  flashlight ``LM`` with incremental decoding and a per-state cache (:class:`FConvCharLM`);
- ``kenlm``: a character n-gram KenLM built on the same letter corpus.
"""

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

from fairseq import tasks
from fairseq.data import Dictionary
from fairseq.models.fconv_lm import FConvLanguageModel
from fairseq.utils import apply_to_sample, split_paths
from flashlight.lib.text.decoder import LM, LMState
from flashlight.lib.text.dictionary import Dictionary as TokenDictionary
from omegaconf import open_dict

from fairseq_vqw2v.checkpoint import check_model_config, load_fairseq_checkpoint
from fairseq_vqw2v.decoding.beam_search import FlashlightDecoder, load_kenlm, load_lexicon
from fairseq_vqw2v.decoding.config import CHARLM_TYPES, BeamSearchConfig
from fairseq_vqw2v.errors import require_file


@dataclass
class _Entry:
    """An LM state: its LM-index prefix, the fconv incremental state after the prefix (or the
    parent's, not yet advanced) and the cached next-token log-probabilities ``V_lm``."""

    prefix: List[int]
    incremental_state: Optional[Dict]
    log_probs: Optional[Tensor] = None


class FConvCharLM(LM):
    """flashlight ``LM`` over ``tgt_dict`` token ids, scored by a fairseq char LM (``fconv_lm``).

    Each new state costs one incremental forward step of one token (its parent's convolution
    buffers are cloned and advanced); its log-probabilities are cached, so expanding a state again
    is a lookup. The cache lives for one utterance (cleared by :meth:`start`). Tokens the LM's
    dictionary lacks score ``-inf``, as in fairseq's ``FairseqLM``.
    """

    def __init__(self, model, lm_dict: Dictionary, tgt_dict: Dictionary):
        LM.__init__(self)
        self.model = model.eval()
        self.lm_dict = lm_dict
        self.to_lm = [lm_dict.index(tgt_dict[i]) for i in range(len(tgt_dict))]
        self.states: Dict[LMState, _Entry] = {}

    @torch.no_grad()
    def _log_probs(self, entry: _Entry) -> Tensor:
        if entry.log_probs is None:
            # the parent's buffers are shared by its children: advance a copy
            state = apply_to_sample(torch.clone, entry.incremental_state or {})
            out = self.model(torch.tensor([entry.prefix]), incremental_state=state)
            entry.log_probs = self.model.get_normalized_probs(out, log_probs=True)[0, -1]
            entry.incremental_state = state
        return entry.log_probs

    def start(self, start_with_nothing: bool) -> LMState:
        self.states.clear()
        root = LMState()
        self.states[root] = _Entry([self.lm_dict.eos()], None)
        return root

    def _score_lm_index(self, state: LMState, lm_index: int, child_key: int):
        entry = self.states[state]
        score = self._log_probs(entry)[lm_index].item()
        child = state.child(child_key)
        if child not in self.states:
            self.states[child] = _Entry(entry.prefix + [lm_index], entry.incremental_state)
        if lm_index == self.lm_dict.unk():
            score = -math.inf
        return child, score

    def score(self, state: LMState, token_index: int):
        return self._score_lm_index(state, self.to_lm[token_index], token_index)

    def finish(self, state: LMState):
        # -1 is no token id, so the end-of-sentence child never collides with a token's child
        return self._score_lm_index(state, self.lm_dict.eos(), -1)


def load_fconv_lm(path: str):
    """``(model, dictionary)`` of a fairseq ``language_modeling`` checkpoint of an ``fconv_lm``.

    The dictionary is ``dict.txt`` next to the checkpoint, else in the folder above it (where
    ``reproduce`` writes it: ``lm/charlm/{dict.txt,ckpt/}``, which then decodes wherever that
    folder has moved), else in the task's data folder as recorded at training. The
    checkpoint is unpickled by the safe loader, which also refuses options that fairseq
    ``eval()``s (the layer specs) unless they are literals, and any model but ``fconv_lm``.
    """
    require_file(path, "char LM checkpoint")
    state = load_fairseq_checkpoint(path)
    cfg = state["cfg"]
    check_model_config(cfg.model, [FConvLanguageModel], path)
    folder = os.path.dirname(os.path.abspath(path))
    candidates = [folder, os.path.dirname(folder)]
    if getattr(cfg.task, "data", None):
        candidates.append(split_paths(str(cfg.task.data))[0])
    data = next((d for d in candidates if os.path.isfile(os.path.join(d, "dict.txt"))), None)
    if data is None:
        raise FileNotFoundError(
            f"{path}: the char LM's dict.txt is in none of {candidates} (copy it next to the "
            f"checkpoint)"
        )
    with open_dict(cfg):
        cfg.task.data = data
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True)
    return model, task.target_dictionary


def token_dictionary(tgt_dict: Dictionary) -> TokenDictionary:
    """flashlight dictionary of ``tgt_dict``'s symbols in id order: KenLM then scores token ids."""
    tokens = TokenDictionary()
    for i in range(len(tgt_dict)):
        tokens.add_entry(tgt_dict[i])
    return tokens


class CharLMDecoder(FlashlightDecoder):
    """CTC beam search scored by a character LM, with (``lexicon``) or without a lexicon.

    Args:
        lm_path: ``fconv_lm`` checkpoint (``lm_type='fconv'``) or char n-gram KenLM model
            (``lm_type='kenlm'``, ARPA or binary).
        lexicon: lexicon file; ``None`` decodes lexicon-free (then ``word_score`` is unused).
        search: the beam search options.
    """

    def __init__(
        self,
        tgt_dict: Dictionary,
        lm_path: str,
        lm_type: str,
        lexicon: Optional[str] = None,
        search: Optional[BeamSearchConfig] = None,
    ):
        if lm_type not in CHARLM_TYPES:
            raise ValueError(f"lm_type must be one of {CHARLM_TYPES}, got {lm_type!r}")
        words = word_dict = None
        if lexicon is not None:
            words, word_dict = load_lexicon(lexicon, tgt_dict)
        if lm_type == "kenlm":
            lm = load_kenlm(lm_path, token_dictionary(tgt_dict), "char KenLM model")
        else:
            lm = FConvCharLM(*load_fconv_lm(lm_path), tgt_dict)
        super().__init__(
            tgt_dict,
            lm=lm,
            lexicon=words,
            word_dict=word_dict,
            token_lm=True,
            search=search or BeamSearchConfig(),
        )
