"""Lexicon-constrained CTC beam search with a word n-gram KenLM (fairseq's ``W2lKenLMDecoder``)."""

from fairseq.data import Dictionary
from fairseq_vqw2v.decoding.beam_search import FlashlightDecoder, load_kenlm, load_lexicon


class KenLMLexiconDecoder(FlashlightDecoder):
    """Beam search over lexicon words scored by a KenLM word model (ARPA or ``build_binary``).

    ``decode(emissions B x T x V, lengths B)`` returns per utterance ``nbest`` hypotheses with
    ``words`` from the decoder's word path and ``tokens`` from its letter path. ``options`` are
    the fields of :class:`~fairseq_vqw2v.decoding.beam_search.BeamSearchConfig` (``beam=50,
    beam_threshold=25.0, beam_size_token=None, lm_weight=2.0, word_score=-1.0, unk_weight=-inf,
    sil_weight=0.0, nbest=1``, fairseq's defaults).
    A lexicon spelling with a token outside ``tgt_dict`` raises ``ValueError("lexicon:line: ...")``;
    a file that is not a KenLM model an ``InputError`` naming it (:func:`load_kenlm`).
    """

    def __init__(self, tgt_dict: Dictionary, lexicon: str, lm_path: str, **options):
        words, word_dict = load_lexicon(lexicon, tgt_dict)
        super().__init__(
            tgt_dict,
            lm=load_kenlm(lm_path, word_dict, "KenLM model"),
            lexicon=words,
            word_dict=word_dict,
            token_lm=False,
            **options,
        )
