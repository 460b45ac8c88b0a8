"""Paired comparison of two models on the same problems: exact McNemar test on greedy correctness, exact
sign-flip test on per-problem correct-sample counts (``sign_flip_exact``).

Two greedy evaluations of the same held-out problems are paired samples; the problems both models solve or both
miss carry no information. With ``b`` = solved only before and ``c`` = solved only after, under H0 (no
difference) ``c ~ Binomial(b + c, 1/2)``; the two-sided exact p-value is
``min(1, 2 * P[X <= min(b, c)])`` (McNemar 1947, exact binomial form).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb


def mcnemar_exact(before: Sequence[float], after: Sequence[float]) -> dict:
    """Exact two-sided McNemar test of per-problem 0/1 scores ``before`` vs ``after`` (same problems, same order).

    Returns ``{"n", "before_acc", "after_acc", "only_before", "only_after", "p_value"}``."""
    if len(before) != len(after):
        raise ValueError(f"paired scores must have the same length: {len(before)} before vs {len(after)} after")
    for name, scores in (("before", before), ("after", after)):
        bad = [(i, s) for i, s in enumerate(scores) if s not in (0, 1)]
        if bad:
            raise ValueError(f"{name}[{bad[0][0]}] = {bad[0][1]!r}: scores must be 0 or 1")
    only_before = sum(1 for x, y in zip(before, after) if x == 1 and y == 0)
    only_after = sum(1 for x, y in zip(before, after) if x == 0 and y == 1)
    discordant = only_before + only_after
    tail = sum(comb(discordant, i) for i in range(min(only_before, only_after) + 1)) / 2**discordant
    n = len(before)
    return {
        "n": n,
        "before_acc": sum(before) / n if n else 0.0,
        "after_acc": sum(after) / n if n else 0.0,
        "only_before": only_before,
        "only_after": only_after,
        "p_value": min(1.0, 2 * tail),
    }


def sign_flip_exact(before: Sequence[int], after: Sequence[int]) -> dict:
    """Exact two-sided paired sign-flip (Fisher-Pitman) test of per-problem correct-sample counts.

    ``before[i]`` / ``after[i]``: how many of the n samples of problem ``i`` each model got right. Under H0 the
    two evaluations of a problem are exchangeable, so each difference ``d_i = after[i] - before[i]`` is
    ``+|d_i|`` or ``-|d_i|`` with probability 1/2, independently. The statistic is ``S = sum_i d_i`` and the
    p-value is ``P(|S| >= |S_obs|)`` under that null, computed exactly by convolving the 2-point
    distributions (the sums are integers, so this is an exact enumeration of all ``2^m`` sign patterns).

    Returns ``{"n", "before_mean", "after_mean", "sum_diff", "improved", "worsened", "p_value"}`` (means are
    correct samples per problem)."""
    import numpy as np

    if len(before) != len(after):
        raise ValueError(f"paired counts must have the same length: {len(before)} before vs {len(after)} after")
    for name, counts in (("before", before), ("after", after)):
        bad = [(i, c) for i, c in enumerate(counts) if int(c) != c or c < 0]
        if bad:
            raise ValueError(f"{name}[{bad[0][0]}] = {bad[0][1]!r}: counts must be non-negative integers")
    diffs = [int(a) - int(b) for b, a in zip(before, after)]
    sizes = [abs(d) for d in diffs if d]
    total = sum(sizes)
    dist = np.zeros(2 * total + 1)  # dist[s + total] = P(S = s)
    dist[total] = 1.0
    for size in sizes:
        dist = 0.5 * (np.roll(dist, size) + np.roll(dist, -size))  # no wrap-around: |S| <= total at every stage
    observed = abs(sum(diffs))
    values = np.abs(np.arange(-total, total + 1))
    n = len(diffs)
    return {
        "n": n,
        "before_mean": sum(before) / n if n else 0.0,
        "after_mean": sum(after) / n if n else 0.0,
        "sum_diff": sum(diffs),
        "improved": sum(1 for d in diffs if d > 0),
        "worsened": sum(1 for d in diffs if d < 0),
        "p_value": float(min(1.0, dist[values >= observed].sum())),
    }
