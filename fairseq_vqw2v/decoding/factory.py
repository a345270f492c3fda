"""The one place a decoder is built from its config (:class:`~.config.DecoderConfig`).

Decoder modules are imported only when chosen: greedy decoding loads no flashlight.
"""

import json

from fairseq.data import Dictionary

from ..data.text_files import decoding
from ..errors import InputError, require_file
from .base import CTCDecoder
from .config import BeamSearchConfig, DecoderConfig


def tuned_search(cfg: DecoderConfig) -> BeamSearchConfig:
    """The beam search options of ``cfg``, with the ``lm_weight`` and ``word_score`` of its
    ``decoder_settings`` file (written by the tune CLI) where it names one."""
    if not cfg.decoder_settings:
        return BeamSearchConfig.of(cfg.search)
    path = cfg.decoder_settings
    require_file(path, "--decoder-settings file (the tune CLI's result)")
    with decoding(path), open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        best = json.loads(text)
        tuned = {"lm_weight": float(best["lm_weight"]), "word_score": float(best["word_score"])}
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a tune CLI result ({e!r})") from None
    return BeamSearchConfig.of(cfg.search, **tuned)


def build_decoder(cfg: DecoderConfig, tgt_dict: Dictionary) -> CTCDecoder:
    """The ``cfg.decoder`` over the label dictionary ``tgt_dict``; a missing LM or lexicon is
    named by its flag."""
    if cfg.decoder == "viterbi":
        from .viterbi import ViterbiDecoder

        return ViterbiDecoder(tgt_dict)
    if not cfg.decoder_lm:
        raise ValueError(f"--decoder {cfg.decoder} needs --decoder-lm PATH")
    search = tuned_search(cfg)
    if cfg.decoder == "kenlm":
        from .kenlm_decoder import KenLMLexiconDecoder

        if not cfg.lexicon:
            raise ValueError("--decoder kenlm needs --lexicon PATH (python -m fairseq_vqw2v.cli.lm)")
        return KenLMLexiconDecoder(tgt_dict, cfg.lexicon, cfg.decoder_lm, search)
    from .charlm import CharLMDecoder

    return CharLMDecoder(tgt_dict, cfg.decoder_lm, cfg.charlm_type, cfg.lexicon, search)
