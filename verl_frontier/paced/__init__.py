"""Paced: pass-rate-weighted distillation (arXiv 2603.11178).

Math (pure torch, no verl imports): :mod:`verl_frontier.paced.weights` (w(p) = p^alpha (1 - p)^beta, group
pass rates, normalisation, diagnostics) and :mod:`verl_frontier.paced.losses` (weighted aggregation).
verl glue: :mod:`verl_frontier.paced.verl_plugin` (imported by verl_frontier.plugin, not here).
"""

from verl_frontier.paced.losses import per_token_weighted_losses, select_divergence, weighted_sequence_loss
from verl_frontier.paced.weights import (
    PassRateEMA,
    beta_kernel_weight,
    effective_sample_size,
    group_pass_rates,
    max_beta_kernel_weight,
    normalize_weights,
    pass_rate_histogram,
)

__all__ = [
    "PassRateEMA",
    "beta_kernel_weight",
    "effective_sample_size",
    "group_pass_rates",
    "max_beta_kernel_weight",
    "normalize_weights",
    "pass_rate_histogram",
    "per_token_weighted_losses",
    "select_divergence",
    "weighted_sequence_loss",
]
