"""CTC beam search with flashlight-text's decoders: lexicon tries and hypothesis output.

The language model is any flashlight ``LM`` (KenLM, or a Python subclass such as the char ConvLM
of :mod:`fairseq_vqw2v.decoding.charlm`). With a lexicon the search is constrained to lexicon
words (``LexiconDecoder``); without one it is free over the label tokens (``LexiconFreeDecoder``,
token-level LM only). The search options are a :class:`~.config.BeamSearchConfig`, fairseq's
defaults (``examples/speech_recognition/w2l_decoder.py``).
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from fairseq.data import Dictionary
from flashlight.lib.text.decoder import (
    LM,
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    SmearingMode,
    Trie,
)
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary as WordDictionary

from fairseq_vqw2v.constants import WORD_BOUNDARY
from fairseq_vqw2v.decoding.base import CTCDecoder
from fairseq_vqw2v.decoding.config import BeamSearchConfig
from fairseq_vqw2v.decoding.lexicon import Lexicon, read_lexicon
from fairseq_vqw2v.errors import InputError, require_file

UNK_WORD = "<unk>"
KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"
"""How build_binary's files start (KenLM's ``lm/binary_format.cc``)."""
ARPA_HEADER = b"\\data\\"
"""The first non-empty line of an ARPA file."""


def load_kenlm(path: str, dictionary: WordDictionary, what: str) -> KenLM:
    """flashlight's ``KenLM(path, dictionary)``, after checking that ``path`` is a KenLM binary
    or an ARPA file; any other file, or one KenLM cannot load (truncated), is an
    :class:`InputError` naming it and ``what`` it should be, before decoding starts (KenLM's own
    message names no file, and on random bytes Python cannot even decode it)."""
    require_file(path, what)
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.startswith(KENLM_BINARY_MAGIC) and not head.lstrip().startswith(ARPA_HEADER):
        raise InputError(f"{path}: not a {what}: neither a KenLM binary (build_binary) nor an "
                         f"ARPA file (it starts with {head[:16]!r})")
    try:
        return KenLM(path, dictionary)
    except Exception as e:  # RuntimeError, or UnicodeDecodeError of a message quoting bad bytes
        reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a usable {what} (truncated or corrupt?): {reason}") from None


def load_lexicon(path: str, tgt_dict: Dictionary) -> Tuple[Lexicon, WordDictionary]:
    """The lexicon (spellings checked against ``tgt_dict``) and its flashlight word dictionary:
    the words in file order, then ``<unk>``."""
    lexicon = read_lexicon(path, tgt_dict)
    words = WordDictionary()
    for word in lexicon:
        words.add_entry(word)
    if UNK_WORD not in lexicon:
        words.add_entry(UNK_WORD)
    return lexicon, words


class FlashlightDecoder(CTCDecoder):
    """Beam search over one utterance at a time with a flashlight LM and optional lexicon.

    Args:
        tgt_dict: the acoustic model's label dictionary (letters; ``|`` is the silence token).
        lm: flashlight language model; scores lexicon words (``token_lm=False``: indices of
            ``word_dict``) or label tokens (``token_lm=True``: indices are ``tgt_dict`` ids).
        lexicon, word_dict: from :func:`load_lexicon` (a word LM is built with that word_dict),
            or ``None`` for lexicon-free search (token LM only).
        search: the beam search options.
    """

    def __init__(
        self,
        tgt_dict: Dictionary,
        lm: LM,
        lexicon: Optional[Lexicon],
        word_dict: Optional[WordDictionary],
        token_lm: bool,
        search: BeamSearchConfig,
    ):
        super().__init__(tgt_dict)
        if not self.is_letter:
            raise ValueError(
                f"beam search needs a letter dictionary with the word boundary {WORD_BOUNDARY!r}"
            )
        self.cfg = cfg = search
        self.lm = lm
        self.word_dict = word_dict
        self.silence = tgt_dict.index(WORD_BOUNDARY)
        common = dict(
            beam_size=cfg.beam,
            beam_size_token=cfg.beam_size_token or self.vocab_size,
            beam_threshold=cfg.beam_threshold,
            lm_weight=cfg.lm_weight,
            sil_score=cfg.sil_weight,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        if lexicon is None:
            if not token_lm:
                raise ValueError("lexicon-free decoding needs a token-level LM")
            self.decoder = LexiconFreeDecoder(
                LexiconFreeDecoderOptions(**common), lm, self.silence, self.blank, []
            )
            return
        self.trie = self._build_trie(lexicon, token_lm)
        options = LexiconDecoderOptions(
            **common, word_score=cfg.word_score, unk_score=cfg.unk_weight
        )
        unk = self.word_dict.get_index(UNK_WORD)
        self.decoder = LexiconDecoder(
            options, self.trie, lm, self.silence, self.blank, unk, [], token_lm
        )

    def _build_trie(self, words: Lexicon, token_lm: bool) -> Trie:
        """Lexicon prefix tree over label ids; each word end carries its unigram LM score
        (a word LM) so that smearing lets the beam prefer likely words before they end."""
        trie = Trie(self.vocab_size, self.silence)
        start = None if token_lm else self.lm.start(False)
        for word, spellings in words.items():
            index = self.word_dict.get_index(word)
            score = 0.0 if token_lm else self.lm.score(start, index)[1]
            for spelling in spellings:
                trie.insert([self.tgt_dict.index(t) for t in spelling], index, score)
        trie.smear(SmearingMode.MAX)
        return trie

    def decode_utterance(self, emissions: Tensor) -> List[Dict]:
        frames, vocab = emissions.shape
        results = self.decoder.decode(emissions.data_ptr(), frames, vocab)
        hypos = []
        for result in results[: self.cfg.nbest]:
            hypo = self.hypothesis(torch.tensor(result.tokens, dtype=torch.long), result.score)
            if self.word_dict is not None:
                hypo["words"] = [self.word_dict.get_entry(w) for w in result.words if w >= 0]
            hypos.append(hypo)
        return hypos
