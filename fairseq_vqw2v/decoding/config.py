"""The decoders' options as one typed config, embedded in the ``vqw2v_asr`` task's config (its
fields are fairseq-generate's flags there) and built into a decoder by
:func:`fairseq_vqw2v.decoding.factory.build_decoder`.

Kept apart from the decoders so that reading the options loads neither flashlight nor a model.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

DECODERS = ("viterbi", "kenlm", "charlm")
CHARLM_TYPES = ("fconv", "kenlm")


@dataclass
class BeamSearchConfig(FairseqDataclass):
    """Beam search options, fairseq's decoding defaults (``w2l_decoder.py``). In fairseq-generate
    ``--beam``, ``--nbest`` and ``--lm-weight`` are fairseq's own flags, whose values these take
    (fairseq's defaults there: beam 5, LM weight 0)."""

    beam: int = field(
        default=50,
        metadata={"help": "hypotheses kept per frame (fairseq-generate: its own --beam, default 5)"},
    )
    beam_threshold: float = field(
        default=25.0, metadata={"help": "drop hypotheses scoring this far below the best"}
    )
    beam_size_token: Optional[int] = field(
        default=None, metadata={"help": "tokens considered per frame (default: all labels)"}
    )
    lm_weight: float = field(
        default=2.0,
        metadata={"help": "weight of the LM score (fairseq-generate: its own --lm-weight, "
                  "default 0)"},
    )
    word_score: float = field(
        default=-1.0, metadata={"help": "score added per emitted word (lexicon search only)"}
    )
    unk_weight: float = field(
        default=-math.inf, metadata={"help": "score of a word outside the lexicon"}
    )
    sil_weight: float = field(default=0.0, metadata={"help": "score added per silence token |"})
    nbest: int = field(
        default=1,
        metadata={"help": "hypotheses returned per utterance (fairseq-generate: its own --nbest)"},
    )

    @classmethod
    def of(cls, node, **changes) -> "BeamSearchConfig":
        """An instance with the fields of ``node`` (this config, or the omegaconf node fairseq
        makes of it), then ``changes``."""
        values = {f.name: getattr(node, f.name) for f in fields(cls) if not f.name.startswith("_")}
        return cls(**{**values, **changes})


@dataclass
class DecoderConfig(FairseqDataclass):
    """Which decoder, its language model and lexicon, and the beam search."""

    decoder: ChoiceEnum(DECODERS) = field(
        default="viterbi",
        metadata={"help": "viterbi (greedy CTC), kenlm (lexicon beam search with a word KenLM) "
                  "or charlm (beam search with a character LM)"},
    )
    decoder_lm: Optional[str] = field(
        default=None,
        metadata={"help": "LM for the beam search: a KenLM binary/ARPA (kenlm; charlm with "
                  "--charlm-type kenlm) or a fairseq fconv_lm checkpoint (charlm)"},
    )
    lexicon: Optional[str] = field(
        default=None,
        metadata={"help": "word -> letters lexicon (kenlm: required; charlm: optional, "
                  "lexicon-free without it)"},
    )
    charlm_type: ChoiceEnum(CHARLM_TYPES) = field(
        default="fconv", metadata={"help": "char LM kind: fairseq fconv_lm or a char KenLM"}
    )
    decoder_settings: Optional[str] = field(
        default=None,
        metadata={"help": "JSON written by the tune CLI: its lm_weight and word_score replace "
                  "--lm-weight and --word-score"},
    )
    search: BeamSearchConfig = field(default_factory=BeamSearchConfig)
