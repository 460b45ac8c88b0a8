"""Unbiased pass@k and mean@k estimators (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code"), from n samples of which c are correct.

pass@k = E[at least one of k samples drawn without replacement from the n is correct]
       = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)   (numerically stable form)
mean@k = E[fraction correct among k samples drawn from the n] = c / n  (for every k <= n)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with ``c`` correct out of ``n`` samples."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the mean accuracy of ``k`` samples (avg@k); equals c/n for every k."""
    _check(n, c, k)
    return c / n


def pass_at_k_curve(counts: Iterable[tuple[int, int]], k_max: int | None = None) -> dict[int, float]:
    """Average pass@k over problems given ``(n, c)`` per problem, for k = 1..k_max (default min n)."""
    counts = list(counts)
    if not counts:
        return {}
    n_min = min(n for n, _ in counts)
    k_max = n_min if k_max is None else min(k_max, n_min)
    return {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in range(1, k_max + 1)}


def mean_at_k_curve(counts: Iterable[tuple[int, int]], k_max: int | None = None) -> dict[int, float]:
    counts = list(counts)
    if not counts:
        return {}
    n_min = min(n for n, _ in counts)
    k_max = n_min if k_max is None else min(k_max, n_min)
    return {k: float(np.mean([mean_at_k(n, c, k) for n, c in counts])) for k in range(1, k_max + 1)}


def counts_from_scores(scores: Sequence[Sequence[float]], threshold: float = 0.5) -> list[tuple[int, int]]:
    """``(n, c)`` per problem from per-sample scores (a sample counts as correct if score > threshold)."""
    return [(len(s), int(sum(x > threshold for x in s))) for s in scores]
