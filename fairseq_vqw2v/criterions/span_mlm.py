"""``span_mlm``: cross-entropy on masked positions, with masked accuracy and perplexity."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ._logging import logged_sum


@dataclass
class SpanMlmConfig(FairseqDataclass):
    """No options; a dataclass still matters: without one fairseq pickles the criterion's config
    as an ``argparse.Namespace``, which torch's safe loader refuses when resuming."""


def count_hits(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """How many rows of ``logits`` (N x V) have no logit above the one of their target (N): the
    argmax count, up to exact ties, from ``amax``, which torch's CPU kernels compute far more
    cheaply than ``argmax`` over thousands of units."""
    with torch.no_grad():
        target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return int((target_logits >= logits.amax(-1)).sum())


@register_criterion("span_mlm", dataclass=SpanMlmConfig)
class SpanMlmCriterion(FairseqCriterion):
    """Loss summed over masked positions (``target != pad``); ``sample_size`` = their number.

    Logged: ``loss`` (base 2 per masked token, as fairseq's masked_lm), ``ppl``, ``accuracy``
    (percent of masked units predicted exactly).
    """

    def __init__(self, task):
        super().__init__(task)
        self.padding_idx = task.source_dictionary.pad()

    def forward(self, model, sample, reduce=True):
        target = sample["target"]
        masked = target.ne(self.padding_idx)
        logits = model(**sample["net_input"], masked_tokens=masked)
        targets = target[masked]
        if targets.numel() == 0:
            # keeps the graph connected so that every worker runs backward on the same parameters
            loss = logits.sum() * 0.0
            correct = 0
        else:
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            correct = count_hits(logits, targets)
        sample_size = max(int(targets.numel()), 1)
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "nmasked": int(targets.numel()),
            "ncorrect": correct,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return float(logged_sum(logging_outputs, key))

        loss_sum, sample_size = total("loss"), total("sample_size")
        nmasked, ncorrect = total("nmasked"), total("ncorrect")
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["loss"].avg))
        metrics.log_scalar("nmasked", nmasked)
        metrics.log_scalar("ncorrect", ncorrect)
        metrics.log_derived(
            "accuracy",
            lambda meters: round(100.0 * meters["ncorrect"].sum / meters["nmasked"].sum, 3)
            if meters["nmasked"].sum > 0
            else float("nan"),
        )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
