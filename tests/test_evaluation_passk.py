"""pass@k / mean@k against brute-force enumeration over all k-subsets."""

from fractions import Fraction
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.evaluation.passk import counts_from_scores, mean_at_k, mean_at_k_curve, pass_at_k, pass_at_k_curve


def brute(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    p = Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))
    m = Fraction(sum(sum(samples[i] for i in s) for s in subsets), len(subsets) * k)
    return float(p), float(m)


@st.composite
def nck(draw):
    n = draw(st.integers(1, 10))
    c = draw(st.integers(0, n))
    k = draw(st.integers(1, n))
    return n, c, k


@settings(max_examples=300, deadline=None)
@given(nck())
def test_pass_and_mean_at_k_match_brute_force(args):
    n, c, k = args
    p, m = brute(n, c, k)
    assert pass_at_k(n, c, k) == pytest.approx(p, abs=1e-12)
    assert mean_at_k(n, c, k) == pytest.approx(m, abs=1e-12)


def test_edges_and_large_n_stability():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 1, 1) == pytest.approx(1 / 8)
    assert pass_at_k(8, 1, 8) == 1.0
    # the product form stays finite where binomials would overflow floats
    v = pass_at_k(2000, 3, 1000)
    assert 0.0 < v < 1.0 and v == pytest.approx(1 - (1000 * 999 * 998) / (2000 * 1999 * 1998))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_curves():
    counts = counts_from_scores([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert counts == [(4, 1), (4, 0), (4, 4)]
    curve = pass_at_k_curve(counts)
    assert list(curve) == [1, 2, 3, 4]
    assert curve[1] == pytest.approx((0.25 + 0 + 1) / 3)
    assert curve[4] == pytest.approx((1 + 0 + 1) / 3)
    assert all(curve[k] <= curve[k + 1] for k in range(1, 4))
    assert mean_at_k_curve(counts)[3] == pytest.approx((0.25 + 0 + 1) / 3)
    assert pass_at_k_curve(counts, k_max=2).keys() == {1, 2}
