"""Gumbel-softmax vector quantizer (vq-wav2vec) with exponential or linear temperature decay."""

from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.modules import GumbelVectorQuantizer as FairseqGumbelVectorQuantizer


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """G x V distributions -> sum over groups of exp(entropy)."""
    return torch.exp(-torch.sum(probs * torch.log(probs + 1e-7), dim=-1)).sum()


class GumbelQuantizer(FairseqGumbelVectorQuantizer):
    """fairseq's ``GumbelVectorQuantizer`` (same parameters and init), extended with

    - ``schedule="linear"``: the paper's temperature, linear from ``max_temp`` to ``min_temp``
      over the first ``anneal_updates`` updates, then constant (fairseq only decays
      exponentially: ``max(max_temp * decay ** step, min_temp)``);
    - a frame mask, so padded frames neither get codes that count in the perplexities;
    - codebook lookup as a matmul instead of fairseq's B*T x G x V x D broadcast product.

    Input B x C x T (``time_first=False``); output ``x`` B x vq_dim x T.
    """

    def __init__(self, *args, schedule: str = "exponential", anneal_updates: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
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

    def forward(self, x, produce_targets=False, frame_mask: Optional[torch.Tensor] = None):
        """x: B x C x T (or B x T x C if time_first); frame_mask: B x T bool, True = valid."""
        result = {"num_vars": self.num_vars * self.groups}
        if not self.time_first:
            x = x.transpose(1, 2)
        bsz, tsz, fsz = x.shape
        logits = self.weight_proj(x.reshape(-1, fsz)).view(bsz * tsz, self.groups, -1)

        valid = logits if frame_mask is None else logits[frame_mask.reshape(-1)]
        with torch.no_grad():
            k = logits.argmax(-1)
            hard_x = torch.zeros_like(logits).scatter_(-1, k.unsqueeze(-1), 1.0)
            valid_k = k if frame_mask is None else k[frame_mask.reshape(-1)]
            counts = F.one_hot(valid_k, self.num_vars).float().mean(dim=0)
            result["code_perplexity"] = perplexity(counts)
        avg_probs = torch.softmax(valid.float(), dim=-1).mean(dim=0)
        result["prob_perplexity"] = perplexity(avg_probs)
        result["temp"] = self.curr_temp

        if self.training:
            onehot = F.gumbel_softmax(
                logits.view(bsz * tsz * self.groups, -1).float(), tau=self.curr_temp, hard=self.hard
            ).type_as(logits).view(bsz * tsz, self.groups, -1)
        else:
            onehot = hard_x
        if produce_targets:
            result["targets"] = onehot.argmax(dim=-1).view(bsz, tsz, self.groups).detach()

        codebook = self.vars.view(-1, self.num_vars, self.vars.size(-1))  # G' x V x D
        codebook = codebook.expand(self.groups, -1, -1)
        q = torch.einsum("ngv,gvd->ngd", onehot, codebook).reshape(bsz, tsz, -1)
        if not self.time_first:
            q = q.transpose(1, 2)
        result["x"] = q
        return result
