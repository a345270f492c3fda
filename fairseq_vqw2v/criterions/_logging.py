"""What the criteria's ``reduce_metrics`` share."""

from typing import Dict, List


def logged_sum(logging_outputs: List[Dict], key: str):
    """``key`` summed over ``logging_outputs`` (0 where absent). Summed across workers, fairseq
    hands over tensors (count histograms stay tensors; scalars need ``float`` before ``round``)."""
    return sum(log.get(key, 0) for log in logging_outputs)
