"""Paced pass-rate weights (arXiv 2603.11178, §3, Eq. 3): w(p) = p^alpha (1 - p)^beta.

p is the student's empirical pass rate on a prompt, estimated from its n >= 2 rollouts of that prompt; the
distillation loss of every sample of the prompt is multiplied by w(p) (L = w(p̂(x)) L_distill(x)). The paper's
default is alpha = beta = 1 (w = p (1 - p)): prompts the student always (p = 1) or never (p = 0) solves get
weight 0. alpha = beta = 0 is uniform distillation (0^0 = 1). The kernel peaks at p* = alpha / (alpha + beta)
with w(p*) = alpha^alpha beta^beta / (alpha + beta)^(alpha + beta) (:func:`max_beta_kernel_weight`).

Shapes: B = number of samples (rollouts) in the batch. Pure torch / numpy, no verl imports.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "PassRateEMA",
    "beta_kernel_weight",
    "effective_sample_size",
    "group_pass_rates",
    "max_beta_kernel_weight",
    "normalize_weights",
    "pass_rate_histogram",
]

ROLLOUT_N_KEY = "actor_rollout_ref.rollout.n"


def _check_exponents(alpha: float, beta: float) -> tuple[float, float]:
    alpha, beta = float(alpha), float(beta)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"Paced weight exponent {name} must be a finite number >= 0, got {value}")
    return alpha, beta


def beta_kernel_weight(p, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """w(p) = p^alpha (1 - p)^beta, elementwise, with 0^0 = 1.

    Args:
        p: pass rates in [0, 1] (tensor, array or float), any shape.
        alpha, beta: exponents >= 0 (ValueError naming the exponent otherwise).

    Returns:
        float tensor of p's shape (float64 input stays float64, else float32).
    """
    alpha, beta = _check_exponents(alpha, beta)
    p = torch.as_tensor(p)
    p = p.to(torch.float64 if p.dtype == torch.float64 else torch.float32)
    if torch.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("pass rates p must lie in [0, 1]")
    # torch.pow(0, 0) == 1 and torch.pow(0, a > 0) == 0: exactly the 0^0 = 1 convention
    return torch.pow(p, alpha) * torch.pow(1.0 - p, beta)


def max_beta_kernel_weight(alpha: float = 1.0, beta: float = 1.0) -> float:
    """max_p w(p) = alpha^alpha beta^beta / (alpha + beta)^(alpha + beta) (= 1 for alpha = beta = 0)."""
    alpha, beta = _check_exponents(alpha, beta)
    if alpha + beta == 0:
        return 1.0
    # 0^0 = 1 for the factor whose exponent is 0
    return (alpha**alpha) * (beta**beta) / (alpha + beta) ** (alpha + beta)


def _group_index(group_ids, size: int) -> np.ndarray:
    """Dense group index [B] (0..G-1) for arbitrary hashable ids."""
    if isinstance(group_ids, np.ndarray):
        ids = group_ids
    else:  # keep each id as the Python object it is (np.asarray([7, "7"]) would turn both into "7")
        items = list(group_ids)
        ids = np.empty(len(items), dtype=object)
        ids[:] = items
    if ids.ndim != 1 or len(ids) != size:
        raise ValueError(f"group_ids must be a 1-D sequence of length {size} (one id per sample), got {ids.shape}")
    try:
        _, inverse = np.unique(ids, return_inverse=True)
    except TypeError:  # mixed, unorderable ids (e.g. ints and strings in an object array): factorise by hash
        mapping: dict[Hashable, int] = {}
        inverse = np.fromiter((mapping.setdefault(x, len(mapping)) for x in ids), dtype=np.int64, count=size)
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def group_pass_rates(scores: torch.Tensor, group_ids, threshold: float = 0.0) -> torch.Tensor:
    """Per-sample pass rate of the sample's group: p_i = mean_{j in group(i)} [score_j > threshold].

    Args:
        scores: [B] sequence-level scores (e.g. token_level_rewards.sum(-1)).
        group_ids: [B] sequence / np.ndarray of hashables (verl's ``uid``: one group per prompt).
        threshold: a rollout passes when its score > threshold.

    Returns:
        [B] float32 tensor on ``scores``' device.

    Raises:
        ValueError if some group has a single rollout (a pass rate needs n >= 2).
    """
    scores = torch.as_tensor(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D [B], got shape {tuple(scores.shape)}")
    batch = scores.shape[0]
    inverse = torch.as_tensor(_group_index(group_ids, batch), device=scores.device)
    if batch == 0:
        return torch.zeros(0, dtype=torch.float32, device=scores.device)
    n_groups = int(inverse.max()) + 1
    counts = torch.bincount(inverse, minlength=n_groups)
    if bool((counts < 2).any()):
        singles = int((counts < 2).sum())
        raise ValueError(
            f"pass rate needs n >= 2 rollouts per prompt; {singles} prompt group(s) have a single rollout. "
            f"Set {ROLLOUT_N_KEY} >= 2"
        )
    passed = (scores > threshold).to(torch.float32)
    passes = torch.zeros(n_groups, dtype=torch.float32, device=scores.device).index_add_(0, inverse, passed)
    return (passes / counts.to(torch.float32))[inverse]


def normalize_weights(weights: torch.Tensor, mode: str = "mean", target: float = 1.0) -> torch.Tensor:
    """Rescale [B] weights so that their mean ("mean") or sum ("sum") equals ``target``; "none": unchanged.

    All-zero weights return zeros (never NaN). Weights must be finite and >= 0.
    """
    weights = torch.as_tensor(weights)
    if not weights.is_floating_point():
        weights = weights.to(torch.float32)
    if mode not in ("mean", "sum", "none"):
        raise ValueError(f"normalize mode must be 'mean', 'sum' or 'none', got {mode!r}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if mode == "none":
        return weights.clone()
    if not target > 0:
        raise ValueError(f"normalize target must be > 0, got {target}")
    if weights.numel() == 0 or not weights.sum() > 0:
        return torch.zeros_like(weights)
    relative = weights / weights.max()  # max 1: the sum below cannot be subnormal (target / sum would overflow)
    scale = target / relative.sum() if mode == "sum" else target * weights.numel() / relative.sum()
    return relative * scale


def effective_sample_size(weights) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2; 0 for all-zero (or empty) weights. Scale-invariant:
    computed on w / max|w|, so tiny weights (whose squares underflow) give the same value as rescaled ones."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    scale = float(w.abs().max()) if w.numel() else 0.0
    if scale == 0:
        return 0.0
    w = w / scale
    return float(w.sum()) ** 2 / float((w * w).sum())


def _bin_key(lo: float, hi: float) -> str:
    return f"{round(lo, 4)}-{round(hi, 4)}"


def pass_rate_histogram(p_groups, bins: int = 5) -> dict[str, float]:
    """Fraction of prompt groups per pass-rate bin: keys "0.0-0.2", ..., "0.8-1.0" (bins [lo, hi), the last
    one closed), plus "p=0" and "p=1" (groups with pass rate exactly 0 / exactly 1, also counted in the
    first / last bin). ``p_groups``: one pass rate per group. Empty input gives all zeros."""
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    bins = int(bins)
    p = torch.as_tensor(p_groups, dtype=torch.float64).reshape(-1)
    if torch.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("pass rates must lie in [0, 1]")
    n = p.numel()
    # floor(p * bins) with a tiny tolerance so that e.g. p = 3/5 lands in [0.6, 0.8), not [0.4, 0.6)
    index = torch.clamp(torch.floor(p * bins + 1e-9), 0, bins - 1).long()
    counts = torch.bincount(index, minlength=bins).tolist() if n else [0] * bins
    out = {_bin_key(b / bins, (b + 1) / bins): (counts[b] / n if n else 0.0) for b in range(bins)}
    out["p=0"] = float((p == 0).sum()) / n if n else 0.0
    out["p=1"] = float((p == 1).sum()) / n if n else 0.0
    return out


class PassRateEMA:
    """Exponential moving average of each prompt's pass rate across steps.

    ``update(prompt_ids, p)``: for every distinct id in this call (its pass rate = mean of its entries),
    ``ema <- decay * ema + (1 - decay) * p``, or ``ema <- p`` the first time the id is seen. Returns the
    smoothed pass rate for each entry of ``prompt_ids`` (same length, float32 tensor).
    """

    def __init__(self, decay: float = 0.9):
        decay = float(decay)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"PassRateEMA decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.values: dict[Hashable, float] = {}

    def __len__(self) -> int:
        return len(self.values)

    def update(self, prompt_ids: Sequence[Hashable] | np.ndarray, p) -> torch.Tensor:
        ids = (
            list(np.asarray(prompt_ids, dtype=object).reshape(-1))
            if isinstance(prompt_ids, np.ndarray)
            else list(prompt_ids)
        )
        p = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
        if len(ids) != p.numel():
            raise ValueError(f"prompt_ids ({len(ids)}) and p ({p.numel()}) must have the same length")
        if torch.isnan(p).any() or (p < 0).any() or (p > 1).any():
            raise ValueError("pass rates p must lie in [0, 1]")
        sums: dict[Hashable, list[float]] = {}
        for key, value in zip(ids, p.tolist(), strict=True):
            entry = sums.setdefault(key, [0.0, 0])
            entry[0] += value
            entry[1] += 1
        for key, (total, count) in sums.items():
            current = total / count
            old = self.values.get(key)
            self.values[key] = current if old is None else self.decay * old + (1.0 - self.decay) * current
        return torch.tensor([self.values[key] for key in ids], dtype=torch.float32)

    def get(self, prompt_id: Hashable, default: float | None = None) -> float | None:
        return self.values.get(prompt_id, default)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "values": dict(self.values)}

    def load_state_dict(self, state: Mapping) -> None:
        decay = float(state["decay"])
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"PassRateEMA decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.values = {key: float(value) for key, value in dict(state["values"]).items()}
