"""KD divergences (verl_frontier.kd): chunked full-vocab losses and top-k losses against slow references."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.kd.chunked import chunked_divergence
from verl_frontier.kd.kinds import KINDS
from verl_frontier.kd.topk import gathered_log_softmax, topk_divergences

NEG_INF = float("-inf")


# --------------------------------------------------------------------------------------------- references


def _slow_divergence(student_row, teacher_row, kind, beta=0.5, temperature=1.0):
    """One token, explicit softmax and explicit sums in float64 Python (columns with p = q = 0 skipped)."""
    zs = [x / temperature for x in student_row]
    zt = [x / temperature for x in teacher_row]

    def softmax(z):
        m = max(z)
        if m == NEG_INF:
            return [0.0] * len(z)
        e = [math.exp(x - m) for x in z]
        return [x / sum(e) for x in e]

    q, p = softmax(zs), softmax(zt)

    def kl(a, b):  # sum a log(a / b) over a > 0
        return sum(ai * math.log(ai / bi) for ai, bi in zip(a, b, strict=True) if ai > 0)

    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return kl(p, q)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return kl(q, p)
    m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q, strict=True)]
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


def _naive_autograd(student, teacher, kind, beta=0.5, temperature=1.0):
    """The usual all-at-once implementation (F.log_softmax of both, elementwise, sum)."""
    s = torch.log_softmax(student / temperature, -1)
    t = torch.log_softmax(teacher / temperature, -1)
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return (s.exp() * (s - t)).sum(-1)
    m = torch.log(beta * t.exp() + (1 - beta) * s.exp())
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def _logits(n, v, dtype=torch.float64, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=gen) * scale).to(dtype), (torch.randn(n, v, generator=gen) * scale).to(dtype)


# --------------------------------------------------------------------------------------------- chunked


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_chunked_matches_slow_reference(kind, temperature):
    student, teacher = _logits(5, 9)
    beta = 0.3
    got = chunked_divergence(student, teacher, kind, beta=beta, chunk_size=2, temperature=temperature)
    for n in range(5):
        expected = _slow_divergence(student[n].tolist(), teacher[n].tolist(), kind, beta, temperature)
        assert got[n].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_chunked_equals_naive_value_and_gradient(kind, dtype, tol, chunk_size):
    student, teacher = _logits(7, 33, dtype=dtype, seed=1)
    upstream = torch.randn(7, dtype=dtype)  # arbitrary per-token grad_output (weights / masks)
    a = student.clone().requires_grad_()
    b = student.clone().requires_grad_()
    got = chunked_divergence(a, teacher, kind, beta=0.4, chunk_size=chunk_size, temperature=1.3)
    expected = _naive_autograd(b, teacher, kind, beta=0.4, temperature=1.3)
    (got * upstream).sum().backward()
    (expected * upstream).sum().backward()
    assert got.dtype == dtype
    assert torch.allclose(got, expected.detach(), atol=tol, rtol=0)
    assert torch.allclose(a.grad, b.grad, atol=tol, rtol=0)


@pytest.mark.parametrize(
    ("kind", "beta"), [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.0), ("jsd", 0.3), ("jsd", 1.0)]
)
def test_chunked_gradcheck(kind, beta):
    student, teacher = _logits(4, 6, seed=2)
    student.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: chunked_divergence(x, teacher, kind, beta=beta, chunk_size=3, temperature=1.5), (student,)
    )


def test_chunked_repeated_backward_recomputes_same_gradient():
    student, teacher = _logits(6, 10, seed=3)
    student.requires_grad_()
    loss = chunked_divergence(student, teacher, "reverse_kl", chunk_size=4)
    g1 = torch.randn(6, dtype=torch.float64)
    g2 = torch.randn(6, dtype=torch.float64)
    (first,) = torch.autograd.grad(loss, student, g1, retain_graph=True)  # stored gradient, scaled in place
    (second,) = torch.autograd.grad(loss, student, g2)  # recomputed chunk by chunk
    ref = student.detach().clone().requires_grad_()
    r = _naive_autograd(ref, teacher, "reverse_kl")
    (r1,) = torch.autograd.grad(r, ref, g1, retain_graph=True)
    (r2,) = torch.autograd.grad(r, ref, g2)
    assert torch.allclose(first, r1, atol=1e-10) and torch.allclose(second, r2, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_masked_columns_are_ignored_and_finite(kind):
    student, teacher = _logits(4, 8, seed=4)
    masked_s, masked_t = student.clone(), teacher.clone()
    masked_s[:, [2, 5]] = NEG_INF  # e.g. vocab padding columns, -inf in both models
    masked_t[:, [2, 5]] = NEG_INF
    masked_s[3] = NEG_INF  # a fully masked token
    masked_t[3] = NEG_INF
    x = masked_s.clone().requires_grad_()
    losses = chunked_divergence(x, masked_t, kind, beta=0.6, chunk_size=3)
    (losses * torch.rand(4, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(x.grad).all()
    assert losses[3].item() == 0.0 and torch.equal(x.grad[3], torch.zeros(8, dtype=torch.float64))
    assert torch.equal(x.grad[:, [2, 5]], torch.zeros(4, 2, dtype=torch.float64))
    half = masked_s[:2].clone()
    half[1] = NEG_INF  # masked in the student only: undefined, reported as NaN (not a silent 0)
    assert torch.isnan(chunked_divergence(half, masked_t[:2], kind)[1])
    keep = [0, 1, 3, 4, 6, 7]  # == the divergence on the vocabulary without the masked columns
    reduced = chunked_divergence(student[:3, keep], teacher[:3, keep], kind, beta=0.6)
    assert torch.allclose(losses[:3], reduced, atol=1e-12)


def test_chunked_bf16_student_computes_in_float32():
    student, teacher = _logits(6, 40, dtype=torch.float32, seed=5)
    s16 = student.to(torch.bfloat16).requires_grad_()
    losses = chunked_divergence(s16, teacher, "forward_kl", chunk_size=4)
    losses.sum().backward()
    assert losses.dtype == torch.float32 and s16.grad.dtype == torch.bfloat16
    s32 = s16.detach().float().requires_grad_()
    ref = _naive_autograd(s32, teacher, "forward_kl")
    ref.sum().backward()
    assert torch.allclose(losses, ref.detach(), atol=1e-5)
    assert torch.allclose(s16.grad.float(), s32.grad, atol=1e-2)  # bf16 gradient storage


def test_chunked_no_grad_and_leading_dims():
    student, teacher = _logits(6, 12, seed=6)
    with torch.no_grad():
        out = chunked_divergence(student.reshape(2, 3, 12).requires_grad_(), teacher.reshape(2, 3, 12), "jsd")
    assert out.shape == (2, 3) and not out.requires_grad
    assert torch.allclose(out.reshape(-1), _naive_autograd(student, teacher, "jsd"), atol=1e-12)


def test_chunked_rejects_bad_arguments():
    student, teacher = _logits(2, 4)
    with pytest.raises(ValueError, match="kind"):
        chunked_divergence(student, teacher, "tv")
    with pytest.raises(ValueError, match="beta"):
        chunked_divergence(student, teacher, "jsd", beta=1.5)
    with pytest.raises(ValueError, match="differ"):
        chunked_divergence(student, teacher[:, :3], "forward_kl")
    with pytest.raises(ValueError, match="temperature"):
        chunked_divergence(student, teacher, "forward_kl", temperature=0.0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(2, 12),
    st.integers(0, 2**31 - 1),
    st.sampled_from(KINDS),
    st.floats(0.0, 1.0),
    st.floats(0.1, 8.0),
)
def test_chunked_properties(n, v, seed, kind, beta, scale):
    student, teacher = _logits(n, v, seed=seed, scale=scale)
    x = student.clone().requires_grad_()
    losses = chunked_divergence(x, teacher, kind, beta=beta, chunk_size=2)
    losses.sum().backward()
    assert (losses >= -1e-12).all()  # true divergences
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(x.grad.sum(-1), torch.zeros(n, dtype=torch.float64), atol=1e-9)  # softmax shift invariance
    if kind == "jsd" and 0 < beta < 1:  # JSD(beta) <= H(beta), the entropy of the mixing weights
        assert (losses <= -beta * math.log(beta) - (1 - beta) * math.log1p(-beta) + 1e-9).all()
    same = chunked_divergence(student, student, kind, beta=beta)
    assert torch.allclose(same, torch.zeros(n, dtype=torch.float64), atol=1e-12)


# --------------------------------------------------------------------------------------------- top-k


def _topk_inputs(n=6, v=20, k=5, seed=0, dtype=torch.float64):
    student, teacher = _logits(n, v, dtype=dtype, seed=seed)
    teacher_lp = torch.log_softmax(teacher, -1)
    ids = torch.topk(teacher_lp, k, -1).indices
    return student, teacher_lp.gather(-1, ids), ids


def _slow_topk(student_row, teacher_lp_row, ids_row, beta, clamp):
    m = max(student_row)
    lse = m + math.log(sum(math.exp(x - m) for x in student_row))
    s = [student_row[i] - lse for i in ids_row]
    t = list(teacher_lp_row)
    sc = [max(x, clamp) for x in s] if clamp is not None else s
    tc = [max(x, clamp) for x in t] if clamp is not None else t
    forward = sum(math.exp(b) * (b - a) for a, b in zip(sc, tc, strict=True))
    zs, zt = sum(math.exp(x) for x in s), sum(math.exp(x) for x in t)
    q = [math.exp(x) / zs for x in s]
    p = [math.exp(x) / zt for x in t]
    reverse = sum(a * math.log(a / b) for a, b in zip(q, p, strict=True) if a > 0)
    mix = [beta * b + (1 - beta) * a for a, b in zip(q, p, strict=True)]
    jsd = beta * sum(b * math.log(b / c) for b, c in zip(p, mix, strict=True) if b > 0) + (1 - beta) * sum(
        a * math.log(a / c) for a, c in zip(q, mix, strict=True) if a > 0
    )
    return forward, reverse, jsd, zs, zt


@pytest.mark.parametrize("clamp", [None, -2.0])
def test_topk_matches_slow_reference(clamp):
    student, teacher_lp, ids = _topk_inputs()
    out = topk_divergences(student, teacher_lp, ids, jsd_beta=0.35, log_prob_min_clamp=clamp)
    for n in range(student.shape[0]):
        fwd, rev, jsd, zs, zt = _slow_topk(student[n].tolist(), teacher_lp[n].tolist(), ids[n].tolist(), 0.35, clamp)
        assert out["forward_kl"][n].item() == pytest.approx(fwd, rel=1e-10, abs=1e-12)
        assert out["reverse_kl"][n].item() == pytest.approx(rev, rel=1e-10, abs=1e-12)
        assert out["jsd"][n].item() == pytest.approx(jsd, rel=1e-10, abs=1e-12)
        assert out["student_mass"][n].item() == pytest.approx(zs, rel=1e-10)
        assert out["teacher_mass"][n].item() == pytest.approx(zt, rel=1e-10)
    assert "jsd" not in topk_divergences(student, teacher_lp, ids)


def _verl_forward_kl(student, teacher_lp, ids, clamp, chunked):
    verl_losses = pytest.importorskip("verl.trainer.distillation.fsdp.losses")
    lengths = [2, 3, student.shape[1] - 5]  # three "sequences" packed into one row, as verl's THD layout
    splits_lp = list(torch.split(teacher_lp[0], lengths))
    splits_ids = list(torch.split(ids[0], lengths))
    config = SimpleNamespace(
        distillation_loss=SimpleNamespace(log_prob_min_clamp=clamp, use_chunked_topk=chunked, chunked_topk_chunk_size=3)
    )
    return verl_losses.compute_forward_kl_topk(
        student,
        torch.nested.as_nested_tensor(splits_lp, layout=torch.jagged),
        torch.nested.as_nested_tensor(splits_ids, layout=torch.jagged),
        config,
        "thd",
    )


@pytest.mark.parametrize("clamp", [None, -10.0, -1.5])
@pytest.mark.parametrize("chunked", [False, True])
def test_topk_forward_kl_equals_verl(clamp, chunked):
    student, teacher_lp, ids = _topk_inputs(n=11, v=50, k=8, seed=7, dtype=torch.float32)
    student, teacher_lp, ids = student.unsqueeze(0), teacher_lp.unsqueeze(0), ids.unsqueeze(0)  # [1, N, *]
    ours_in = student.clone().requires_grad_()
    verl_in = student.clone().requires_grad_()
    ours = topk_divergences(ours_in, teacher_lp, ids, jsd_beta=0.5, log_prob_min_clamp=clamp)
    theirs = _verl_forward_kl(verl_in, teacher_lp, ids, clamp, chunked)
    assert ours["forward_kl"].shape == theirs["distillation_losses"].shape == (1, 11)
    assert torch.allclose(ours["forward_kl"], theirs["distillation_losses"], atol=1e-6, rtol=0)
    assert torch.allclose(ours["student_mass"], theirs["student_mass"], atol=1e-6)
    assert torch.allclose(ours["teacher_mass"], theirs["teacher_mass"], atol=1e-6)
    upstream = torch.rand(1, 11)
    (ours["forward_kl"] * upstream).sum().backward()
    (theirs["distillation_losses"] * upstream).sum().backward()
    assert torch.allclose(ours_in.grad, verl_in.grad, atol=1e-6)


def test_topk_forward_kl_can_be_negative_like_verl():
    # the student puts more mass on the teacher's top-k than the teacher does: unnormalised "KL" < 0
    teacher_lp = torch.log(torch.tensor([[0.3, 0.2]], dtype=torch.float64))
    ids = torch.tensor([[0, 1]])
    student = torch.tensor([[5.0, 5.0, -5.0, -5.0]], dtype=torch.float64)
    out = topk_divergences(student, teacher_lp, ids)
    assert out["forward_kl"].item() < 0
    assert out["reverse_kl"].item() >= 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 10), st.data(), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_topk_properties(n, v, data, seed, beta):
    k = data.draw(st.integers(1, v))
    student, teacher_lp, ids = _topk_inputs(n, v, k, seed=seed)
    x = student.clone().requires_grad_()
    out = topk_divergences(x, teacher_lp, ids, jsd_beta=beta)
    assert (out["reverse_kl"] >= -1e-12).all() and (out["jsd"] >= -1e-12).all()
    # log-sum inequality: the unnormalised top-k forward KL is >= P log(P / Q) (P, Q: top-k masses); may be < 0
    lower = out["teacher_mass"] * torch.log(out["teacher_mass"] / out["student_mass"])
    assert (out["forward_kl"] >= lower - 1e-9).all()
    sum(out[key].sum() for key in ("forward_kl", "reverse_kl", "jsd")).backward()
    assert torch.isfinite(x.grad).all()


def test_topk_full_support_equals_full_vocab_divergences():
    student, teacher = _logits(5, 12, seed=8)
    teacher_lp = torch.log_softmax(teacher, -1)
    ids = torch.argsort(torch.rand(5, 12), -1)  # K == V, any order
    out = topk_divergences(student, teacher_lp.gather(-1, ids), ids, jsd_beta=0.25)
    for kind, key, beta in [("forward_kl", "forward_kl", 0.5), ("reverse_kl", "reverse_kl", 0.5), ("jsd", "jsd", 0.25)]:
        full = chunked_divergence(student, teacher, kind, beta=beta)
        assert torch.allclose(out[key], full, atol=1e-10), key


def test_topk_jsd_endpoints_follow_trl_convention():
    student, teacher_lp, ids = _topk_inputs(seed=9)
    out0 = topk_divergences(student, teacher_lp, ids, jsd_beta=0.0)
    out1 = topk_divergences(student, teacher_lp, ids, jsd_beta=1.0)
    renorm_forward = topk_divergences(student, teacher_lp - torch.logsumexp(teacher_lp, -1, keepdim=True), ids)
    assert torch.allclose(out1["jsd"], out1["reverse_kl"], atol=1e-12)  # beta = 1: KL(S || T)
    q_hat = torch.softmax(gathered_log_softmax(student, ids), -1)
    p_hat = torch.softmax(teacher_lp, -1)
    assert torch.allclose(out0["jsd"], (p_hat * (p_hat.log() - q_hat.log())).sum(-1), atol=1e-12)  # KL(T || S)
    assert renorm_forward["forward_kl"].shape == out0["jsd"].shape
    with pytest.raises(ValueError, match="jsd_beta"):
        topk_divergences(student, teacher_lp, ids, jsd_beta=-0.1)


def test_topk_finite_with_masked_student_logits():
    student, teacher_lp, ids = _topk_inputs(n=4, v=10, k=3, seed=10)
    student = student.clone()
    not_topk = torch.ones_like(student, dtype=torch.bool).scatter_(-1, ids, False)
    student[not_topk & (torch.rand_like(student) < 0.5)] = NEG_INF  # masked vocab outside the top-k
    student[0, ids[0, 2]] = NEG_INF  # and one teacher token the student cannot produce
    x = student.requires_grad_()
    out = topk_divergences(x, teacher_lp, ids, jsd_beta=0.5, log_prob_min_clamp=-10.0)
    sum(out[key].sum() for key in ("forward_kl", "reverse_kl", "jsd")).backward()
    for key in ("forward_kl", "reverse_kl", "jsd"):
        assert torch.isfinite(out[key]).all(), key
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_gathered_log_softmax(dtype):
    student, _ = _logits(7, 13, dtype=dtype, seed=11)
    ids = torch.randint(0, 13, (7, 4))
    got = gathered_log_softmax(student, ids, chunk_size=3)
    expected = torch.log_softmax(student.double(), -1).gather(-1, ids)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    if dtype == torch.float64:
        x = student.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda z: gathered_log_softmax(z, ids, chunk_size=2), (x,))
    with pytest.raises(ValueError, match="ids"):
        gathered_log_softmax(student, torch.full((7, 1), 13))


def test_kd_modules_do_not_import_verl():
    import ast
    import pathlib

    import verl_frontier.kd.chunked as chunked_mod
    import verl_frontier.kd.topk as topk_mod

    for mod in (chunked_mod, topk_mod):
        tree = ast.parse(pathlib.Path(mod.__file__).read_text())
        names = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not any(name == "verl" or name.startswith("verl.") for name in names), mod.__name__
