"""``ctc_asr``: CTC loss for the acoustic model, with greedy-decoded error rates on valid.

The loss is torch's fused ``ctc_loss`` (sum over utterances, ``zero_infinity``), blank =
:func:`~fairseq_vqw2v.data.labels.ctc_blank` of the label dictionary. An utterance whose labels
cannot be aligned to its frames (fewer frames than labels plus repeated neighbours, which CTC must
separate by a blank) is left out of the batch and counted (``dropped``), with a warning: never an
inf or NaN loss.

On valid (not in training) the criterion also decodes greedily and logs ``wer`` and ``ler``
(letters) or ``per`` (phones, after 39-phone folding), so ``--best-checkpoint-metric wer`` works,
and ``output_ratio``, the units the greedy output holds per reference unit: near 1 once the model
spells, near 0 while it is on CTC's all-blank plateau (the blank almost every frame's best label).
"""

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..data.labels import LABEL_UNITS, UNIT_METRICS, ctc_blank
from ..decoding.scoring import ErrorRates
from ..decoding.viterbi import ViterbiDecoder
from ._logging import count_bad_audio, log_bad_audio, logged_sum

logger = logging.getLogger(__name__)


@dataclass
class CtcAsrConfig(FairseqDataclass):
    sentence_avg: bool = field(
        default=False, metadata={"help": "normalise the loss by utterances instead of labels"}
    )


def required_frames(target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Fewest frames CTC needs for each padded target row (B x L, B lengths): the labels plus one
    blank between equal neighbours."""
    valid = torch.arange(target.size(1), device=target.device)[None, :] < lengths[:, None]
    repeats = (target[:, 1:] == target[:, :-1]) & valid[:, 1:]
    return lengths + repeats.sum(1)


@register_criterion("ctc_asr", dataclass=CtcAsrConfig)
class CtcAsrCriterion(FairseqCriterion):
    def __init__(self, cfg: CtcAsrConfig, task):
        super().__init__(task)
        self.sentence_avg = cfg.sentence_avg
        self.dictionary = task.target_dictionary
        self.blank = ctc_blank(self.dictionary)
        self.unit_kind = LABEL_UNITS[task.cfg.labels]
        self.greedy = ViterbiDecoder(self.dictionary)

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)  # B x T x V
        frames = net_output["lengths"]
        target, target_lengths = sample["target"], sample["target_lengths"]
        keep = frames >= required_frames(target, target_lengths)
        dropped = int((~keep).sum())
        if dropped:
            ids = sample["id"][~keep].tolist()
            logger.warning(f"dropped {dropped} utterance(s) with more labels than frames: ids {ids}")
        kept_lengths = target_lengths[keep]
        if bool(keep.any()):
            loss = F.ctc_loss(
                lprobs[keep].transpose(0, 1),  # T x B' x V
                target[keep][target[keep] != self.dictionary.pad()],
                frames[keep],
                kept_lengths,
                blank=self.blank,
                reduction="sum",
                zero_infinity=True,
            )
        else:
            loss = lprobs.sum() * 0.0  # keeps the graph, so every worker steps together
        ntokens = int(kept_lengths.sum())
        nsentences = int(keep.sum())
        sample_size = nsentences if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.item(),
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
            "dropped": dropped,
        }
        count_bad_audio(sample, logging_output)
        if not model.training:
            logging_output.update(self.greedy_errors(lprobs, frames, target, target_lengths))
        return loss, max(sample_size, 1), logging_output

    def greedy_errors(self, lprobs, frames, target, target_lengths):
        hypos = self.greedy.decode(lprobs, frames)
        rates = ErrorRates(unit_kind=self.unit_kind)
        for nbest, ref, n in zip(hypos, target, target_lengths.tolist()):
            rates.add(self.dictionary.string(ref[:n]), self.dictionary.string(nbest[0]["tokens"]))
        return {
            "w_errors": rates.word_errors,
            "w_total": rates.words,
            "u_errors": rates.unit_errors,
            "u_total": rates.units,
            "h_total": rates.hyp_units,
            "unit_kind_is_phone": int(self.unit_kind == "phone"),
        }

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return float(logged_sum(logging_outputs, key))

        loss, sample_size = total("loss"), total("sample_size")
        metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("ntokens", total("ntokens"))
        metrics.log_scalar("nsentences", total("nsentences"))
        metrics.log_scalar("dropped", total("dropped"))
        log_bad_audio(logging_outputs)
        if not any("u_total" in log for log in logging_outputs):
            return
        phones = total("unit_kind_is_phone") > 0
        for key in ("w_errors", "w_total", "u_errors", "u_total", "h_total"):
            metrics.log_scalar(f"_{key}", total(key))
        unit = UNIT_METRICS["phone" if phones else "letter"]
        metrics.log_derived(unit, lambda m: _percent(m["_u_errors"].sum, m["_u_total"].sum))
        metrics.log_derived("output_ratio", lambda m: _ratio(m["_h_total"].sum, m["_u_total"].sum))
        if not phones:
            metrics.log_derived("wer", lambda m: _percent(m["_w_errors"].sum, m["_w_total"].sum))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _percent(errors, total):
    return round(100.0 * errors / total, 3) if total > 0 else float("nan")


def _ratio(count, total):
    return round(count / total, 3) if total > 0 else float("nan")
