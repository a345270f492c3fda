"""What every CTC decoder shares: the label dictionary's conventions and the hypothesis format.

Emissions are float32 log-probabilities ``B x T x V`` over a fairseq label ``Dictionary``
(``V = len(tgt_dict)``); the CTC blank is :func:`fairseq_vqw2v.data.labels.ctc_blank`. A decoder
returns, per utterance, an n-best list of hypothesis dicts::

    {"tokens": LongTensor of label ids (no blanks, repeats collapsed), "score": float,
     "words": List[str] (letter dictionaries; [] for phones)}
"""

from typing import Dict, List

import torch
from torch import Tensor

from fairseq.data import Dictionary

from fairseq_vqw2v.constants import WORD_BOUNDARY
from fairseq_vqw2v.data.labels import ctc_blank
from fairseq_vqw2v.decoding.scoring import letters_to_words


class CTCDecoder:
    """Base class: label conventions of ``tgt_dict`` and the per-utterance ``decode`` loop."""

    def __init__(self, tgt_dict: Dictionary):
        self.tgt_dict = tgt_dict
        self.vocab_size = len(tgt_dict)
        self.blank = ctc_blank(tgt_dict)
        # the other specials are never CTC targets: an untrained model may still pick them
        self.specials = torch.tensor(
            sorted({self.blank, tgt_dict.bos(), tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()})
        )
        self.is_letter = WORD_BOUNDARY in tgt_dict.indices

    def label_ids(self, path: Tensor) -> Tensor:
        """Frame path ``T`` -> label ids: collapses repeats, then drops the blank and specials
        (and the -1 padding of flashlight's paths)."""
        path = torch.unique_consecutive(path.long())
        return path[(path >= 0) & ~torch.isin(path, self.specials)]

    def words(self, tokens: Tensor) -> List[str]:
        """Words spelled by letter ids (split on ``|``); ``[]`` for a phone dictionary."""
        if not self.is_letter:
            return []
        return letters_to_words([self.tgt_dict[i] for i in tokens.tolist()]).split()

    def hypothesis(self, path: Tensor, score: float) -> Dict:
        tokens = self.label_ids(path)
        return {"tokens": tokens, "score": float(score), "words": self.words(tokens)}

    def check(self, emissions: Tensor, lengths: Tensor) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.vocab_size:
            raise ValueError(
                f"emissions must be B x T x {self.vocab_size} (the label dictionary's size), "
                f"got {tuple(emissions.shape)}"
            )
        if lengths.shape != (emissions.size(0),) or bool((lengths > emissions.size(1)).any()):
            raise ValueError(
                f"lengths must be B={emissions.size(0)} frame counts <= T={emissions.size(1)}, "
                f"got {lengths.tolist()}"
            )

    def decode(self, emissions: Tensor, lengths: Tensor) -> List[List[Dict]]:
        """Emissions ``B x T x V`` and frame counts ``B`` -> one n-best list per utterance.

        Utterances are decoded one at a time, so a hypothesis does not depend on the batch.
        """
        self.check(emissions, lengths)
        emissions = emissions.detach().float().cpu()
        return [
            self.decode_utterance(emissions[b, : int(lengths[b])].contiguous())
            for b in range(emissions.size(0))
        ]

    def decode_utterance(self, emissions: Tensor) -> List[Dict]:
        """Emissions ``T x V`` (contiguous float32, CPU) of one utterance -> its n-best list."""
        raise NotImplementedError
