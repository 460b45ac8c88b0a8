"""Numerics of every divergence, loss and estimator of verl-frontier: probabilities that underflow in float32
or bf16, zero-probability (-inf) log-probs from vLLM and masked logits, Paced's weight normalisation against
verl's loss aggregation, and finite values / gradients for any finite input (hypothesis).

References are float64 and written out here (explicit softmax, Python loops over rows)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_frontier.ace.advantage import ace_advantages, confidence_shift
from verl_frontier.asgld.optimizers import AGLD, ASG, ASGLD
from verl_frontier.essence.losses import essence_kd_loss, essence_token_loss, masked_token_mean
from verl_frontier.kd.chunked import chunked_divergence
from verl_frontier.kd.topk import LOG_PROB_FLOOR, gathered_log_softmax, topk_divergences
from verl_frontier.opsdc.losses import full_vocab_divergence, topk_divergence
from verl_frontier.paced.losses import AGG_MODES, aggregation_scale, select_divergence, weighted_sequence_loss
from verl_frontier.paced.weights import beta_kernel_weight, normalize_weights

KINDS = ("forward_kl", "reverse_kl", "jsd")
NEG_INF = float("-inf")
LOW_PRECISION = (torch.float32, torch.bfloat16)


# --------------------------------------------------------------------------------------------- references


def _slow_full_vocab(student_row, teacher_row, kind, beta=0.5):
    """One token in float64 Python: explicit softmax; the JSD mixture as exact sums (terms with a = 0 skipped)."""

    def log_softmax(z):
        m = max(z)
        lse = m + math.log(sum(math.exp(x - m) for x in z))
        return [x - lse for x in z]

    ls, lt = log_softmax([float(x) for x in student_row]), log_softmax([float(x) for x in teacher_row])
    q, p = [math.exp(x) for x in ls], [math.exp(x) for x in lt]

    def kl(a, log_a, log_b):
        return sum(ai * (la - lb) for ai, la, lb in zip(a, log_a, log_b, strict=True) if ai > 0)

    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return kl(p, lt, ls)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return kl(q, ls, lt)
    # log M_v = log(beta p_v + (1 - beta) q_v) from log-probs, exact in float64 for these magnitudes
    lm = [
        max(math.log(beta) + a, math.log1p(-beta) + b)
        + math.log1p(math.exp(-abs((math.log(beta) + a) - (math.log1p(-beta) + b))))
        for a, b in zip(lt, ls, strict=True)
    ]
    return beta * kl(p, lt, lm) + (1 - beta) * kl(q, ls, lm)


def _slow_topk(student_row, teacher_lp_row, ids_row, kind, beta=0.5, clamp=None):
    """One token of :func:`topk_divergences` with its documented zero-probability rules, float64 Python."""
    z = [float(x) for x in student_row]
    m = max(z)
    log_sum = math.log(sum(math.exp(x - m) for x in z if x != NEG_INF))
    s = [(z[i] - m) - log_sum for i in ids_row]  # max first: exact even for logits of -3e38
    t = [float(x) for x in teacher_lp_row]
    if kind == "forward_kl":
        total = 0.0
        for si, ti in zip(s, t, strict=True):
            if ti == NEG_INF:
                continue  # zero-probability teacher token
            if clamp is not None:
                si, ti = max(si, clamp), max(ti, clamp)
            total += math.exp(ti) * (ti - max(si, LOG_PROB_FLOOR))
        return total
    t = [max(x, LOG_PROB_FLOOR) for x in t]

    def renorm(lp):
        finite = [x for x in lp if x != NEG_INF]
        if not finite:  # no mass on the support at all: q̂ = 0 everywhere
            return [NEG_INF] * len(lp)
        mx = max(finite)
        lz = mx + math.log(sum(math.exp(x - mx) for x in finite))
        return [x - lz for x in lp]

    sh, th = renorm(s), renorm(t)
    q, p = [math.exp(x) for x in sh], [math.exp(x) for x in th]

    def kl(a, la, lb):
        return sum(ai * (x - y) for ai, x, y in zip(a, la, lb, strict=True) if ai > 0)

    if kind == "reverse_kl" or beta == 1:
        return kl(q, sh, th)
    if beta == 0:
        return kl(p, th, sh)
    mix = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q, strict=True)]
    lm = [math.log(x) if x > 0 else NEG_INF for x in mix]
    return beta * kl(p, th, lm) + (1 - beta) * kl(q, sh, lm)


# --------------------------------------------------------------------------------------------- 1. underflow


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("beta", [0.5, 0.1, 0.9])
@pytest.mark.parametrize("gap", [-103.0, -200.0, -1e4])
def test_jsd_of_identical_distributions_with_an_underflowing_probability_is_zero(dtype, beta, gap):
    """student = teacher: the true JSD is 0, gradient 0, however small a probability (it used to be inf)."""
    logits = torch.tensor([[0.0, gap], [gap, 0.0], [3.0, 3.0 + gap]], dtype=dtype)
    x = logits.clone().requires_grad_()
    loss = chunked_divergence(x, logits, "jsd", beta=beta)
    loss.sum().backward()
    # 0 up to the rounding of log M = logaddexp(log beta + log p, log(1 - beta) + log q) = log p (float32 ulps)
    assert torch.isfinite(loss).all() and loss.abs().max().item() < 1e-6
    assert torch.isfinite(x.grad.float()).all() and x.grad.abs().max().item() < 1e-6
    # the same through OPSDC's full-vocabulary loss (loss=jsd, topk=0)
    y = logits.clone().requires_grad_()
    opsdc = full_vocab_divergence(y, logits, kind="jsd", beta=beta)
    opsdc.sum().backward()
    assert torch.isfinite(opsdc).all() and opsdc.abs().max().item() < 1e-6
    assert torch.isfinite(y.grad.float()).all() and y.grad.abs().max().item() < 1e-6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_full_vocab_divergences_with_tiny_probabilities_match_float64(kind, dtype):
    """Rows whose probabilities span e^0 .. e^-150 (below float32's subnormals): finite, and equal to the
    float64 value (which the tiny terms do not change) within the input rounding."""
    gen = torch.Generator().manual_seed(0)
    n, v = 6, 9
    student = torch.randn(n, v, generator=gen) * 2
    teacher = torch.randn(n, v, generator=gen) * 2
    student[:, :3] -= torch.tensor([95.0, 110.0, 150.0])  # tiny student probabilities
    teacher[:, 3:6] -= torch.tensor([95.0, 110.0, 150.0])  # tiny teacher probabilities
    teacher[0, :3] -= 104.0  # both tiny in the same columns
    student, teacher = student.to(dtype), teacher.to(dtype)
    for beta in (0.5, 0.2):
        upstream = torch.rand(n, generator=gen)
        x = student.clone().requires_grad_()
        loss = chunked_divergence(x, teacher, kind, beta=beta, chunk_size=4)
        loss.backward(upstream)
        assert torch.isfinite(loss).all() and torch.isfinite(x.grad.float()).all()
        expected = torch.tensor(
            [
                _slow_full_vocab(student[i].double().tolist(), teacher[i].double().tolist(), kind, beta)
                for i in range(n)
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
        # float64 input: the same value to float64 precision, and the float32 gradient agrees with it
        x64 = student.double().requires_grad_()
        ref = chunked_divergence(x64, teacher.double(), kind, beta=beta)
        ref.backward(upstream.double())
        torch.testing.assert_close(ref, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-2, atol=1e-5)


# --------------------------------------------------------------------------------------------- 2. -inf


def _topk_case(seed, n=4, v=9, k=4, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    student = (torch.randn(n, v, generator=gen) * 2).to(dtype)
    top = torch.log_softmax(torch.randn(n, v, generator=gen) * 3, -1).topk(k, -1)
    return student, top.values.clone(), top.indices


@pytest.mark.parametrize("clamp", [None, -10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_topk_with_minus_inf_teacher_log_probs(clamp, dtype):
    student, teacher_lp, ids = _topk_case(1, dtype=dtype)
    teacher_lp[0, -1] = NEG_INF  # one zero-probability token (vLLM)
    teacher_lp[1, -2:] = NEG_INF
    teacher_lp[2] = NEG_INF  # no teacher information at all
    teacher_lp[3, 1] = -1e4  # very negative but finite
    x = student.clone().requires_grad_()
    out = topk_divergences(x, teacher_lp, ids, jsd_beta=0.5, log_prob_min_clamp=clamp)
    sum(out[key].sum() for key in KINDS).backward()
    for key in KINDS:
        assert torch.isfinite(out[key]).all(), key
        expected = [
            _slow_topk(student[i].double().tolist(), teacher_lp[i].tolist(), ids[i].tolist(), key, 0.5, clamp)
            for i in range(student.shape[0])
        ]
        torch.testing.assert_close(out[key].double(), torch.tensor(expected, dtype=torch.float64), rtol=2e-5, atol=1e-5)
    assert torch.isfinite(x.grad.float()).all()
    # a -inf teacher token contributes exactly 0 to forward KL: same value as without that token
    dropped = topk_divergences(student[:1], teacher_lp[:1, :-1], ids[:1, :-1], log_prob_min_clamp=clamp)
    assert out["forward_kl"][0].item() == dropped["forward_kl"][0].item()
    assert out["forward_kl"][2].item() == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_topk_with_masked_and_very_negative_student_logits(kind):
    student, teacher_lp, ids = _topk_case(2)
    student[0, ids[0, 0]] = NEG_INF  # the student cannot produce the teacher's top token
    student[1, ids[1]] = NEG_INF  # nor any of them
    student[2, ids[2, 1]] = -1e4
    student[3] = -3e38  # a whole row at the bottom of float32
    x = student.clone().requires_grad_()
    out = topk_divergences(x, teacher_lp, ids, jsd_beta=0.5)
    out[kind].sum().backward()
    assert torch.isfinite(out[kind]).all() and torch.isfinite(x.grad).all()
    expected = [_slow_topk(student[i].tolist(), teacher_lp[i].tolist(), ids[i].tolist(), kind) for i in range(4)]
    torch.testing.assert_close(out[kind].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    if kind == "forward_kl":
        # the value is floored, the gradient is the true one: d/dz sum_k p_k (log p_k - log q_k) = P q - p
        z = student[:1].double()
        q = torch.softmax(z, -1)
        p = torch.zeros_like(z).scatter_(-1, ids[:1], teacher_lp[:1].double().exp())
        torch.testing.assert_close(x.grad[:1].double(), p.sum() * q - p, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- 3. Paced weights


def _agg_loss(loss_mat, mask, mode, **kwargs):
    from verl.trainer.ppo.core_algos import agg_loss

    return agg_loss(loss_mat=loss_mat, loss_mask=mask, loss_agg_mode=mode, **kwargs)


def _slow_paced_objective(token_losses, mask, weights):
    """sum_i w_i l_i / sum_i w_i over rows with >= 1 token; l_i the token-mean of row i. Python float64."""
    num = den = 0.0
    for row, m, w in zip(token_losses.tolist(), mask.tolist(), weights.tolist(), strict=True):
        kept = [x for x, keep in zip(row, m, strict=True) if keep]
        if kept:
            num += w * sum(kept) / len(kept)
            den += w
    return num / den if den else 0.0


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("global_info", [True, False])
def test_paced_aggregation_equals_weighted_objective_for_every_mode(mode, global_info):
    pytest.importorskip("verl")
    gen = torch.Generator().manual_seed(7)
    token_losses = torch.rand(6, 5, generator=gen, dtype=torch.float64) * 3
    mask = (torch.rand(6, 5, generator=gen) < 0.7).to(torch.float64)
    mask[0, :2] = 1.0
    mask[2] = 0.0  # empty response
    mask[4] = 0.0  # fully masked row (e.g. an Essence segment mask)
    weights = beta_kernel_weight(torch.tensor([0.25, 0.5, 0.75, 0.5, 0.25, 0.75], dtype=torch.float64), 2.0, 1.0)
    # as the estimator does: rows without response tokens get weight 0, then mean 1 over all rows
    w_tilde = normalize_weights(torch.where(mask.sum(-1) > 0, weights, 0.0), "mean")
    assert w_tilde.sum().item() == pytest.approx(6.0)
    kwargs = {"dp_size": 1, "loss_scale_factor": 7}
    if global_info:
        kwargs.update(batch_num_tokens=int(mask.sum()), global_batch_size=6)
    scale = aggregation_scale(mask, mode, dtype=torch.float64, **kwargs)
    got = _agg_loss(token_losses * w_tilde[:, None] * scale, mask, mode, **kwargs)
    expected = _slow_paced_objective(token_losses, mask, weights)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    ours, _ = weighted_sequence_loss(token_losses, mask, weights)
    assert ours.item() == pytest.approx(expected, rel=1e-12)


def test_paced_aggregation_over_data_parallel_ranks():
    """Two ranks, each with half of the rows: the mean over ranks of the per-rank losses (what FSDP's
    gradient averaging optimises) is the objective over all rows."""
    pytest.importorskip("verl")
    gen = torch.Generator().manual_seed(8)
    token_losses = torch.rand(8, 4, generator=gen, dtype=torch.float64)
    mask = (torch.rand(8, 4, generator=gen) < 0.6).to(torch.float64)
    mask[:, 0] = 1.0
    mask[3] = 0.0
    mask[6] = 0.0
    weights = torch.rand(8, generator=gen, dtype=torch.float64)
    w_tilde = normalize_weights(torch.where(mask.sum(-1) > 0, weights, 0.0), "mean")
    expected = _slow_paced_objective(token_losses, mask, weights)
    for mode in AGG_MODES:
        kwargs = {"dp_size": 2, "batch_num_tokens": int(mask.sum()), "global_batch_size": 8, "loss_scale_factor": 3}
        per_rank = []
        for rows in (slice(0, 4), slice(4, 8)):
            m = mask[rows]
            scale = aggregation_scale(m, mode, dtype=torch.float64, **kwargs)
            per_rank.append(_agg_loss(token_losses[rows] * w_tilde[rows, None] * scale, m, mode, **kwargs))
        assert (sum(per_rank) / 2).item() == pytest.approx(expected, rel=1e-12), mode


def test_aggregation_scale_rejects_unknown_mode():
    with pytest.raises(ValueError, match="loss_agg_mode"):
        aggregation_scale(torch.ones(2, 3), "seq-sum")


VOCAB = 7


def _nested(values, lengths):
    return torch.nested.as_nested_tensor(list(torch.split(values, list(lengths))), layout=torch.jagged)


def _verl_micro_batch(prompt_lens, response_masks, student_logits, teacher_logits, weights, codes, global_batch_size):
    """verl's no-padding micro-batch for the distillation losses (teacher top-k = the whole vocabulary)."""
    from verl.utils import tensordict_utils as tu

    response_lens = [len(m) for m in response_masks]
    seq_lens = [p + r for p, r in zip(prompt_lens, response_lens, strict=True)]
    total = sum(seq_lens)
    top = torch.log_softmax(teacher_logits.float(), -1).topk(teacher_logits.shape[-1], dim=-1)
    input_ids = torch.arange(total) % teacher_logits.shape[-1]
    mask = torch.cat([torch.as_tensor(m, dtype=torch.long) for m in response_masks])
    responses = torch.cat(
        [input_ids[sum(seq_lens[:i]) + p : sum(seq_lens[: i + 1])] for i, p in enumerate(prompt_lens)]
    )
    # teacher log-prob of the sampled (next) token, for the estimator losses (paced_k1 / paced_k3)
    sampled = torch.log_softmax(teacher_logits.float(), -1).gather(1, torch.roll(input_ids, -1)[:, None])
    return tu.get_tensordict(
        {
            "prompts": _nested(torch.zeros(sum(prompt_lens), dtype=torch.long), prompt_lens),
            "responses": _nested(responses, response_lens),
            "input_ids": _nested(input_ids, seq_lens),
            "response_mask": _nested(mask, response_lens),
            "teacher_logprobs": _nested(top.values, seq_lens),
            "teacher_ids": _nested(top.indices, seq_lens),
            "teacher_sampled": _nested(sampled, seq_lens),
            "advantages": _nested(torch.repeat_interleave(weights.float(), torch.tensor(response_lens)), response_lens),
            "returns": _nested(torch.repeat_interleave(codes.float(), torch.tensor(response_lens)), response_lens),
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": int(mask.sum()), "global_batch_size": global_batch_size},
    )


def _run_distillation_loss(loss_mode, data, student_logits, loss_agg_mode, loss_scale_factor=None):
    """verl's distillation_ppo_loss as the FSDP worker calls it: logits processor (top-k modes), then loss."""
    from verl.trainer.distillation.losses import distillation_ppo_loss, get_distillation_loss_settings
    from verl.workers.config import ActorConfig, DistillationLossConfig

    import verl_frontier.essence.verl_plugin  # noqa: F401  (registers essence_kd_topk)
    import verl_frontier.paced.verl_plugin  # noqa: F401  (registers paced_*)

    actor = ActorConfig(
        strategy="fsdp2",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode=loss_agg_mode,
        loss_scale_factor=loss_scale_factor,
    )
    use_topk = get_distillation_loss_settings(loss_mode).use_topk
    loss_cfg = DistillationLossConfig(
        loss_mode=loss_mode,
        topk=VOCAB if use_topk else None,
        use_task_rewards=False,
        use_policy_gradient=False,
        loss_max_clamp=None,
        log_prob_min_clamp=None,
    )
    distill = SimpleNamespace(enabled=True, distillation_loss=loss_cfg)
    cu = data["input_ids"].offsets()
    model_output = {}
    if use_topk:
        outputs = distillation_ppo_loss(actor, distill, data=data, student_logits=student_logits.unsqueeze(0))
        model_output = {k: torch.nested.nested_tensor_from_jagged(v.squeeze(0), cu) for k, v in outputs.items()}
    else:
        data = data.clone()
        data["teacher_logprobs"] = data["teacher_sampled"]
    rolled = torch.roll(data["input_ids"].values(), shifts=-1)
    log_probs = torch.log_softmax(student_logits.float(), -1).gather(1, rolled[:, None]).squeeze(1)
    model_output["log_probs"] = torch.nested.nested_tensor_from_jagged(log_probs, cu)
    return distillation_ppo_loss(actor, distill, model_output=model_output, data=data)


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("global_batch_size", [6, None])
def test_paced_estimator_and_loss_through_verl_give_the_weighted_objective(mode, global_batch_size):
    """compute_advantage(adv_estimator=paced) on a batch with an empty response, then the paced_forward_kl_topk
    loss on that batch through verl's distillation_ppo_loss: sum_i w_i l_i / sum_i w_i over the non-empty rows,
    whatever loss_agg_mode (it was off by the empty row's share of the weight normalisation)."""
    pytest.importorskip("verl")
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from verl_frontier import driver_hooks

    scores = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    uids = ["a", "a", "a", "b", "b", "b"]  # p = 1/3 and 2/3: w = p^2 (1 - p) = 2/27 and 4/27
    prompt_lens = [2, 1, 3, 1, 2, 2]
    response_masks = [[1, 1, 0], [1], [0, 0], [1, 0, 1, 1], [1, 1], [0, 1]]  # row 2: empty response
    width = 4
    mask = torch.zeros(6, width)
    rewards = torch.zeros(6, width)
    for i, m in enumerate(response_masks):
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
        rewards[i, len(m) - 1] = scores[i]
    batch = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask})
    batch.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    driver_hooks.set_current_step(None)
    config = OmegaConf.create({"adv_estimator": "paced", "paced": {"alpha": 2.0, "beta": 1.0}})
    out = compute_advantage(batch, adv_estimator="paced", num_repeat=3, config=config)
    driver_hooks.pop_step_metrics()
    advantages = out.batch["advantages"]
    assert advantages[2].abs().sum().item() == 0.0
    row_weights = advantages.sum(-1) / mask.sum(-1).clamp_min(1)  # the w̃_i written by the estimator

    gen = torch.Generator().manual_seed(11)
    total = sum(p + len(m) for p, m in zip(prompt_lens, response_masks, strict=True))
    student_logits = (torch.randn(total, VOCAB, generator=gen) * 2).requires_grad_()
    teacher_logits = torch.randn(total, VOCAB, generator=gen) * 2
    data = _verl_micro_batch(
        prompt_lens, response_masks, student_logits, teacher_logits, row_weights, torch.zeros(6), global_batch_size
    )
    loss, _ = _run_distillation_loss("paced_forward_kl_topk", data, student_logits, mode, loss_scale_factor=5)

    # reference: token-mean forward KL of each non-empty row, weighted by the raw w = p^2 (1 - p)
    raw = {"a": (1 / 3) ** 2 * (2 / 3), "b": (2 / 3) ** 2 * (1 / 3)}
    token_losses = torch.zeros(6, width, dtype=torch.float64)
    offset = 0
    for i, (p_len, m) in enumerate(zip(prompt_lens, response_masks, strict=True)):
        for j in range(len(m)):
            row = offset + p_len - 1 + j  # the logits predicting response token j
            token_losses[i, j] = _slow_full_vocab(
                teacher_logits[row].tolist(), student_logits[row].tolist(), "reverse_kl"
            )  # KL(teacher || student)
        offset += p_len + len(m)
    expected = _slow_paced_objective(token_losses, mask.double(), torch.tensor([raw[u] for u in uids]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss_mode", ["essence_kd_topk", "paced_forward_kl_topk", "paced_k1"])
def test_registered_losses_with_minus_inf_teacher_log_probs(loss_mode):
    """verl's own top-k processor gives p (log p - log q) = 0 * inf = NaN for a -inf teacher entry; ours
    (used by essence_kd_topk and paced_*) gives the forward KL without that token."""
    pytest.importorskip("verl")
    gen = torch.Generator().manual_seed(12)
    prompt_lens, response_masks = [2, 1], [[1, 1], [1, 0, 1]]
    seq_lens = [4, 4]
    student_logits = torch.randn(sum(seq_lens), VOCAB, generator=gen, requires_grad=True)
    teacher_logits = torch.randn(sum(seq_lens), VOCAB, generator=gen)

    def run(teacher_top_k):
        batch = _verl_micro_batch(
            prompt_lens, response_masks, student_logits, teacher_logits, torch.ones(2), torch.zeros(2), 2
        )
        if teacher_top_k is not None:
            top = torch.log_softmax(teacher_logits, -1).topk(teacher_top_k, -1)
            batch["teacher_logprobs"], batch["teacher_ids"] = (
                _nested(top.values, seq_lens),
                _nested(top.indices, seq_lens),
            )
        return batch

    batch = run(None)
    batch["teacher_logprobs"].values()[:, -2:] = NEG_INF  # the two least likely teacher tokens
    batch["teacher_sampled"].values()[3] = NEG_INF
    loss, _ = _run_distillation_loss(loss_mode, batch, student_logits, "token-mean")
    (grad,) = torch.autograd.grad(loss, student_logits)
    _assert_finite(loss, grad)
    if loss_mode != "paced_k1":  # = the same loss on the teacher's top-(V - 2) ids
        want, _ = _run_distillation_loss(loss_mode, run(VOCAB - 2), student_logits, "token-mean")
        assert loss.item() == pytest.approx(want.item(), rel=1e-6)
        (want_grad,) = torch.autograd.grad(want, student_logits)
        torch.testing.assert_close(grad, want_grad)


# --------------------------------------------------------------------------------------------- 4. properties
#
# Every loss and estimator: finite values and finite gradients for any finite logits in [-1e4, 1e4], any mask
# (all-zero included), any weights >= 0, in float32 and bf16.

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
dtypes = st.sampled_from(LOW_PRECISION)
betas = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])


#: logits whose differences put probabilities at the edges of float32 / bf16 (e^-88: smallest normal float32,
#: e^-103: subnormal, e^-150: 0), mixed with arbitrary finite values
edge_logits = st.sampled_from([0.0, 1.0, -88.0, -95.0, -100.0, -103.0, -104.0, -150.0, -1e4, 1e4])
logit_values = st.one_of(edge_logits, edge_logits, finite)  # 2:1 edge values : arbitrary ones


@st.composite
def logit_pairs(draw, max_rows=3, max_vocab=6):
    """(student, teacher) [n, v]; the teacher is sometimes the student itself or the student shifted in one
    column (divergences near 0, where a mixture or difference of tiny probabilities is most exposed)."""
    n, v = draw(st.integers(1, max_rows)), draw(st.integers(2, max_vocab))
    student = torch.tensor(draw(st.lists(logit_values, min_size=n * v, max_size=n * v))).reshape(n, v)
    how = draw(st.sampled_from(["free", "same", "same", "shifted"]))
    if how == "free":
        teacher = torch.tensor(draw(st.lists(logit_values, min_size=n * v, max_size=n * v))).reshape(n, v)
    else:
        teacher = student.clone()
        if how == "shifted":
            teacher[:, draw(st.integers(0, v - 1))] += draw(st.sampled_from([-100.0, -1.0, 1.0]))
        teacher = teacher.clamp(-1e4, 1e4)
    return student, teacher


def _assert_finite(*tensors):
    for t in tensors:
        assert t is not None and torch.isfinite(t.float()).all(), t


def _value_and_grad(fn, student, dtype):
    x = student.to(dtype).requires_grad_()
    out = fn(x)
    total = sum(v.float().sum() for v in (out if isinstance(out, tuple) else (out,)))
    total.backward()
    return out, x.grad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logit_pairs(), st.sampled_from(KINDS), betas, dtypes, st.sampled_from([1.0, 0.7]))
def test_property_full_vocab_divergences_finite(pair, kind, beta, dtype, temperature):
    student, teacher = pair
    teacher = teacher.to(dtype)
    out, grad = _value_and_grad(
        lambda x: chunked_divergence(x, teacher, kind, beta=beta, chunk_size=2, temperature=temperature), student, dtype
    )
    _assert_finite(out, grad)
    assert (out >= -1e-3 * (1 + out.abs().max())).all()  # a divergence (up to rounding)
    out, grad = _value_and_grad(lambda x: full_vocab_divergence(x, teacher, kind=kind, beta=beta), student, dtype)
    _assert_finite(out, grad)


@st.composite
def logit_rows(draw, max_rows=3, max_vocab=6):
    """[n, v] logits as row offset + per-column gaps, the gaps often where e^gap is a float32 subnormal."""
    n, v = draw(st.integers(1, max_rows)), draw(st.integers(2, max_vocab))
    gaps = st.one_of(st.floats(-104.0, -86.0), st.floats(-200.0, 0.0), st.just(0.0))
    rows = [[draw(gaps) for _ in range(v)] for _ in range(n)]
    offsets = draw(st.lists(st.floats(-100.0, 100.0), min_size=n, max_size=n))
    return (torch.tensor(rows) + torch.tensor(offsets)[:, None]).clamp(-1e4, 1e4)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logit_rows(), st.sampled_from([0.5, 0.5, 0.3, 0.7]), dtypes)
def test_property_jsd_of_a_distribution_with_itself_is_zero(logits, beta, dtype):
    """JSD(p, p) = 0 with zero gradient, whatever tiny probabilities p has (full vocabulary and top-k)."""
    logits = logits.to(dtype)
    out, grad = _value_and_grad(lambda x: chunked_divergence(x, logits, "jsd", beta=beta), logits, dtype)
    _assert_finite(out, grad)
    assert out.abs().max().item() < 1e-5 and grad.float().abs().max().item() < 1e-5
    top = torch.log_softmax(logits.float(), -1).topk(logits.shape[-1], -1)
    out, grad = _value_and_grad(
        lambda x: topk_divergences(x, top.values, top.indices, jsd_beta=beta)["jsd"], logits, dtype
    )
    _assert_finite(out, grad)
    assert out.abs().max().item() < 1e-5 and grad.float().abs().max().item() < 1e-5


@PROPERTY
@given(
    logit_pairs(max_vocab=8),
    st.integers(1, 8),
    betas,
    dtypes,
    st.sampled_from([None, -10.0]),
    st.lists(st.booleans(), min_size=24, max_size=24),
)
def test_property_topk_divergences_finite(pair, k, beta, dtype, clamp, zero_teacher):
    student, teacher = pair
    k = min(k, student.shape[1])
    top = torch.log_softmax(teacher, -1).topk(k, -1)
    teacher_lp = top.values.clone()
    zero = torch.tensor(zero_teacher[: teacher_lp.numel()]).reshape(teacher_lp.shape)
    teacher_lp[zero] = NEG_INF  # zero-probability teacher tokens, as vLLM reports them
    out, grad = _value_and_grad(
        lambda x: tuple(
            topk_divergences(x, teacher_lp, top.indices, jsd_beta=beta, log_prob_min_clamp=clamp)[key] for key in KINDS
        ),
        student,
        dtype,
    )
    _assert_finite(*out, grad)
    for kind in KINDS:
        res, grad = _value_and_grad(
            lambda x, kind=kind: topk_divergence(x, teacher.to(dtype), k, kind, beta)["loss"], student, dtype
        )
        _assert_finite(res, grad)
    res, grad = _value_and_grad(lambda x: gathered_log_softmax(x, top.indices), student, dtype)
    _assert_finite(res, grad)


@st.composite
def masked_batches(draw, max_rows=4, max_len=4):
    b, t = draw(st.integers(1, max_rows)), draw(st.integers(1, max_len))
    values = torch.tensor(draw(st.lists(finite, min_size=b * t, max_size=b * t))).reshape(b, t)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).reshape(b, t)
    weights = torch.tensor(draw(st.lists(st.floats(0, 1e4, width=32), min_size=b, max_size=b)))
    return values, mask, weights


@PROPERTY
@given(masked_batches(), dtypes, st.sampled_from(AGG_MODES), st.booleans())
def test_property_paced_aggregation_finite(batch, dtype, mode, global_info):
    pytest.importorskip("verl")
    values, mask, weights = batch
    token_losses = values.abs()  # divergences are >= 0 (any finite value works for weighted_sequence_loss too)
    loss, grad = _value_and_grad(lambda x: weighted_sequence_loss(x, mask, weights)[0], token_losses, dtype)
    _assert_finite(loss, grad)
    w_tilde = normalize_weights(torch.where(mask.any(-1), weights, 0.0), "mean")
    _assert_finite(w_tilde, beta_kernel_weight(weights.clamp(0, 1), 1.0, 1.0))
    rows, tokens = mask.shape[0], int(mask.sum())
    kwargs = {"dp_size": 1, "batch_num_tokens": tokens, "global_batch_size": rows} if global_info else {}
    scale = aggregation_scale(mask, mode, dtype=torch.float32, **kwargs)
    _assert_finite(scale)
    if tokens == 0 and (mode == "token-mean" or (mode.startswith("seq") and not global_info)):
        return  # verl's agg_loss itself divides 0 by 0 here (no token / no row in the whole batch)
    agg, grad = _value_and_grad(
        lambda x: _agg_loss(x.float() * w_tilde[:, None] * scale, mask.float(), mode, **kwargs), token_losses, dtype
    )
    _assert_finite(agg, grad)
    codes = torch.arange(mask.shape[0]) % 3
    selected, grad = _value_and_grad(lambda x: select_divergence(x, 2 * x, 3 * x, codes), token_losses, dtype)
    _assert_finite(selected, grad)


REGISTERED_LOSSES = (
    "paced_topk",
    "paced_forward_kl_topk",
    "paced_reverse_kl_topk",
    "paced_jsd_topk",
    "paced_k1",
    "paced_k3",
    "essence_kd_topk",
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(REGISTERED_LOSSES),
    st.sampled_from(AGG_MODES),
    st.data(),
)
def test_property_registered_distillation_losses_finite(loss_mode, mode, data):
    """The registered losses through verl's distillation_ppo_loss, as the FSDP actor calls them."""
    pytest.importorskip("verl")
    rows = data.draw(st.integers(1, 3))
    prompt_lens = data.draw(st.lists(st.integers(1, 2), min_size=rows, max_size=rows))
    response_masks = data.draw(st.lists(st.lists(st.booleans(), min_size=1, max_size=3), min_size=rows, max_size=rows))
    total = sum(p + len(m) for p, m in zip(prompt_lens, response_masks, strict=True))
    values = data.draw(st.lists(finite, min_size=2 * total * VOCAB, max_size=2 * total * VOCAB))
    logits = torch.tensor(values).reshape(2, total, VOCAB)
    weights = torch.tensor(data.draw(st.lists(st.floats(0, 1e4, width=32), min_size=rows, max_size=rows)))
    codes = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=rows, max_size=rows)))
    dtype = data.draw(dtypes)
    student_logits = logits[0].to(dtype).requires_grad_()
    batch = _verl_micro_batch(prompt_lens, response_masks, student_logits, logits[1], weights, codes, rows)
    # zero-probability teacher entries (-inf, as vLLM reports them), top-k and sampled-token alike
    zero = torch.tensor(data.draw(st.lists(st.booleans(), min_size=total * VOCAB, max_size=total * VOCAB)))
    batch["teacher_logprobs"].values()[zero.reshape(total, VOCAB)] = NEG_INF
    batch["teacher_sampled"].values()[zero.reshape(total, VOCAB)[:, :1]] = NEG_INF
    if not any(any(m) for m in response_masks):
        # verl's own distillation_loss cannot take a micro-batch without a response token (the min() of its
        # loss-range metric fails on an empty tensor); our part of it is covered by the aggregation property
        return
    loss, _ = _run_distillation_loss(loss_mode, batch, student_logits, mode, loss_scale_factor=4)
    loss.backward()
    _assert_finite(loss, student_logits.grad)


@PROPERTY
@given(logit_pairs(max_rows=4), st.lists(st.booleans(), min_size=4, max_size=4), st.floats(0, 1), dtypes)
def test_property_essence_losses_finite(pair, keep, ce_weight, dtype):
    student, teacher = pair
    n = student.shape[0]
    targets = torch.arange(n) % student.shape[1]
    mask = torch.tensor(keep[:n], dtype=torch.float32)
    loss, grad = _value_and_grad(
        lambda x: essence_kd_loss(x, teacher.to(dtype), targets, mask, ce_weight=ce_weight), student, dtype
    )
    _assert_finite(loss, grad)
    log_probs = torch.log_softmax(student.double(), -1).gather(1, targets[:, None]).squeeze(1).float()
    per_token = essence_token_loss(log_probs, torch.zeros_like(log_probs), ce_weight)
    _assert_finite(masked_token_mean(per_token, mask), masked_token_mean(per_token, torch.zeros_like(mask)))


@PROPERTY
@given(
    masked_batches(),
    st.lists(finite, min_size=32, max_size=32),
    st.floats(0, 10),
    st.sampled_from(["softplus", "relu"]),
    st.sampled_from(["mean", "sum"]),
    dtypes,
)
def test_property_ace_advantage_finite(batch, extra, alpha, modulation, reduction, dtype):
    values, mask, _ = batch
    b, t = values.shape
    old = values.to(dtype)
    ref = torch.tensor(extra[: b * t]).reshape(b, t).to(dtype)
    base = (torch.tensor(extra[16 : 16 + b * t]).reshape(b, t) / 100).to(dtype)
    result = ace_advantages(base, old, ref, mask, alpha, modulation, reduction, chunk_elements=3)
    _assert_finite(result.advantages, result.c, result.factor, confidence_shift(old, ref, mask, reduction))
    # alpha = 0 is the base estimator, bit for bit
    assert torch.equal(ace_advantages(base, old, ref, mask, 0.0, modulation, reduction).advantages, base)


@PROPERTY
@given(masked_batches(max_rows=3), st.integers(2, 3), st.floats(0, 3), st.floats(0, 3))
def test_property_paced_estimator_finite(batch, n, alpha, beta):
    pytest.importorskip("verl")
    from omegaconf import OmegaConf

    from verl_frontier import driver_hooks
    from verl_frontier.paced.verl_plugin import compute_paced_advantage

    values, mask, _ = batch
    rows = values.shape[0] * n
    rewards, mask = values.repeat(n, 1), mask.repeat(n, 1).float()
    index = np.array([str(i % values.shape[0]) for i in range(rows)], dtype=object)
    config = OmegaConf.create({"adv_estimator": "paced", "paced": {"alpha": alpha, "beta": beta}})
    driver_hooks.set_current_step(None)
    advantages, returns = compute_paced_advantage(rewards * mask, mask, index=index, config=config)
    driver_hooks.pop_step_metrics()
    _assert_finite(advantages, returns)
    assert (advantages >= 0).all() and (advantages[mask.sum(-1) == 0] == 0).all()
    total = advantages.sum(-1) / mask.sum(-1).clamp_min(1)
    assert float(total.sum()) == pytest.approx(rows if float(total.sum()) > 0 else 0.0, rel=1e-5)


@PROPERTY
@given(masked_batches(max_rows=3), st.lists(finite, min_size=40, max_size=40), st.floats(0, 10), dtypes)
def test_property_registered_ace_and_opsdc_estimators_finite(batch, extra, alpha, dtype):
    """``ace`` (on verl's grpo) and ``opsdc``, called as verl's compute_advantage calls an estimator."""
    pytest.importorskip("verl")
    from omegaconf import OmegaConf

    from verl_frontier import driver_hooks
    from verl_frontier.ace.verl_plugin import compute_ace_advantage
    from verl_frontier.opsdc.verl_plugin import compute_opsdc_advantage

    values, mask, _ = batch
    rewards, mask = values.repeat(2, 1), mask.repeat(2, 1).float()  # two rollouts per prompt
    b, t = rewards.shape
    old = torch.tensor(extra[: b * t]).reshape(b, t).to(dtype)
    ref = torch.tensor(extra[-b * t :]).reshape(b, t).to(dtype)
    index = np.array([str(i % values.shape[0]) for i in range(b)], dtype=object)
    config = OmegaConf.create({"adv_estimator": "ace", "ace": {"alpha": alpha}, "norm_adv_by_std_in_grpo": True})
    advantages, returns = compute_ace_advantage(
        rewards * mask, mask, index=index, config=config, old_log_probs=old, ref_log_prob=ref
    )
    _assert_finite(advantages, returns)
    driver_hooks.set_current_step(None)
    advantages, returns = compute_opsdc_advantage(rewards * mask, mask, index=index, config=None)
    driver_hooks.pop_step_metrics()
    _assert_finite(advantages, returns)


@PROPERTY
@given(masked_batches(max_rows=4, max_len=5), st.sampled_from([ASGLD, ASG, AGLD]), dtypes)
def test_property_asgld_optimizers_finite(batch, optimizer_cls, dtype):
    values, _, _ = batch
    param = torch.nn.Parameter(torch.zeros_like(values).to(dtype))
    optimizer = optimizer_cls([param], lr=1e-3, weight_decay=0.01)
    for scale in (1.0, 0.0, -1.0):  # a gradient of up to 1e4, a zero gradient, the opposite sign
        param.grad = (values * scale).to(dtype)
        optimizer.step()
        _assert_finite(param.detach())
