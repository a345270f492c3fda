"""Contrastive (wav2vec) criterion with codebook-usage logging and a codebook-collapse warning.

The loss is fairseq's ``wav2vec`` criterion, reused as is (binary cross-entropy over K steps x
(1 + negatives) logits, or InfoNCE, plus the weighted extra loss: Gumbel diversity penalty
``num_vars - prob_perplexity`` or the k-means loss). On top of it this criterion logs the accuracy
for both losses (balanced between positives and negatives with binary cross-entropy), the
distinct code tuples of each batch (``distinct_codes``: sampled codes in training with Gumbel,
argmax codes in validation) and warns when the codebook collapses, the
failure users of the reference meet most often (code perplexity stuck at 2, fairseq issues 1850
and 1885) and that fairseq lets run silently for days.
"""

import logging
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from fairseq.criterions import register_criterion
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion, Wav2VecCriterionConfig

logger = logging.getLogger(__name__)

# logged when --log-keys is empty (a non-empty list default cannot go through fairseq's argparse);
# keys absent from the model's output (e.g. temp with k-means) are skipped
QUANTIZER_LOG_KEYS = ["prob_perplexity", "code_perplexity", "temp"]


@dataclass
class ContrastiveCriterionConfig(Wav2VecCriterionConfig):
    collapse_warn_fraction: float = field(
        default=0.05,
        metadata={
            "help": "warn when the code perplexity stays below this fraction of the G x V "
            "possible codes (0 disables the warning)"
        },
    )
    collapse_warn_after: int = field(
        default=1000,
        metadata={"help": "updates before the collapse check starts (codebooks need a warmup)"},
    )
    collapse_warn_interval: int = field(
        default=1000,
        metadata={"help": "updates between two collapse warnings, and the averaging window"},
    )


class CollapseMonitor:
    """Averages code perplexity over a window of updates and says when the codebook collapsed.

    Args:
        fraction: collapse when the mean perplexity < fraction x possible codes.
        after: no verdict before this many updates.
        interval: the window (in updates) and the minimum distance between two warnings.
    """

    def __init__(self, fraction: float, after: int, interval: int):
        self.fraction, self.after, self.interval = fraction, after, max(1, interval)
        self.window: List[float] = []
        self.last_warning: Optional[int] = None

    def update(self, num_updates: int, code_perplexity: float, num_vars: int) -> Optional[str]:
        """Records one training step; returns the warning to give now, if any."""
        if self.fraction <= 0:
            return None
        self.window = (self.window + [code_perplexity])[-self.interval :]
        if num_updates < self.after:
            return None
        if self.last_warning is not None and num_updates - self.last_warning < self.interval:
            return None
        mean = sum(self.window) / len(self.window)
        if mean >= self.fraction * num_vars:
            return None
        self.last_warning = num_updates
        return (
            f"code perplexity {mean:.1f} of {num_vars} possible codes after {num_updates} "
            f"updates (mean of the last {len(self.window)} steps, threshold "
            f"{self.fraction:g} x {num_vars}): the codebook has collapsed, the model uses "
            f"almost no codes (fairseq issues 1850, 1885). Try a diversity penalty "
            f"(--loss-weights '[0.1]' for Gumbel), a higher or slower-decaying Gumbel "
            f"temperature (--vq-temp, --temp-schedule), a lower learning rate or a longer warmup, "
            f"or check the audio (silence, wrong sample rate)."
        )


@register_criterion("vqw2v_contrastive", dataclass=ContrastiveCriterionConfig)
class ContrastiveCriterion(Wav2vecCriterion):
    """fairseq's wav2vec loss; logs accuracy, codebook usage; warns on codebook collapse."""

    def __init__(self, task, cfg: ContrastiveCriterionConfig):
        super().__init__(task, cfg.infonce, cfg.loss_weights, cfg.log_keys or list(QUANTIZER_LOG_KEYS))
        self.monitor = CollapseMonitor(
            cfg.collapse_warn_fraction, cfg.collapse_warn_after, cfg.collapse_warn_interval
        )
        self.num_updates = 0

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates

    def forward(self, model, sample, reduce=True):
        # the parent runs the model itself; keep its output for the extra statistics
        outputs = []
        hook = model.register_forward_hook(lambda _module, _input, out: outputs.append(out))
        try:
            loss, sample_size, logging_output = super().forward(model, sample, reduce)
        finally:
            hook.remove()
        net_output = outputs[-1]

        if not self.infonce:
            logging_output.update(self.binary_accuracy(model, sample, net_output))
        if "codes" in net_output:
            codes = net_output["codes"]
            logging_output["distinct_codes"] = len(torch.unique(codes.reshape(-1, codes.size(-1)), dim=0))
        if self.training and "code_perplexity" in net_output:
            warning = self.monitor.update(
                self.num_updates, float(net_output["code_perplexity"]), int(net_output["num_vars"])
            )
            if warning:
                logger.warning(warning)
        return loss, sample_size, logging_output

    @staticmethod
    @torch.no_grad()
    def binary_accuracy(model, sample, net_output):
        """Balanced share of logits on the right side of 0 (positives > 0, negatives < 0).

        Positives and negatives weigh the same in total (or as the model's target weights say),
        so answering "negative" everywhere scores 0.5, not N / (N + 1).
        """
        logits = model.get_logits(net_output).float()
        target = model.get_targets(sample, net_output).bool()
        right = ((logits > 0) == target).float()
        weights = model.get_target_weights(target, net_output)
        if not torch.is_tensor(weights):
            positives = target.float().sum().clamp(min=1)
            negatives = (~target).float().sum().clamp(min=1)
            weights = torch.where(target, 0.5 / positives, 0.5 / negatives) * target.numel()
        return {"correct": float((right * weights).sum()), "count": float(weights.sum())}
