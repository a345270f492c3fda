"""What the criteria's ``forward`` and ``reduce_metrics`` share."""

from typing import Dict, List

from fairseq import metrics

from ..data.audio_dataset import BAD_AUDIO


def logged_sum(logging_outputs: List[Dict], key: str):
    """``key`` summed over ``logging_outputs`` (0 where absent). Summed across workers, fairseq
    hands over tensors (count histograms stay tensors; scalars need ``float`` before ``round``)."""
    return sum(log.get(key, 0) for log in logging_outputs)


def count_bad_audio(sample: Dict, logging_output: Dict) -> None:
    """Carries the batch's count of skipped audio files (if any) into its logging output."""
    if sample.get(BAD_AUDIO):
        logging_output[BAD_AUDIO] = sample[BAD_AUDIO]


def log_bad_audio(logging_outputs: List[Dict]) -> None:
    """``bad_audio``: files skipped, summed over the logged updates (and the epoch), not averaged;
    logged only once a file has been skipped."""
    skipped = float(logged_sum(logging_outputs, BAD_AUDIO))
    if skipped:
        metrics.log_scalar_sum(BAD_AUDIO, skipped)
