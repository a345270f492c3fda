"""Online k-means vector quantizer of vq-wav2vec (straight-through gradient)."""

from typing import Optional

import torch
import torch.nn as nn

from ..precision import in_weight_precision
from .masked_group_norm import MaskedGroupNorm
from .perplexity import perplexity


class KmeansQuantizer(nn.Module):
    """Grouped 1x1 conv + GroupNorm(G), then the nearest of V codewords per group by L2.

    Same parameters as fairseq's ``KmeansVectorQuantizer`` (``embedding`` V x G' x D,
    ``projection`` conv, ``norm``) and the same outputs but ``num_vars`` (see :meth:`forward`);
    distances come from ``torch.cdist`` (exact differences, no V x B x T x G x D tensor), and an
    optional frame mask keeps padded frames out of the perplexity and the loss.

    ``kmeans_loss`` = ||sg(z) - z_q||^2 + gamma * ||z - sg(z_q)||^2 (mean squared error).

    The first five arguments are those of :class:`.GumbelQuantizer` too.

    Args:
        dim: input dimension (channels)
        num_vars: number of codewords per group (V)
        groups: number of groups (G); a frame's code is one codeword per group
        combine_groups: whether the groups share one codebook of V codewords
        vq_dim: dimensionality of the quantized vector (the G codewords concatenated); must
            equal ``dim``, as in fairseq, whose projection keeps the input dimension
        gamma: weight of the commitment loss
    """

    def __init__(
        self,
        dim: int,
        num_vars: int,
        groups: int,
        combine_groups: bool,
        vq_dim: int,
        gamma: float = 0.25,
    ):
        super().__init__()
        if vq_dim % groups != 0:
            raise ValueError(f"vq_dim {vq_dim} must be divisible by groups {groups}")
        if vq_dim != dim:
            raise ValueError(f"k-means quantizer needs vq_dim == input dim ({vq_dim} != {dim})")
        self.groups = groups
        self.combine_groups = combine_groups
        self.num_vars = num_vars
        self.var_dim = vq_dim // groups
        self.gamma = gamma
        self.embedding = nn.Parameter(
            0.01 * torch.randn(num_vars, 1 if combine_groups else groups, self.var_dim)
        )
        self.projection = nn.Conv1d(dim, dim, kernel_size=1, groups=groups, bias=False)
        self.norm = MaskedGroupNorm(groups, dim)

    @property
    def expand_embedding(self) -> torch.Tensor:
        """V x G x D codebook."""
        return self.embedding.expand(self.num_vars, self.groups, self.var_dim)

    def forward_idx(self, x):
        res = self.forward(x, produce_targets=True)
        return res["x"], res["targets"]

    def _nearest(self, x, frame_mask):
        """(ze ``B x vq_dim x T``, the nearest codewords' indices ``B x T x G``)."""
        bsz, _, tsz = x.shape
        lengths = None if frame_mask is None else frame_mask.sum(1)
        # the codes are the nearest codewords to ze (the norm computes in fp32 itself)
        ze = self.norm(in_weight_precision(self.projection, x), lengths)
        ze_groups = ze.view(bsz, self.groups, self.var_dim, tsz).permute(1, 0, 3, 2)  # G x B x T x D
        codebook = self.expand_embedding.transpose(0, 1)  # G x V x D
        dist = torch.cdist(
            ze_groups.reshape(self.groups, bsz * tsz, self.var_dim).float(),
            codebook.float(),
            compute_mode="donot_use_mm_for_euclid_dist",
        )
        return ze, dist.argmin(dim=-1).view(self.groups, bsz, tsz).permute(1, 2, 0)

    def codes(self, x, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features ``B x C x T`` -> ``B x T x G`` long: the nearest codeword of each group,
        without the quantized features and statistics of :meth:`forward`."""
        return self._nearest(x, frame_mask)[1]

    def forward(self, x, produce_targets=False, frame_mask: Optional[torch.Tensor] = None):
        """Quantizes every frame.

        Args:
            x (Tensor): features, ``B x C x T``.
            produce_targets (bool): also return the codes.
            frame_mask (Tensor, optional): ``B x T`` bool, True on valid frames.

        Returns:
            dict: ``x`` the quantized features (``B x vq_dim x T``, straight-through gradient),
            ``targets`` the codes (``B x T x G`` long, with ``produce_targets``),
            ``code_perplexity`` over the valid frames and the G x V ``code_counts`` it comes
            from (as :class:`.GumbelQuantizer`'s), ``kmeans_loss``, and ``num_vars``: as
            :class:`.GumbelQuantizer`'s, the number of codewords of all groups, G x V (fairseq's
            k-means quantizer reports V there).
        """
        result = {"num_vars": self.num_vars * self.groups}
        bsz, _, tsz = x.shape
        ze, idx = self._nearest(x, frame_mask)
        zq = torch.stack(
            [self.expand_embedding[idx[..., g], g] for g in range(self.groups)], dim=-2
        ).view(bsz, tsz, -1).transpose(1, 2)
        result["x"] = zq.detach() + (ze - ze.detach())

        with torch.no_grad():
            valid_idx = idx.reshape(-1, self.groups)
            if frame_mask is not None:
                valid_idx = valid_idx[frame_mask.reshape(-1)]
            counts = nn.functional.one_hot(valid_idx, self.num_vars).float().sum(dim=0)
            result["code_counts"] = counts
            result["code_perplexity"] = perplexity(counts / len(valid_idx))
        if produce_targets:
            result["targets"] = idx

        ze, zq = ze.float(), zq.float()
        if frame_mask is None:
            latent = (zq - ze.detach()).square().mean()
            commitment = (ze - zq.detach()).square().mean()
        else:
            mask = frame_mask.unsqueeze(1).float()
            denom = mask.sum() * ze.size(1)
            latent = ((zq - ze.detach()).square() * mask).sum() / denom
            commitment = ((ze - zq.detach()).square() * mask).sum() / denom
        result["kmeans_loss"] = latent + self.gamma * commitment
        return result
