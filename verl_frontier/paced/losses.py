"""Paced losses: pass-rate-weighted aggregation of per-token distillation divergences (arXiv 2603.11178).

Per problem x the objective is L(x) = w(p̂(x)) L_distill(x) (Paced §3). Over a batch of B samples with
per-token divergences ℓ_{i,t} and response mask m_{i,t}:

    ℓ_i = sum_t m_{i,t} ℓ_{i,t} / sum_t m_{i,t}           (token-mean of sample i)
    L   = sum_i w_i ℓ_i / sum_i w_i                         (:func:`weighted_sequence_loss`)

Pure torch, no verl imports. Shapes: B samples, T response tokens.
"""

from __future__ import annotations

import torch

__all__ = ["per_token_weighted_losses", "select_divergence", "weighted_sequence_loss"]

FORWARD_KL, REVERSE_KL, JSD = 0, 1, 2


def weighted_sequence_loss(
    token_losses: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = sum_i w_i ℓ_i / sum_i w_i over the samples with a non-empty mask (ℓ_i: token-mean of sample i).

    Args:
        token_losses: [B, T] per-token divergences (values at masked-out positions are ignored, even NaN/inf).
        mask: [B, T] response mask (bool or 0/1).
        weights: [B] sample weights >= 0 (e.g. w(p) of the sample's prompt).

    Returns:
        (scalar loss, info). Samples with an empty mask contribute nothing (neither to the numerator nor to
        sum_i w_i). If the remaining weights are all zero the loss is 0 * sum(valid token losses): zero, but
        still attached to the graph (zero gradients, never NaN), and info["zero_weight_batch"] = 1.
        info: "zero_weight_batch", "weight_sum", "num_valid_samples", "effective_sample_size".
    """
    if token_losses.ndim != 2 or mask.shape != token_losses.shape:
        raise ValueError(
            f"token_losses and mask must both be [B, T]; got {tuple(token_losses.shape)}, {tuple(mask.shape)}"
        )
    if weights.shape != token_losses.shape[:1]:
        raise ValueError(f"weights must be [B] = [{token_losses.shape[0]}], got {tuple(weights.shape)}")
    mask = mask.bool()
    weights = weights.to(token_losses.dtype if token_losses.is_floating_point() else torch.float32)
    masked = torch.where(mask, token_losses, torch.zeros_like(token_losses))
    n_tokens = mask.sum(-1)
    valid = n_tokens > 0
    seq_losses = masked.sum(-1) / n_tokens.clamp_min(1).to(masked.dtype)  # [B]
    eff_weights = torch.where(valid, weights, torch.zeros_like(weights)).detach()
    weight_sum = eff_weights.sum()
    zero = bool(weight_sum <= 0)
    if zero:
        loss = masked.sum() * 0.0
    else:
        # zero-weight samples contribute exactly nothing (not 0 * inf = NaN)
        loss = torch.where(eff_weights > 0, eff_weights * seq_losses, torch.zeros_like(seq_losses)).sum() / weight_sum
    w = eff_weights.double()
    sq = float((w * w).sum())
    info = {
        "zero_weight_batch": 1.0 if zero else 0.0,
        "weight_sum": float(weight_sum),
        "num_valid_samples": int(valid.sum()),
        "effective_sample_size": 0.0 if sq == 0 else float(w.sum()) ** 2 / sq,
    }
    return loss, info


def per_token_weighted_losses(token_losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[B, T] token losses times their sample's weight: out[i, t] = w_i ℓ_{i,t}.

    This is the form handed to verl's ``agg_loss(..., loss_agg_mode="seq-mean-token-mean")``, which computes
    (1 / B') sum_i [sum_t m_{i,t} w_i ℓ_{i,t} / sum_t m_{i,t}] = (1 / B') sum_i w_i ℓ_i over the B' samples
    with a non-empty mask (B' = the global batch size under data parallelism). When the weights are
    mean-normalised over those same B' samples (mean w̃ = 1, so sum_i w̃_i = B'; see
    :func:`verl_frontier.paced.weights.normalize_weights`), this equals
    sum_i w̃_i ℓ_i / sum_i w̃_i = :func:`weighted_sequence_loss` (tested in tests/test_paced_weights.py).
    (If every weight is zero, normalize_weights returns zeros and both give 0.)
    """
    if weights.shape != token_losses.shape[:1]:
        raise ValueError(f"weights must be [B] = [{token_losses.shape[0]}], got {tuple(weights.shape)}")
    return token_losses * weights.to(token_losses.dtype).unsqueeze(-1)


def select_divergence(
    forward: torch.Tensor, reverse: torch.Tensor, jsd: torch.Tensor | None, code: torch.Tensor
) -> torch.Tensor:
    """Per-sample choice of divergence: out[i] = forward[i] / reverse[i] / jsd[i] for code[i] = 0 / 1 / 2.

    Args:
        forward, reverse: [B, T]; jsd: [B, T] or None (then no code may be 2).
        code: [B] integer codes (floats are rounded).

    Unselected values never leak into the output (torch.where), even when they are NaN/inf.
    """
    if reverse.shape != forward.shape or (jsd is not None and jsd.shape != forward.shape):
        raise ValueError("forward, reverse and jsd divergences must have the same shape")
    code = torch.as_tensor(code, device=forward.device)
    code = (code.round() if code.is_floating_point() else code).long().reshape(-1)
    if code.shape[0] != forward.shape[0]:
        raise ValueError(f"code must be [B] = [{forward.shape[0]}], got {tuple(code.shape)}")
    if ((code < FORWARD_KL) | (code > JSD)).any():
        raise ValueError(
            f"divergence codes must be 0 (forward_kl), 1 (reverse_kl) or 2 (jsd); got {code.unique().tolist()}"
        )
    if jsd is None and (code == JSD).any():
        raise ValueError("divergence code 2 (jsd) requested but no jsd divergence was computed")
    code = code.view(-1, *([1] * (forward.ndim - 1)))
    out = torch.where(code == REVERSE_KL, reverse, forward)
    if jsd is not None:
        out = torch.where(code == JSD, jsd, out)
    return out
