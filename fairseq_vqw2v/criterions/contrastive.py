"""Contrastive (wav2vec) criterion with codebook-usage logging and a codebook-collapse warning.

The loss is fairseq's ``wav2vec`` criterion, reused as is (binary cross-entropy over K steps x
(1 + negatives) logits, or InfoNCE, plus the weighted extra loss: Gumbel diversity penalty
``num_vars - prob_perplexity`` or the k-means loss). On top of it this criterion logs the accuracy
for both losses (balanced between positives and negatives with binary cross-entropy), the
distinct code tuples of each update (``distinct_codes``: sampled codes in training with Gumbel,
argmax codes in validation) and warns when the codebook collapses, the
failure users of the reference meet most often (code perplexity stuck at 2, fairseq issues 1850
and 1885) and that fairseq lets run silently for days.

The codebook statistics are those of an update's whole batch, over all workers (and all
``--update-freq`` batches): the forward logs counts (the quantizer's G x V code histograms, a
bitmap of the code tuples seen), fairseq sums them across workers, and :meth:`reduce_metrics`
derives the perplexities and the distinct tuples from the sums. A mean of per-batch perplexities
would understate the codebook's use: the union of two batches uses more codes than either.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion, Wav2VecCriterionConfig
from fairseq.distributed import utils as distributed_utils

from ..modules.perplexity import perplexity
from ..data.audio_dataset import BAD_AUDIO
from ._logging import count_bad_audio, log_bad_audio, logged_sum

logger = logging.getLogger(__name__)

# logged when --log-keys is empty (a non-empty list default cannot go through fairseq's argparse);
# keys absent from the model's output (e.g. temp with k-means) are skipped
QUANTIZER_LOG_KEYS = ["prob_perplexity", "code_perplexity", "temp"]
# perplexity -> the counts it is derived from, where the model gives them (our quantizers do;
# fairseq's own give only the per-batch value, which is then averaged over batches as fairseq does)
COUNTED_KEYS = {"code_perplexity": "code_counts", "prob_perplexity": "soft_code_counts"}
# the tuple bitmap has V^G entries, summed across workers every update: above this size (a codebook
# far beyond the paper's 320^2) distinct_codes is not logged
MAX_CODE_TUPLES = 2**20
# what fairseq's wav2vec reduce_metrics sums itself
FAIRSEQ_KEYS = {"loss", "ntokens", "nsentences", "sample_size", "correct", "count"}
# fairseq's wav2vec criterion logs these arrays for MAP/MAUC; they cannot be summed across workers
UNSUMMABLE_LOG_KEYS = {"logits", "target"}


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


def count_perplexity(counts: torch.Tensor) -> float:
    """Perplexity (summed over groups) of G x V counts, each group's row normalised."""
    return float(perplexity(counts.double() / counts.double().sum(-1, keepdim=True)))


def code_tuple_bitmap(codes: torch.Tensor, num_vars: int) -> Optional[torch.Tensor]:
    """1.0 at each of the V^G code tuples found in ``codes`` (``... x G`` long, V = ``num_vars``
    codewords per group), 0.0 elsewhere; None above :data:`MAX_CODE_TUPLES` tuples."""
    groups = codes.size(-1)
    if num_vars**groups > MAX_CODE_TUPLES:
        return None
    place = num_vars ** torch.arange(groups - 1, -1, -1, device=codes.device)
    flat = (codes.reshape(-1, groups) * place).sum(-1)
    return torch.zeros(num_vars**groups, device=codes.device).index_fill_(0, flat, 1.0)


def update_statistics(logging_outputs: List[Dict]) -> Dict[str, float]:
    """The statistics beyond fairseq's wav2vec ones, over all the batches of ``logging_outputs``
    (one update's, summed across workers or not): perplexities and ``distinct_codes`` from the
    summed counts, every other key (``temp``, user ``--log-keys``) as a mean per batch."""

    def total(key):
        return logged_sum(logging_outputs, key)

    keys = set().union(*logging_outputs)
    stats = {}
    for key in keys - FAIRSEQ_KEYS - set(COUNTED_KEYS.values()) - {"batches", "code_tuples",
                                                                      BAD_AUDIO}:
        if not key.startswith("loss"):
            stats[key] = float(total(key)) / max(float(total("batches")), 1.0)
    for key, counts in COUNTED_KEYS.items():
        if counts in keys:
            stats[key] = count_perplexity(total(counts))
    if "code_tuples" in keys:
        stats["distinct_codes"] = float((total("code_tuples") > 0).sum())
    return stats


@register_criterion("vqw2v_contrastive", dataclass=ContrastiveCriterionConfig)
class ContrastiveCriterion(Wav2vecCriterion):
    """fairseq's wav2vec loss; logs accuracy, codebook usage; warns on codebook collapse."""

    def __init__(self, task, cfg: ContrastiveCriterionConfig):
        log_keys = cfg.log_keys or list(QUANTIZER_LOG_KEYS)
        if UNSUMMABLE_LOG_KEYS & set(log_keys):
            raise ValueError(
                f"--log-keys {sorted(UNSUMMABLE_LOG_KEYS & set(log_keys))}: arrays per batch "
                f"cannot be summed across workers; log scalars of the model's output"
            )
        super().__init__(task, cfg.infonce, cfg.loss_weights, log_keys)
        self.monitor = CollapseMonitor(
            cfg.collapse_warn_fraction, cfg.collapse_warn_after, cfg.collapse_warn_interval
        )
        self.num_updates = 0
        self.warned_frozen_codebook = False

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
        if ("kmeans_loss" in net_output and not any(self.loss_weights or [])
                and not self.warned_frozen_codebook):
            self.warned_frozen_codebook = True
            if distributed_utils.get_global_rank() == 0:
                logger.warning("the k-means codebook learns only from the extra loss, which "
                               "--loss-weights leaves out: its codewords stay as initialised. "
                               "fairseq's vq-wav2vec k-means recipe uses --loss-weights '[1]'")

        logging_output["batches"] = 1
        count_bad_audio(sample, logging_output)
        if not self.infonce:
            logging_output.update(self.binary_accuracy(model, sample, net_output))
        for key, counts in COUNTED_KEYS.items():
            if key in logging_output and counts in net_output:
                del logging_output[key]
                logging_output[counts] = net_output[counts]
        if "codes" in net_output and "code_counts" in net_output:
            bitmap = code_tuple_bitmap(net_output["codes"], net_output["code_counts"].size(-1))
            if bitmap is not None:
                logging_output["code_tuples"] = bitmap
        return loss, sample_size, logging_output

    def observe_update(self, logging_outputs: List[Dict]) -> None:
        """Feeds the collapse monitor one training update's code perplexity, from the counts of
        all its batches on all workers; the task calls it with what fairseq gathered."""
        counts = logged_sum(logging_outputs, "code_counts")
        if not torch.is_tensor(counts):
            return
        warning = self.monitor.update(self.num_updates, count_perplexity(counts), counts.numel())
        # every worker holds the same sums and so the same verdict: one of them says it
        if warning and distributed_utils.get_global_rank() == 0:
            logger.warning(warning)

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        # fairseq averages the keys it does not know over len(logging_outputs), which counts
        # workers' batches only when they are gathered unsummed: it gets its own keys only
        Wav2vecCriterion.reduce_metrics(
            [{k: v for k, v in log.items() if k in FAIRSEQ_KEYS or k.startswith("loss")}
             for log in logging_outputs]
        )
        for key, value in sorted(update_statistics(logging_outputs).items()):
            metrics.log_scalar(key, value, round=3)
        log_bad_audio(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        # every value is a number or a count tensor; summing is also fairseq's only way that
        # works on CPU (its gathering path allocates a CUDA buffer)
        return True

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
