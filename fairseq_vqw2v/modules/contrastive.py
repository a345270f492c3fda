"""Contrastive future-step prediction of wav2vec: step projections, negative sampling, scoring."""

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from .masked_group_norm import frame_mask


class ContrastivePredictor(nn.Module):
    """Scores, for each step k = 1..S, the context at frame t against the target frame t + offset + k - 1
    and against K negatives, in exactly the output layout of fairseq's ``Wav2VecPredictionsModel``.

    fairseq concatenates targets and negatives into a (K + 1) x B x C x T copy and scores every
    step on slices of it. Here the negatives are gathered once as B x T x K x C, the step
    projections are shifted so that row u holds every prediction aimed at target frame u, and one
    batched matmul per frame scores all steps against all candidates; only the small score tensors
    are rearranged into fairseq's order. Same numbers, far less memory traffic.

    Negatives come from the same utterance (``num_negatives``) and/or any utterance of the batch
    (``cross_sample_negatives``). Without ``lengths`` they are drawn with the same RNG calls as
    fairseq, so ``torch.manual_seed`` reproduces the reference's negatives (including its quirk of
    excluding frame ``j // K`` of the flat draw index rather than the target frame itself). With
    ``lengths`` they come only from valid frames, and predictions whose target frame is padding get
    weight 0 (BCE) or label -100 (InfoNCE, cross entropy's ignore index).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        prediction_steps: int,
        num_negatives: int,
        cross_sample_negatives: int,
        sample_distance: Optional[int],
        dropout: float,
        offset: int,
        balanced_classes: bool,
        infonce: bool,
    ):
        super().__init__()
        if num_negatives + cross_sample_negatives <= 0:
            raise ValueError("need num_negatives > 0 or cross_sample_negatives > 0")
        self.num_negatives = num_negatives
        self.cross_sample_negatives = cross_sample_negatives
        self.sample_distance = sample_distance
        # a 1 x S transposed conv is fairseq's parameterisation of S linear step projections
        self.project_to_steps = nn.ConvTranspose2d(in_dim, out_dim, (1, prediction_steps))
        self.dropout = nn.Dropout(p=dropout)
        self.offset = offset
        self.balanced_classes = balanced_classes
        self.infonce = infonce

    def sample_negatives(
        self, bsz: int, tsz: int, lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """B x T x (K + K_cross) indices into the B*T frames of the batch (row b*T + t)."""
        n_neg, n_cross = self.num_negatives, self.cross_sample_negatives
        high = tsz if self.sample_distance is None else min(tsz, self.sample_distance)
        if high <= 1:
            raise ValueError(f"cannot sample negatives from {tsz} frame(s)")
        device = self.project_to_steps.weight.device

        def exclusion(n):
            return torch.arange(tsz, device=device).unsqueeze(-1).expand(-1, n).flatten()

        draws = []
        if lengths is None:
            # fairseq draws (and discards) one extra batch of indices first: kept for equal RNG state
            torch.randint(low=0, high=high, size=(bsz, n_neg * tsz))
            if n_neg > 0:
                neg = torch.randint(low=0, high=high - 1, size=(bsz, n_neg * tsz)).to(device)
                neg[neg >= exclusion(n_neg)] += 1
                draws.append(neg + torch.arange(bsz, device=device).unsqueeze(1) * high)
            if n_cross > 0:
                cross = torch.randint(low=0, high=bsz * tsz - 1, size=(bsz, n_cross * tsz))
                cross = cross.to(device)
                cross[cross >= exclusion(n_cross)] += 1
                draws.append(cross)
        else:
            highs = lengths if self.sample_distance is None else lengths.clamp(max=self.sample_distance)
            if bool((highs <= 1).any()):
                raise ValueError(
                    f"cannot sample negatives: an utterance has {int(lengths.min())} valid frame(s)"
                )
            if n_neg > 0:
                rand = torch.rand(bsz, n_neg * tsz, device=device)
                neg = (rand * (highs - 1).unsqueeze(1)).long()
                neg[neg >= exclusion(n_neg)] += 1
                draws.append(neg + torch.arange(bsz, device=device).unsqueeze(1) * tsz)
            if n_cross > 0:
                valid = frame_mask(lengths, tsz).flatten().nonzero().squeeze(1)
                pick = (torch.rand(bsz, n_cross * tsz, device=device) * valid.numel()).long()
                draws.append(valid[pick])
        return torch.cat(draws, dim=1).view(bsz, n_neg + n_cross, tsz).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]:
        """x: B x C_ctx x T context; y: B x C x T targets; lengths: B valid frames (None = all).

        Returns fairseq's ``(cpc_logits, cpc_targets)``: BCE -> flat logits ordered
        (step, copy, B, T) and 0/1 labels (a tuple (labels, weights) with balanced classes or
        padding); InfoNCE -> N x (K + 1) logits (positive first) and N class labels.
        """
        bsz, _, tsz = x.shape
        dim = y.size(1)
        max_steps = self.project_to_steps.weight.size(-1)
        steps = min(max_steps, tsz - self.offset)
        if steps <= 0:
            raise ValueError(f"{tsz} frames are too few to predict at offset {self.offset}")

        weight = self.project_to_steps.weight[:, :, 0, :].permute(0, 2, 1)  # C_ctx x S x C
        proj = x.transpose(1, 2).matmul(weight.reshape(weight.size(0), -1))
        proj = self.dropout(proj.view(bsz, tsz, max_steps, dim) + self.project_to_steps.bias)

        neg_idx = self.sample_negatives(bsz, tsz, lengths)
        n_cand = neg_idx.size(-1)

        # row j of `shifted` collects every prediction aimed at target frame offset + j
        n_tgt = tsz - self.offset
        shifted = proj.new_zeros(bsz, n_tgt, steps, dim)
        for i in range(steps):
            shifted[:, i:, i] = proj[:, : n_tgt - i, i]
        shifted = shifted.view(bsz * n_tgt, steps, dim)

        y_frames = y.transpose(1, 2).reshape(bsz * tsz, dim)
        positives = y_frames.view(bsz, tsz, dim)[:, self.offset :].reshape(bsz * n_tgt, dim, 1)
        negatives = y_frames[neg_idx[:, self.offset :].reshape(-1)].view(bsz * n_tgt, n_cand, dim)
        pos_scores = torch.bmm(shifted, positives).view(bsz, n_tgt, steps, 1)
        neg_scores = torch.bmm(shifted, negatives.transpose(1, 2)).view(bsz, n_tgt, steps, n_cand)
        scores = torch.cat([pos_scores, neg_scores], dim=-1)  # B x T' x S x (K + 1)

        valid = None if lengths is None else frame_mask(lengths, tsz)[:, self.offset :]
        logits, labels, weights = [], [], []
        for i in range(steps):
            step = scores[:, i:, i]  # B x (T' - i) x (K + 1)
            step_valid = None if valid is None else valid[:, i:]
            if self.infonce:
                logits.append(step.transpose(0, 1).reshape(-1, n_cand + 1))
                step_labels = step.new_zeros(step.shape[:2], dtype=torch.long)
                if step_valid is not None:
                    step_labels[~step_valid] = -100
                labels.append(step_labels.transpose(0, 1).flatten())
                continue
            logits.append(step.permute(2, 0, 1).flatten())
            step_labels = step.new_zeros(n_cand + 1, *step.shape[:2])
            step_labels[0] = 1.0
            labels.append(step_labels.flatten())
            if self.balanced_classes or step_valid is not None:
                step_weights = torch.ones_like(step_labels)
                if self.balanced_classes:
                    step_weights[1:] = 1 / self.num_negatives
                if step_valid is not None:
                    step_weights = step_weights * step_valid.unsqueeze(0)
                weights.append(step_weights.flatten())

        logits, labels = torch.cat(logits), torch.cat(labels)
        if weights:
            return logits, (labels, torch.cat(weights))
        return logits, labels
