"""Paced weights and weighted losses (verl_frontier.paced.weights / .losses) against slow references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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

# 0 exactly (the 0^0 = 1 convention) or >= 1e-3 (tinier ones put p* = alpha / (alpha + beta) at 1.0 in floats)
exponents = st.one_of(st.just(0.0), st.floats(1e-3, 5.0, allow_nan=False))
rates = st.floats(0.0, 1.0, allow_nan=False)


# --------------------------------------------------------------------------------------------- beta kernel


def test_beta_kernel_hand_values():
    p = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(beta_kernel_weight(p), torch.tensor([0.0, 0.1875, 0.25, 0.0]))
    assert torch.allclose(beta_kernel_weight(p, 2.0, 1.0), torch.tensor([0.0, 0.046875, 0.125, 0.0]))
    # 0^0 = 1: alpha = 0 keeps p = 0, beta = 0 keeps p = 1, alpha = beta = 0 is uniform distillation
    assert torch.equal(beta_kernel_weight(p, 0.0, 0.0), torch.ones(4))
    assert beta_kernel_weight(torch.tensor([0.0]), 0.0, 1.0).item() == 1.0
    assert beta_kernel_weight(torch.tensor([1.0]), 2.0, 0.0).item() == 1.0
    assert beta_kernel_weight(torch.tensor([1.0]), 0.0, 0.5).item() == 0.0
    assert beta_kernel_weight(0.5, 1.0, 1.0).item() == 0.25  # floats accepted


@pytest.mark.parametrize(
    ("alpha", "beta", "name"), [(-1.0, 1.0, "alpha"), (1.0, -0.5, "beta"), (float("nan"), 1, "alpha")]
)
def test_beta_kernel_rejects_bad_exponents(alpha, beta, name):
    with pytest.raises(ValueError, match=name):
        beta_kernel_weight(torch.tensor([0.5]), alpha, beta)


def test_beta_kernel_rejects_out_of_range_p():
    with pytest.raises(ValueError, match="p"):
        beta_kernel_weight(torch.tensor([1.5]))
    with pytest.raises(ValueError):
        beta_kernel_weight(torch.tensor([float("nan")]))


@settings(max_examples=60, deadline=None)
@given(st.lists(rates, min_size=1, max_size=20), exponents, exponents)
def test_beta_kernel_range_and_slow_reference(ps, alpha, beta):
    w = beta_kernel_weight(torch.tensor(ps, dtype=torch.float64), alpha, beta)
    w_max = max_beta_kernel_weight(alpha, beta)
    for p, value in zip(ps, w.tolist(), strict=True):
        a = 1.0 if alpha == 0 else p**alpha  # Python: 0.0 ** 0.0 == 1.0 as well; spelled out for clarity
        b = 1.0 if beta == 0 else (1 - p) ** beta
        assert value == pytest.approx(a * b, rel=1e-12, abs=1e-300)
        assert 0.0 <= value <= w_max * (1 + 1e-12)
    # the bound is attained at p* = alpha / (alpha + beta)
    if alpha + beta > 0:
        p_star = torch.tensor([alpha / (alpha + beta)], dtype=torch.float64)
        assert beta_kernel_weight(p_star, alpha, beta).item() == pytest.approx(w_max, rel=1e-9)


def test_max_beta_kernel_weight_values():
    assert max_beta_kernel_weight(1, 1) == 0.25
    assert max_beta_kernel_weight(0, 0) == 1.0
    assert max_beta_kernel_weight(2, 1) == pytest.approx(4 / 27)
    assert max_beta_kernel_weight(0, 3) == 1.0  # w = (1 - p)^3, max at p = 0


# --------------------------------------------------------------------------------------------- pass rates


def _slow_pass_rates(scores, ids, threshold):
    out = []
    for i in range(len(ids)):
        members = [j for j in range(len(ids)) if ids[j] == ids[i]]
        out.append(sum(1 for j in members if scores[j] > threshold) / len(members))
    return out


def test_group_pass_rates_hand_example():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, -1.0])
    ids = np.array(["a", "b", "a", "b", "c", "c", "a", "b"])
    p = group_pass_rates(scores, ids)
    assert torch.allclose(p, torch.tensor([2 / 3, 0, 2 / 3, 0, 1, 1, 2 / 3, 0]))
    p = group_pass_rates(scores, ids, threshold=0.5)
    assert torch.allclose(p, torch.tensor([1 / 3, 0, 1 / 3, 0, 1, 1, 1 / 3, 0]))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(2, 5), min_size=1, max_size=6),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.0, 0.5]),
)
def test_group_pass_rates_matches_slow_loop(group_sizes, seed, threshold):
    rng = np.random.default_rng(seed)
    ids = [f"uid-{g}" for g, size in enumerate(group_sizes) for _ in range(size)]
    order = rng.permutation(len(ids))
    ids = [ids[i] for i in order]
    scores = rng.choice([0.0, 0.5, 1.0], size=len(ids)).tolist()
    p = group_pass_rates(torch.tensor(scores), np.array(ids, dtype=object), threshold=threshold)
    assert p.dtype == torch.float32
    assert p.tolist() == pytest.approx(_slow_pass_rates(scores, ids, threshold), abs=1e-6)


def test_group_pass_rates_accepts_lists_and_mixed_ids():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert group_pass_rates(scores, [7, "7", 7, "7"]).tolist() == pytest.approx([1.0, 0.5, 1.0, 0.5])
    assert group_pass_rates(scores, (3, 3, 4, 4)).tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_group_pass_rates_singleton_group_names_rollout_n():
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.rollout\.n"):
        group_pass_rates(torch.tensor([1.0, 0.0, 1.0]), ["a", "a", "b"])


def test_group_pass_rates_length_mismatch():
    with pytest.raises(ValueError, match="group_ids"):
        group_pass_rates(torch.tensor([1.0, 0.0]), ["a", "a", "a"])


# --------------------------------------------------------------------------------------------- normalisation


def test_normalize_weights_modes():
    w = torch.tensor([0.0, 0.25, 0.25, 0.5])
    mean = normalize_weights(w, "mean")
    assert mean.mean().item() == pytest.approx(1.0) and torch.allclose(mean, w * 4)
    assert normalize_weights(w, "mean", target=2.0).mean().item() == pytest.approx(2.0)
    assert normalize_weights(w, "sum", target=3.0).sum().item() == pytest.approx(3.0)
    assert torch.equal(normalize_weights(w, "none"), w)
    for mode in ("mean", "sum", "none"):
        out = normalize_weights(torch.zeros(5), mode)
        assert torch.equal(out, torch.zeros(5))
    with pytest.raises(ValueError, match="mode"):
        normalize_weights(w, "max")
    with pytest.raises(ValueError):
        normalize_weights(torch.tensor([-1.0, 1.0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=20), st.floats(0.1, 5))
def test_normalize_weights_properties(ws, target):
    w = torch.tensor(ws, dtype=torch.float64)
    out = normalize_weights(w, "mean", target)
    assert torch.isfinite(out).all()
    if w.sum() > 0:
        assert out.mean().item() == pytest.approx(target, rel=1e-9)
        assert effective_sample_size(out) == pytest.approx(effective_sample_size(w), rel=1e-9)  # scale-invariant
    else:
        assert (out == 0).all()


def test_normalize_weights_subnormal_weights_stay_finite():
    # found by hypothesis: target / sum overflowed to inf for a subnormal sum
    tiny = torch.tensor([2.225073858507e-311, 0.0, 4.45e-311], dtype=torch.float64)
    out = normalize_weights(tiny, "mean", 1.0)
    assert torch.isfinite(out).all() and out.mean().item() == pytest.approx(1.0)
    assert out.tolist() == pytest.approx([1.0, 0.0, 2.0], rel=1e-3)  # subnormals carry few significant bits


def test_effective_sample_size_values():
    assert effective_sample_size(torch.ones(4)) == pytest.approx(4.0)
    assert effective_sample_size(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(1.0)
    assert effective_sample_size(torch.tensor([1.0, 2.0])) == pytest.approx(9 / 5)
    assert effective_sample_size(torch.zeros(3)) == 0.0
    assert effective_sample_size(torch.zeros(0)) == 0.0


# --------------------------------------------------------------------------------------------- histogram


def test_pass_rate_histogram_hand_example():
    hist = pass_rate_histogram(torch.tensor([0.0, 0.2, 0.5, 0.6, 1.0, 1.0]))
    assert hist == pytest.approx(
        {
            "0.0-0.2": 1 / 6,
            "0.2-0.4": 1 / 6,
            "0.4-0.6": 1 / 6,
            "0.6-0.8": 1 / 6,
            "0.8-1.0": 2 / 6,
            "p=0": 1 / 6,
            "p=1": 2 / 6,
        }
    )
    assert set(pass_rate_histogram([], bins=2)) == {"0.0-0.5", "0.5-1.0", "p=0", "p=1"}
    assert all(v == 0.0 for v in pass_rate_histogram([], bins=2).values())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(1, 8)), min_size=1, max_size=30), st.integers(1, 10))
def test_pass_rate_histogram_matches_slow_count(fractions, bins):
    ps = [min(k, n) / n for k, n in fractions]  # exact pass rates k / n
    hist = pass_rate_histogram(np.array(ps), bins=bins)
    bin_values = [v for k, v in hist.items() if not k.startswith("p=")]
    assert len(bin_values) == bins and sum(bin_values) == pytest.approx(1.0)
    for b, value in enumerate(bin_values):
        # slow: exact rational comparison lo <= k/n < hi (last bin closed)
        count = sum(
            1 for k, n in fractions if b * n <= min(k, n) * bins and (min(k, n) * bins < (b + 1) * n or b == bins - 1)
        )
        assert value == pytest.approx(count / len(ps))
    assert hist["p=0"] == pytest.approx(sum(p == 0 for p in ps) / len(ps))
    assert hist["p=1"] == pytest.approx(sum(p == 1 for p in ps) / len(ps))


# --------------------------------------------------------------------------------------------- EMA


def test_pass_rate_ema():
    ema = PassRateEMA(decay=0.5)
    first = ema.update(["a", "a", "b", "b"], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert first.tolist() == [1.0, 1.0, 0.0, 0.0]  # first sighting = raw p
    second = ema.update(np.array(["a", "a", "c", "c"]), [0.0, 0.0, 0.5, 0.5])
    assert second.tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5])
    third = ema.update(["a", "b"], [1.0, 1.0])
    assert third.tolist() == pytest.approx([0.75, 0.5])
    state = ema.state_dict()
    clone = PassRateEMA(decay=0.9)
    clone.load_state_dict(state)
    assert clone.decay == 0.5 and clone.values == ema.values
    assert clone.update(["b"], [1.0]).tolist() == pytest.approx([0.75])
    assert ema.values["b"] == 0.5  # the clone's state is independent
    with pytest.raises(ValueError, match="decay"):
        PassRateEMA(decay=1.5)
    with pytest.raises(ValueError):
        ema.update(["a"], [0.5, 0.5])


def test_pass_rate_ema_decay_zero_is_raw():
    ema = PassRateEMA(decay=0.0)
    ema.update([1, 2], [0.25, 0.75])
    assert ema.update([1, 2], [1.0, 0.0]).tolist() == [1.0, 0.0]


# --------------------------------------------------------------------------------------------- losses


def _slow_weighted_loss(token_losses, mask, weights):
    num, den = 0.0, 0.0
    for i in range(token_losses.shape[0]):
        toks = [token_losses[i, t].item() for t in range(token_losses.shape[1]) if mask[i, t]]
        if not toks:
            continue
        num += weights[i].item() * sum(toks) / len(toks)
        den += weights[i].item()
    return num / den if den > 0 else 0.0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(0, 2**31 - 1), st.booleans())
def test_weighted_sequence_loss_matches_slow_loop(batch, length, seed, zero_some):
    gen = torch.Generator().manual_seed(seed)
    token_losses = torch.rand(batch, length, generator=gen, dtype=torch.float64)
    mask = torch.rand(batch, length, generator=gen) < 0.7
    weights = torch.rand(batch, generator=gen, dtype=torch.float64)
    if zero_some:
        weights[::2] = 0.0
    loss, info = weighted_sequence_loss(token_losses, mask, weights)
    assert loss.item() == pytest.approx(_slow_weighted_loss(token_losses, mask, weights), rel=1e-10, abs=1e-12)
    assert info["num_valid_samples"] == int(mask.any(-1).sum())


def test_weighted_sequence_loss_empty_masks_and_masked_nan():
    token_losses = torch.tensor(
        [[1.0, 3.0, float("nan")], [5.0, 5.0, 5.0], [float("inf"), 2.0, 2.0]], requires_grad=True
    )
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    weights = torch.tensor([1.0, 100.0, 3.0])
    loss, info = weighted_sequence_loss(token_losses, mask, weights)
    assert loss.item() == pytest.approx((1 * 2.0 + 3 * 2.0) / 4)  # sample 1 (empty mask) contributes nothing
    loss.backward()
    assert torch.isfinite(token_losses.grad).all()
    assert token_losses.grad[1].abs().sum() == 0 and token_losses.grad[0, 2] == 0
    assert info["weight_sum"] == pytest.approx(4.0) and info["zero_weight_batch"] == 0.0


def test_weighted_sequence_loss_all_zero_weights_keeps_graph():
    token_losses = torch.rand(3, 4, requires_grad=True)
    loss, info = weighted_sequence_loss(token_losses, torch.ones(3, 4), torch.zeros(3))
    assert loss.item() == 0.0 and info["zero_weight_batch"] == 1.0 and info["effective_sample_size"] == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(token_losses.grad, torch.zeros(3, 4))


def test_per_token_weighted_losses_broadcast():
    token_losses = torch.arange(6.0).reshape(2, 3)
    out = per_token_weighted_losses(token_losses, torch.tensor([2.0, 0.5]))
    assert torch.equal(out, torch.tensor([[0.0, 2.0, 4.0], [1.5, 2.0, 2.5]]))


def _seq_mean_token_mean(loss_mat, mask):
    """verl's agg_loss 'seq-mean-token-mean' (single rank), written out."""
    n = mask.sum(-1)
    seq = (loss_mat * mask).sum(-1) / (n + 1e-8)
    valid = (n > 0).to(loss_mat.dtype)
    return (seq * valid).sum() / valid.sum()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1), exponents, exponents)
def test_mean_normalised_per_token_form_equals_weighted_sequence_loss(batch, length, seed, alpha, beta):
    gen = torch.Generator().manual_seed(seed)
    token_losses = torch.rand(batch, length, generator=gen, dtype=torch.float64)
    mask = (torch.rand(batch, length, generator=gen) < 0.8).to(torch.float64)
    mask[0, 0] = 1.0  # at least one valid sample
    p = torch.randint(0, 5, (batch,), generator=gen).to(torch.float64) / 4
    w = beta_kernel_weight(p, alpha, beta)
    valid = mask.sum(-1) > 0
    # mean-normalise over the samples that verl's seq-mean counts
    w_tilde = torch.zeros_like(w)
    w_tilde[valid] = normalize_weights(w[valid], "mean")
    expected, info = weighted_sequence_loss(token_losses, mask, w_tilde)
    got = _seq_mean_token_mean(per_token_weighted_losses(token_losses, w_tilde), mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-9)
    if info["zero_weight_batch"] == 0.0:  # and it is the Paced objective sum w l / sum w with the raw weights
        raw, _ = weighted_sequence_loss(token_losses, mask, w)
        assert got.item() == pytest.approx(raw.item(), rel=1e-6, abs=1e-9)


def test_per_token_form_equals_verl_agg_loss():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    gen = torch.Generator().manual_seed(3)
    token_losses = torch.rand(5, 7, generator=gen, dtype=torch.float64)
    mask = (torch.rand(5, 7, generator=gen) < 0.7).to(torch.float64)
    mask[2] = 0.0  # an empty sample: excluded by both
    mask[0, 0] = 1.0
    w = beta_kernel_weight(torch.tensor([0.25, 0.5, 0.75, 1.0, 0.5], dtype=torch.float64))
    valid = mask.sum(-1) > 0
    w_tilde = torch.zeros_like(w)
    w_tilde[valid] = normalize_weights(w[valid], "mean")
    verl_loss = core_algos.agg_loss(per_token_weighted_losses(token_losses, w_tilde), mask, "seq-mean-token-mean")
    ours, _ = weighted_sequence_loss(token_losses, mask, w)
    assert verl_loss.item() == pytest.approx(ours.item(), rel=1e-6)


def test_select_divergence():
    forward = torch.full((3, 2), 1.0)
    reverse = torch.full((3, 2), 2.0)
    jsd = torch.full((3, 2), 3.0)
    assert select_divergence(forward, reverse, jsd, torch.tensor([2, 0, 1])).tolist() == [[3, 3], [1, 1], [2, 2]]
    assert select_divergence(forward, reverse, None, torch.tensor([1.0, 1.0, 0.0])).tolist() == [[2, 2], [2, 2], [1, 1]]
    # unselected NaN does not leak into values or gradients
    reverse_nan = torch.full((3, 2), float("nan"), requires_grad=True)
    forward_g = forward.clone().requires_grad_()
    out = select_divergence(forward_g, reverse_nan, None, torch.tensor([0, 0, 0]))
    out.sum().backward()
    assert torch.equal(out, forward) and torch.equal(forward_g.grad, torch.ones(3, 2))
    assert torch.equal(reverse_nan.grad, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="jsd"):
        select_divergence(forward, reverse, None, torch.tensor([0, 2, 0]))
    with pytest.raises(ValueError, match="codes"):
        select_divergence(forward, reverse, jsd, torch.tensor([0, 3, 0]))


def test_paced_math_modules_do_not_import_verl():
    import ast
    import pathlib

    import verl_frontier.paced.losses as losses_mod
    import verl_frontier.paced.weights as weights_mod

    for mod in (losses_mod, weights_mod):
        tree = ast.parse(pathlib.Path(mod.__file__).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(name == "verl" or name.startswith("verl.") for name in names), mod.__name__


def test_math_is_finite_at_extremes():
    assert math.isfinite(effective_sample_size(torch.tensor([1e-30, 1e-30])))
