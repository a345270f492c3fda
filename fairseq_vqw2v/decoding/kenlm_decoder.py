"""Lexicon-constrained CTC beam search with a word n-gram KenLM (fairseq's ``W2lKenLMDecoder``)."""

from typing import Optional

from fairseq.data import Dictionary
from fairseq_vqw2v.decoding.beam_search import FlashlightDecoder, load_kenlm, load_lexicon
from fairseq_vqw2v.decoding.config import BeamSearchConfig


class KenLMLexiconDecoder(FlashlightDecoder):
    """Beam search over lexicon words scored by a KenLM word model (ARPA or ``build_binary``).

    ``decode(emissions B x T x V, lengths B)`` returns per utterance ``search.nbest`` hypotheses
    (``search``: fairseq's defaults when ``None``)
    with ``words`` from the decoder's word path and ``tokens`` from its letter path.
    A lexicon spelling with a token outside ``tgt_dict`` raises ``ValueError("lexicon:line: ...")``;
    a file that is not a KenLM model an ``InputError`` naming it (:func:`load_kenlm`).
    """

    def __init__(self, tgt_dict: Dictionary, lexicon: str, lm_path: str,
                 search: Optional[BeamSearchConfig] = None):
        words, word_dict = load_lexicon(lexicon, tgt_dict)
        super().__init__(
            tgt_dict,
            lm=load_kenlm(lm_path, word_dict, "KenLM model"),
            lexicon=words,
            word_dict=word_dict,
            token_lm=False,
            search=search or BeamSearchConfig(),
        )
