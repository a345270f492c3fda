"""Gumbel-softmax vector quantizer (vq-wav2vec) with exponential or linear temperature decay."""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.modules import GumbelVectorQuantizer as FairseqGumbelVectorQuantizer

from ..precision import in_weight_precision
from .perplexity import perplexity

GUMBEL_TEMP = (2.0, 0.5, 0.999995)
"""Gumbel temperature (start, end, exponential decay per update): fairseq's vq-wav2vec default
and the paper's 2 -> 0.5."""


def argmax_codes(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(-1)`` (the first maximum on ties); on CPU through numpy, whose kernel is
    faster than torch's there (``docs/benchmarks.md``)."""
    if logits.device.type != "cpu" or logits.dtype != torch.float32:
        return logits.argmax(-1)
    return torch.from_numpy(logits.detach().numpy().argmax(-1))


class GumbelQuantizer(FairseqGumbelVectorQuantizer):
    """fairseq's ``GumbelVectorQuantizer`` (same parameters and init), extended with

    - ``schedule="linear"``: the paper's temperature, linear from ``max_temp`` to ``min_temp``
      over the first ``anneal_updates`` updates, then constant (fairseq only decays
      exponentially: ``max(max_temp * decay ** step, min_temp)``);
    - a frame mask, so padded frames neither get codes that count in the perplexities;
    - codebook lookup as a matmul instead of fairseq's B*T x G x V x D broadcast product.

    The first five arguments are those of :class:`.KmeansQuantizer` too.

    Args:
        dim: input dimension (channels)
        num_vars: number of codewords per group (V)
        groups: number of groups (G); a frame's code is one codeword per group
        combine_groups: whether the groups share one codebook of V codewords
        vq_dim: dimensionality of the quantized vector (the G codewords concatenated)
        temp: temperature as (start, stop, decay); decay is used only by the exponential schedule
        schedule: ``"exponential"`` (fairseq) or ``"linear"`` (the paper)
        anneal_updates: updates the linear schedule takes from start to stop
        activation: activation between the layers of the logit projection (depth > 1 only)
        weight_proj_depth: number of layers of the projection from the input to the G x V logits
        weight_proj_factor: inner dimensionality of that projection, as a multiple of ``dim``
            (depth > 1 only)
    """

    def __init__(
        self,
        dim: int,
        num_vars: int,
        groups: int,
        combine_groups: bool,
        vq_dim: int,
        temp: Tuple[float, float, float] = GUMBEL_TEMP,
        schedule: str = "exponential",
        anneal_updates: int = 0,
        activation: nn.Module = nn.GELU(),
        weight_proj_depth: int = 1,
        weight_proj_factor: int = 1,
    ):
        super().__init__(
            dim=dim, num_vars=num_vars, temp=temp, groups=groups, combine_groups=combine_groups,
            vq_dim=vq_dim, time_first=False, activation=activation,
            weight_proj_depth=weight_proj_depth, weight_proj_factor=weight_proj_factor,
        )
        if schedule not in ("exponential", "linear"):
            raise ValueError(f"unknown temperature schedule {schedule!r}")
        if schedule == "linear" and anneal_updates <= 0:
            raise ValueError("the linear temperature schedule needs anneal_updates > 0 (max_update)")
        self.schedule = schedule
        self.anneal_updates = anneal_updates

    def set_num_updates(self, num_updates):
        if self.schedule == "exponential":
            super().set_num_updates(num_updates)
            return
        progress = min(num_updates / self.anneal_updates, 1.0)
        self.curr_temp = self.max_temp + (self.min_temp - self.max_temp) * progress

    def _logits(self, x):
        """features ``B x C x T`` -> code logits ``B*T x G x V``, in fp32."""
        x = x.transpose(1, 2)  # B x T x C
        bsz, tsz, fsz = x.shape
        logits = in_weight_precision(self.weight_proj, x.reshape(-1, fsz))
        return logits.view(bsz * tsz, self.groups, -1)

    def codes(self, x, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features ``B x C x T`` -> ``B x T x G`` long: the argmax code of each group (the
        evaluation codes), without the quantized features and statistics of :meth:`forward`."""
        bsz, _, tsz = x.shape
        return argmax_codes(self._logits(x)).view(bsz, tsz, self.groups)

    def forward(self, x, produce_targets=False, frame_mask: Optional[torch.Tensor] = None):
        """Quantizes every frame.

        Args:
            x (Tensor): features, ``B x C x T``.
            produce_targets (bool): also return the codes.
            frame_mask (Tensor, optional): ``B x T`` bool, True on valid frames.

        Returns:
            dict: ``x`` the quantized features (``B x vq_dim x T``), ``targets`` the codes
            (``B x T x G`` long, with ``produce_targets``), ``code_perplexity`` (of the hard codes)
            and ``prob_perplexity`` (of the mean softmax) over the valid frames, the counts they
            come from (``code_counts``: hard codes, ``soft_code_counts``: summed softmax; G x V,
            no gradient; summed over batches they give the perplexities of the union), ``temp``,
            and ``num_vars``: under fairseq's name, the number of codewords of all groups, G x V
            (the diversity loss is ``num_vars - prob_perplexity``).
        """
        result = {"num_vars": self.num_vars * self.groups}
        bsz, _, tsz = x.shape
        logits = self._logits(x)

        valid = logits if frame_mask is None else logits[frame_mask.reshape(-1)]
        with torch.no_grad():
            k = argmax_codes(logits)
            hard_x = torch.zeros_like(logits).scatter_(-1, k.unsqueeze(-1), 1.0)
            valid_k = k if frame_mask is None else k[frame_mask.reshape(-1)]
            counts = F.one_hot(valid_k, self.num_vars).float().sum(dim=0)
            result["code_counts"] = counts
            result["code_perplexity"] = perplexity(counts / len(valid_k))
        probs = torch.softmax(valid.float(), dim=-1)
        result["prob_perplexity"] = perplexity(probs.mean(dim=0))
        result["soft_code_counts"] = probs.detach().sum(dim=0)
        result["temp"] = self.curr_temp

        if self.training:
            onehot = F.gumbel_softmax(
                logits.view(bsz * tsz * self.groups, -1).float(), tau=self.curr_temp, hard=self.hard
            ).type_as(logits).view(bsz * tsz, self.groups, -1)
        else:
            onehot = hard_x
        if produce_targets:
            # in evaluation the one-hot codes are those of k: no second argmax
            codes = onehot.argmax(dim=-1) if self.training else k
            result["targets"] = codes.view(bsz, tsz, self.groups).detach()

        codebook = self.vars.view(-1, self.num_vars, self.vars.size(-1))  # G' x V x D
        codebook = codebook.expand(self.groups, -1, -1)
        q = torch.einsum("ngv,gvd->ngd", onehot, codebook).reshape(bsz, tsz, -1)
        result["x"] = q.transpose(1, 2)
        return result
