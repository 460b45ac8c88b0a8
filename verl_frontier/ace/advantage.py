"""ACE: Asymmetric Confidence-aware Error penalty (arXiv 2602.21420). Pure torch, no verl.

For rollout i with response tokens y_{i,1..T_i} the *confidence shift* is the length-normalised log-ratio of
the rollout policy to the reference policy (paper §3, stop-gradient)::

    c_i = (1/T_i) Σ_t [log π_θold(y_{i,t}) − log π_ref(y_{i,t})]          (reduction="mean", default)
    c_i =         Σ_t [log π_θold(y_{i,t}) − log π_ref(y_{i,t})]          (reduction="sum", the abstract's form)

and a rollout the base estimator marks wrong (sequence advantage A_i < 0) gets its advantage scaled::

    A_i' = A_i · (1 + α · softplus(c_i))       if A_i < 0               (modulation="softplus", default)
    A_i' = A_i · (1 + α · relu(c_i))           if A_i < 0               (modulation="relu", ablation)
    A_i' = A_i                                 otherwise

so overconfident errors (c_i > 0: the policy has moved *towards* a wrong answer) get a stronger push down.
α = 0 gives factor 1 everywhere, i.e. the base estimator's advantages unchanged (bit for bit: x · 1.0 = x).

Shapes: B rollouts, T response positions (padded). Token tensors are (B, T); per-rollout tensors are (B,).
Everything is vectorised (masked sums), no loop over groups or rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from verl_frontier.ace.config import MODULATIONS, REDUCTIONS, AceConfig  # noqa: F401  (AceConfig: re-exported)


def confidence_shift(
    old_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """c_i over response tokens (module docstring). (B, T), (B, T), (B, T) -> (B,) float32 (float64 inputs: float64).

    An empty response (T_i = 0) gets c_i = 0.
    """
    dtype = torch.promote_types(old_log_probs.dtype, torch.float32)
    return _confidence_shift(old_log_probs, ref_log_probs, _float_mask(response_mask, dtype), reduction)


def _float_mask(response_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return response_mask if response_mask.dtype == dtype else response_mask.to(dtype)


def _confidence_shift(old, ref, mask_f, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    diff = old.to(mask_f.dtype) - ref.to(mask_f.dtype)  # difference first: no cancellation between long sums
    total = torch.einsum("bt,bt->b", diff, mask_f)  # masked row sum as a batched dot product (no mask product)
    if reduction == "sum":
        return total
    return total / mask_f.sum(dim=-1).clamp(min=1.0)


def modulation_factor(c: torch.Tensor, alpha: float, modulation: str = "softplus") -> torch.Tensor:
    """1 + α · g(c) with g = softplus or relu. (B,) -> (B,)."""
    if modulation == "softplus":
        g = F.softplus(c)
    elif modulation == "relu":
        g = torch.relu(c)
    else:
        raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
    return 1.0 + float(alpha) * g


def sequence_advantage(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-rollout advantage: mean of the token advantages over the response (B,). For outcome estimators
    (grpo, rloo, ...) the advantage is constant over a response, so this is that constant."""
    mask = response_mask.to(advantages.dtype)
    return (advantages * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)


@dataclass
class AceResult:
    """advantages: (B, T) modulated; c, factor: (B,); wrong: (B,) bool, rollouts with base advantage < 0.
    ``factor`` is the multiplier applied (1 for rollouts that are not wrong)."""

    advantages: torch.Tensor
    c: torch.Tensor
    factor: torch.Tensor
    wrong: torch.Tensor


def ace_advantages(
    base_advantages: torch.Tensor,
    old_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    alpha: float = 1.0,
    modulation: str = "softplus",
    reduction: str = "mean",
    inplace: bool = False,
    chunk_elements: int = 1 << 18,
) -> AceResult:
    """A' = A · (1 + α g(c)) on rollouts with A < 0, A elsewhere (module docstring).

    Args:
        base_advantages: (B, T) the base estimator's advantages (zero outside the response).
        old_log_probs: (B, T) log π_θold of the sampled tokens.
        ref_log_probs: (B, T) log π_ref of the sampled tokens.
        response_mask: (B, T) 1 on response tokens.
        inplace: scale ``base_advantages`` in place (the returned ``advantages`` is then the same tensor; a
            ``returns`` tensor that aliases it, as verl's outcome estimators return, follows).
        chunk_elements: rows are processed in blocks of about this many (B, T) elements, so every pass over a
            block (mask cast, log-ratio, masked sums, scaling) hits cache: one trip through memory per input.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    dtype = torch.promote_types(old_log_probs.dtype, torch.float32)
    rows, width = old_log_probs.shape
    block = max(1, chunk_elements // max(width, 1))
    device = old_log_probs.device
    c = torch.empty(rows, dtype=dtype, device=device)
    factor = torch.empty(rows, dtype=dtype, device=device)
    wrong = torch.empty(rows, dtype=torch.bool, device=device)
    advantages = base_advantages if inplace else torch.empty_like(base_advantages)
    for start in range(0, rows, block):
        part = slice(start, start + block)
        mask_f = _float_mask(response_mask[part], dtype)
        c[part] = _confidence_shift(old_log_probs[part], ref_log_probs[part], mask_f, reduction)
        # sign of the per-rollout masked advantage sum = sign of its mean (positive denominator)
        wrong[part] = torch.einsum("bt,bt->b", base_advantages[part].to(dtype), mask_f) < 0
        factor[part] = torch.where(wrong[part], modulation_factor(c[part], alpha, modulation), 1.0)
        torch.mul(base_advantages[part], factor[part].to(base_advantages.dtype).unsqueeze(-1), out=advantages[part])
    return AceResult(advantages=advantages, c=c, factor=factor, wrong=wrong)


def ace_metrics(result: AceResult, prefix: str = "ace/") -> dict[str, float]:
    """Step metrics. Over wrong rollouts: mean / max c, fraction with c > 0 (overconfident errors), mean
    modulation factor. With no wrong rollout in the batch the c statistics are 0 and the factor 1."""
    wrong = result.wrong
    n_wrong = int(wrong.sum().item())
    c_wrong = result.c[wrong]
    out = {
        "wrong_frac": n_wrong / max(int(wrong.numel()), 1),
        "wrong_count": float(n_wrong),
        "conf_shift_mean": result.c.mean().item() if result.c.numel() else 0.0,
        "wrong_conf_shift_mean": c_wrong.mean().item() if n_wrong else 0.0,
        "wrong_conf_shift_max": c_wrong.max().item() if n_wrong else 0.0,
        "wrong_overconfident_frac": (c_wrong > 0).float().mean().item() if n_wrong else 0.0,
        "wrong_modulation_factor_mean": result.factor[wrong].mean().item() if n_wrong else 1.0,
    }
    return {prefix + key: float(value) for key, value in out.items()}
