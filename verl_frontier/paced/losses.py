"""Paced losses: pass-rate-weighted aggregation of per-token distillation divergences (arXiv 2603.11178).

Per problem x the objective is L(x) = w(p̂(x)) L_distill(x) (Paced §3). Over a batch of B samples with
per-token divergences ℓ_{i,t} and response mask m_{i,t}:

    ℓ_i = sum_t m_{i,t} ℓ_{i,t} / sum_t m_{i,t}           (token-mean of sample i)
    L   = sum_i w_i ℓ_i / sum_i w_i                         (:func:`weighted_sequence_loss`)

Pure torch, no verl imports. Shapes: B samples, T response tokens.
"""

from __future__ import annotations

import torch

__all__ = ["AGG_MODES", "aggregation_scale", "per_token_weighted_losses", "select_divergence", "weighted_sequence_loss"]

#: verl's ``loss_agg_mode`` values (``verl.trainer.ppo.core_algos.agg_loss``)
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")

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

    Times the row factors of :func:`aggregation_scale` this is what is handed to verl's ``agg_loss``: with
    the weights normalised to mean 1 over the G rows of the global batch and 0 on empty rows
    (sum_i w̃_i = G), any ``loss_agg_mode`` then gives (1 / G) sum_i w̃_i ℓ_i = sum_i w_i ℓ_i / sum_i w_i over
    the rows with at least one token = :func:`weighted_sequence_loss` (tested in tests/test_numerics.py).
    (If every weight is zero, normalize_weights returns zeros and both give 0.)
    """
    if weights.shape != token_losses.shape[:1]:
        raise ValueError(f"weights must be [B] = [{token_losses.shape[0]}], got {tuple(weights.shape)}")
    return token_losses * weights.to(token_losses.dtype).unsqueeze(-1)


def aggregation_scale(
    mask: torch.Tensor,
    loss_agg_mode: str,
    dp_size: int | None = None,
    batch_num_tokens=None,
    global_batch_size=None,
    loss_scale_factor=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """[B, 1] row factors k_i that turn verl's aggregation, whatever its mode, into Paced's per-sample mean.

    verl's ``agg_loss(X, mask, mode, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor)`` on
    X_{i,t} = k_i Y_{i,t} then returns, for every mode,

        dp_size * sum_{i: n_i > 0} (sum_t m_{i,t} Y_{i,t} / n_i) / G,      n_i = sum_t m_{i,t}

    with G = ``global_batch_size`` (the rows of the global mini-batch, empty ones included), or B (this
    micro-batch's rows) when it is None. With Y_{i,t} = w̃_i ℓ_{i,t} and weights normalised to mean 1 over
    the G rows with 0 on empty rows (sum_i w̃_i = G), the data-parallel mean of the per-rank losses is
    sum_i w_i ℓ_i / sum_i w_i over the rows with at least one token (ℓ_i the token-mean of row i), Paced's
    objective (:func:`weighted_sequence_loss`), independent of the mode. Per mode (N = ``batch_num_tokens``,
    or sum(mask) when None; G' = the row count verl divides by: ``global_batch_size``, or the number of
    non-empty rows of the micro-batch when None; F = ``loss_scale_factor``, or T when None)::

        token-mean               k_i = N / (n_i G)
        token-sum                k_i = 1 / (n_i G)
        seq-mean-token-sum       k_i = G' / (n_i G)
        seq-mean-token-sum-norm  k_i = G' F / (n_i G)
        seq-mean-token-mean      k_i = (n_i + 1e-8) / n_i * G' / G     (verl divides by n_i + 1e-8)

    The weights are normalised over the estimator's batch (one training step), so the objective is exact
    per optimizer step when the step is one mini-batch; with several mini-batches per step, each one is
    sum_{i in mini-batch} w̃_i ℓ_i / G, the step's weights unchanged (sum_i w̃_i = G only on average).
    Rows with n_i = 0 get the finite value of n_i = 1 (they are masked out anyway). ``dtype``: that of the
    loss matrix (the 1e-8 of seq-mean-token-mean is formed in it, as verl does). ``dp_size`` is accepted so
    that verl's ``global_batch_info`` can be passed as it is; k_i does not depend on it.
    """
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode must be one of {AGG_MODES}, got {loss_agg_mode!r}")
    if mask.ndim != 2:
        raise ValueError(f"mask must be [B, T], got {tuple(mask.shape)}")
    mask_f = mask.to(torch.float64)
    n = mask_f.sum(-1, keepdim=True)  # [B, 1]
    n_safe = n.clamp_min(1.0)
    rows = float(global_batch_size) if global_batch_size is not None else float(mask.shape[0])
    verl_rows = float(global_batch_size) if global_batch_size is not None else float((n > 0).sum())
    if loss_agg_mode == "token-mean":
        tokens = float(batch_num_tokens) if batch_num_tokens is not None else float(mask_f.sum())
        scale = tokens / (n_safe * rows)
    elif loss_agg_mode == "token-sum":
        scale = 1.0 / (n_safe * rows)
    elif loss_agg_mode == "seq-mean-token-sum":
        scale = verl_rows / (n_safe * rows)
    elif loss_agg_mode == "seq-mean-token-sum-norm":
        factor = float(loss_scale_factor) if loss_scale_factor is not None else float(mask.shape[-1])
        scale = verl_rows * factor / (n_safe * rows)
    else:  # seq-mean-token-mean
        scale = (n.to(dtype) + 1e-8).to(torch.float64) / n_safe * (verl_rows / rows)
    if rows <= 0:
        scale = torch.zeros_like(n)
    return scale.to(dtype)


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
