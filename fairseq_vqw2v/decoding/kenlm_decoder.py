"""Lexicon-constrained CTC beam search with a word n-gram KenLM (fairseq's ``W2lKenLMDecoder``)."""

from typing import Optional

from fairseq.data import Dictionary
from flashlight.lib.text.decoder.kenlm import KenLM

from fairseq_vqw2v.decoding.beam_search import FlashlightDecoder, load_lexicon, require_file
from fairseq_vqw2v.decoding.config import BeamSearchConfig


class KenLMLexiconDecoder(FlashlightDecoder):
    """Beam search over lexicon words scored by a KenLM word model (ARPA or ``build_binary``).

    ``decode(emissions B x T x V, lengths B)`` returns per utterance ``search.nbest`` hypotheses
    (``search``: fairseq's defaults when ``None``)
    with ``words`` from the decoder's word path and ``tokens`` from its letter path.
    A lexicon spelling with a token outside ``tgt_dict`` raises ``ValueError("lexicon:line: ...")``.
    """

    def __init__(self, tgt_dict: Dictionary, lexicon: str, lm_path: str,
                 search: Optional[BeamSearchConfig] = None):
        words, word_dict = load_lexicon(lexicon, tgt_dict)
        require_file(lm_path, "KenLM model")
        super().__init__(
            tgt_dict,
            lm=KenLM(lm_path, word_dict),
            lexicon=words,
            word_dict=word_dict,
            token_lm=False,
            search=search or BeamSearchConfig(),
        )
