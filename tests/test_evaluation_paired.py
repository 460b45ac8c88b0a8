"""Exact McNemar and sign-flip tests: hand-computed p-values, brute-force references over all sign patterns,
bad input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.evaluation.paired import mcnemar_exact, sign_flip_exact


def test_hand_computed_values():
    # 0 only-before, 5 only-after: p = 2 * (1/2)^5 = 0.0625
    before = [0] * 5 + [1] * 3 + [0] * 2
    after = [1] * 5 + [1] * 3 + [0] * 2
    r = mcnemar_exact(before, after)
    assert (r["only_before"], r["only_after"], r["n"]) == (0, 5, 10)
    assert r["p_value"] == pytest.approx(0.0625)
    assert (r["before_acc"], r["after_acc"]) == (0.3, 0.8)
    # 1 vs 9 discordant: p = 2 * (1 + 10) / 2^10
    r = mcnemar_exact([1] + [0] * 9, [0] + [1] * 9)
    assert r["p_value"] == pytest.approx(2 * 11 / 1024)
    # no discordant pairs: no evidence at all
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0


def brute_force_p(b: int, c: int) -> float:
    """P(|X - (b+c)/2| >= |c - (b+c)/2|) for X ~ Bin(b+c, 1/2), by enumerating all 2^(b+c) sign patterns."""
    m = b + c
    if m == 0:
        return 1.0
    observed = abs(c - m / 2)
    hits = sum(1 for signs in itertools.product((0, 1), repeat=m) if abs(sum(signs) - m / 2) >= observed - 1e-12)
    return hits / 2**m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=14))
def test_matches_brute_force_enumeration(pairs):
    before, after = [p[0] for p in pairs], [p[1] for p in pairs]
    r = mcnemar_exact(before, after)
    assert r["p_value"] == pytest.approx(brute_force_p(r["only_before"], r["only_after"]))
    assert r["only_before"] + r["only_after"] == sum(x != y for x, y in pairs)
    assert mcnemar_exact(after, before)["p_value"] == pytest.approx(r["p_value"])  # symmetric


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="same length: 2 before vs 3 after"):
        mcnemar_exact([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"after\[1\] = 0.5"):
        mcnemar_exact([0, 1], [0, 0.5])


def test_sign_flip_hand_computed_values():
    # differences +2, +1: sign patterns give S in {3, 1, -1, -3}; |S| >= 3 in 2 of 4
    r = sign_flip_exact([0, 3, 5], [2, 4, 5])
    assert (r["sum_diff"], r["improved"], r["worsened"], r["n"]) == (3, 2, 0, 3)
    assert r["p_value"] == pytest.approx(0.5)
    assert (r["before_mean"], r["after_mean"]) == (8 / 3, 11 / 3)
    # five problems each one sample better: 2 * (1/2)^5, as McNemar's 0 vs 5
    assert sign_flip_exact([0] * 5, [1] * 5)["p_value"] == pytest.approx(0.0625)
    # +4 and -4 cancel: S_obs = 0, every pattern is at least as extreme
    assert sign_flip_exact([0, 4], [4, 0])["p_value"] == 1.0
    assert sign_flip_exact([1, 2], [1, 2])["p_value"] == 1.0


def brute_force_sign_flip_p(diffs: list[int]) -> float:
    observed = abs(sum(diffs))
    patterns = list(itertools.product((1, -1), repeat=len(diffs)))
    return sum(1 for signs in patterns if abs(sum(s * d for s, d in zip(signs, diffs))) >= observed) / len(patterns)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=12))
def test_sign_flip_matches_brute_force_enumeration(pairs):
    before, after = [p[0] for p in pairs], [p[1] for p in pairs]
    r = sign_flip_exact(before, after)
    assert r["p_value"] == pytest.approx(brute_force_sign_flip_p([a - b for b, a in pairs]))
    assert sign_flip_exact(after, before)["p_value"] == pytest.approx(r["p_value"])  # symmetric


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=40))
def test_sign_flip_on_single_samples_is_mcnemar(pairs):
    before, after = [p[0] for p in pairs], [p[1] for p in pairs]
    assert sign_flip_exact(before, after)["p_value"] == pytest.approx(mcnemar_exact(before, after)["p_value"])


def test_sign_flip_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="same length: 1 before vs 2 after"):
        sign_flip_exact([3], [3, 4])
    with pytest.raises(ValueError, match=r"before\[0\] = -1"):
        sign_flip_exact([-1], [2])
    with pytest.raises(ValueError, match=r"after\[1\] = 2.5"):
        sign_flip_exact([1, 1], [1, 2.5])
