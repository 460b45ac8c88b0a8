"""Paired comparison of two models on the same problems: exact McNemar test on greedy correctness.

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
