"""Statistics of a study: arms compared with the baseline arm on the final set, problem by problem and over seeds.

Three questions, three tools (all exact or with a fixed random seed, so a results.json is reproducible):

* Do the two models of one seed differ? ``paired.mcnemar_exact`` on the per-problem greedy correctness of the
  arm's and the baseline's model trained with the same seed (``b`` = solved by the baseline only, ``c`` = by
  the arm only; under H0 ``c ~ Binomial(b + c, 1/2)``).
* Pooled over seeds: :func:`pooled_mcnemar_exact`, the exact sign-flip test over (seed, problem) pairs,
  stratified by seed. Each pair's two outcomes are exchangeable under H0, so every discordant pair flips sign
  independently with probability 1/2, within its seed. With the statistic ``sum(after - before)`` over all
  pairs this is the Cochran-Mantel-Haenszel test for 1:1 matched pairs in its exact form: conditionally on the
  discordant counts ``n_s = b_s + c_s`` of each seed, ``sum_s c_s ~ Binomial(sum_s n_s, 1/2)``, and the
  two-sided p-value is ``min(1, 2 P[X <= min(B, C)])`` with ``B = sum_s b_s``, ``C = sum_s c_s``. Like
  McNemar it holds the trained models fixed: it asks whether *these* models differ on the problem population.
* Does the method, not just these models, differ? Variation between seeds: the mean over seeds with a 95 %
  Student t-interval (:func:`t_interval`, ``mean +- t_{0.975, n-1} s / sqrt(n)``, ``n`` = seeds, ``s`` the
  sample standard deviation), also of the per-seed difference arm - baseline (paired by seed). With 3 seeds
  any seed-level randomisation test has a smallest two-sided p of 2/2^3 = 0.25, so a claim needs the pooled
  problem-level test *and* an interval over seeds that excludes 0. :func:`bootstrap_interval` adds the
  percentile interval of the mean over seeds when the problems are resampled (same resample for every seed,
  fixed generator seed): the uncertainty from the finite problem set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from verl_frontier.evaluation.paired import mcnemar_exact

__all__ = [
    "bootstrap_interval",
    "mcnemar_exact",
    "pooled_mcnemar_exact",
    "student_t_cdf",
    "student_t_quantile",
    "t_interval",
]


def binomial_two_sided(b: int, c: int) -> float:
    """``min(1, 2 P[X <= min(b, c)])`` for ``X ~ Binomial(b + c, 1/2)`` (exact, integer arithmetic)."""
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def pooled_mcnemar_exact(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict:
    """Exact sign-flip test over problems stratified by seed (exact CMH for matched pairs; module docstring).

    ``pairs``: one ``(baseline_scores, arm_scores)`` per seed, 0/1 per problem, the same problems in the same
    order within a seed. Returns ``{"seeds", "n", "only_baseline", "only_arm", "per_seed", "p_value"}``
    (``per_seed``: each seed's McNemar result)."""
    if not pairs:
        raise ValueError("pooled test needs at least one seed")
    per_seed = [mcnemar_exact(before, after) for before, after in pairs]
    b = sum(r["only_before"] for r in per_seed)
    c = sum(r["only_after"] for r in per_seed)
    return {
        "seeds": len(per_seed),
        "n": sum(r["n"] for r in per_seed),
        "only_baseline": b,
        "only_arm": c,
        "per_seed": per_seed,
        "p_value": binomial_two_sided(b, c),
    }


def student_t_cdf(t: float, df: int) -> float:
    """P[T <= t] for Student's t with integer ``df`` >= 1 (closed form in theta = atan(t / sqrt(df)))."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    df = int(df)
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):  # 1 + (2/3) cos^2 + (2*4)/(3*5) cos^4 + ...
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 0.5 + (theta + (sin * math.cos(theta) * total if df > 1 else 0.0)) / math.pi
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):  # 1 + (1/2) cos^2 + (1*3)/(2*4) cos^4 + ...
        total += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return 0.5 + 0.5 * sin * total


def student_t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile of Student's t with integer ``df`` (bisection on :func:`student_t_cdf` to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of ``values`` (one per seed) with the two-sided Student t-interval at ``level``.

    ``mean +- t_{(1 + level) / 2, n - 1} * s / sqrt(n)``; needs n >= 2 values. Returns
    ``{"mean", "low", "high", "sd", "n", "level", "method"}``."""
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t_quantile((1.0 + level) / 2.0, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": n, "level": level,
            "method": "student-t over seeds"}  # fmt: skip


def bootstrap_interval(
    scores_per_seed: Sequence[Sequence[int]], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict:
    """Percentile bootstrap over problems of the mean (over seeds) accuracy.

    ``scores_per_seed``: 0/1 per problem for each seed, the same problems in every seed; each resample draws
    the problems with replacement once and applies the draw to every seed. Returns
    ``{"mean", "low", "high", "level", "resamples", "seed", "method"}``."""
    import numpy as np

    scores = np.asarray(scores_per_seed, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError("scores_per_seed must be a non-empty seeds x problems table")
    n = scores.shape[1]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (resamples, n) problem multiplicities
    means = (counts @ scores.mean(axis=0)) / n
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": float(scores.mean()), "low": float(low), "high": float(high), "level": level,
            "resamples": resamples, "seed": seed, "method": "percentile bootstrap over problems"}  # fmt: skip
