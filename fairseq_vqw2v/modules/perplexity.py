"""Codebook perplexity: how many codewords a distribution over them effectively uses."""

import torch


def perplexity(probs: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """exp(entropy) of each distribution over the last axis, summed over the others.

    The quantizers' ``code_perplexity`` (hard codes) and ``prob_perplexity`` (mean softmax) and the
    usage report's perplexities are all this, as in fairseq's quantizers: for G groups of V
    codewords it lies between G (every group uses one codeword) and G x V (uniform use).

    Args:
        probs (Tensor): distributions, ``... x V`` (e.g. ``G x V``, one per group).
        eps (float): added inside the log so that unused codewords (p = 0) count as 0, as
            fairseq's quantizers do; 0 gives the exact value when every p > 0.

    Returns:
        Tensor: a scalar.
    """
    return torch.exp(-torch.sum(probs * torch.log(probs + eps), dim=-1)).sum()
