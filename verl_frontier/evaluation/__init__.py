"""Shared evaluation: unbiased pass@k / mean@k and checkpoint evaluation on verl parquet data."""

from .passk import mean_at_k, pass_at_k, pass_at_k_curve


def evaluate(*args, **kwargs):
    from .core import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate", "mean_at_k", "pass_at_k", "pass_at_k_curve"]
