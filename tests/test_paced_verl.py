"""Paced's verl glue, called the way verl calls it: the estimator through verl's ``compute_advantage``, the
losses through ``distillation_ppo_loss`` (logits processor, then final loss) on a TensorDict micro-batch in
verl's no-padding layout. Compared with slow references written here (explicit softmax, Python loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from verl import DataProto  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl_distillation import verl_distillation_loss  # noqa: E402

from verl_frontier import driver_hooks  # noqa: E402
from verl_frontier.paced import verl_plugin  # noqa: E402
from verl_frontier.validation import FrontierConfigError, validate_frontier_config  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------------------------------------


def _reference_weights(scores, uids, alpha, beta, threshold=0.0):
    """Slow reference: per-group pass rate by a Python loop, w = p^a (1-p)^b, normalised to mean 1."""
    rates = {}
    for uid in set(uids):
        members = [s for s, u in zip(scores, uids, strict=True) if u == uid]
        rates[uid] = sum(1.0 for s in members if s > threshold) / len(members)
    raw = [(rates[u] ** alpha) * ((1 - rates[u]) ** beta) for u in uids]
    total = sum(raw)
    return [r * len(raw) / total if total > 0 else 0.0 for r in raw], [rates[u] for u in uids]


def _batch(scores, uids, response_lengths, width=6):
    n = len(scores)
    mask = torch.zeros(n, width)
    rewards = torch.zeros(n, width)
    for i, (score, length) in enumerate(zip(scores, response_lengths, strict=True)):
        mask[i, :length] = 1
        rewards[i, length - 1] = score
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask})
    data.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    return data


def _algorithm(**paced):
    from omegaconf import OmegaConf

    return OmegaConf.create({"adv_estimator": "paced", "paced": paced})


def test_estimator_through_verl_compute_advantage_matches_reference():
    scores = [1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1]
    uids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 4
    lengths = [1, 3, 6, 2, 5, 5, 5, 5, 1, 2, 3, 4, 6, 6, 6, 6]
    data = _batch(scores, uids, lengths)
    driver_hooks.set_current_step(None)
    out = compute_advantage(data, adv_estimator="paced", num_repeat=4, config=_algorithm(alpha=1.0, beta=1.0))
    expected, _ = _reference_weights(scores, uids, 1.0, 1.0)
    mask = data.batch["response_mask"]
    torch.testing.assert_close(out.batch["advantages"], torch.tensor(expected).unsqueeze(-1) * mask)
    # stage 1 is forward KL (code 0) on every response token
    torch.testing.assert_close(out.batch["returns"], torch.zeros_like(mask))
    metrics = driver_hooks.pop_step_metrics()
    assert metrics["paced/zero_weight_prompt_frac"] == pytest.approx(0.5)  # groups b (p=1) and c (p=0)
    assert metrics["paced/pass_rate_mean"] == pytest.approx((0.5 + 1 + 0 + 0.75) / 4)


def test_estimator_two_stage_switches_code_and_exponents_at_switch_step():
    scores = [1, 0, 0, 0, 1, 1, 1, 0]
    uids = ["a"] * 4 + ["b"] * 4
    data = _batch(scores, uids, [2] * 8)
    config = _algorithm(alpha=1.0, beta=1.0, switch_step=3, stage2_divergence="reverse_kl", stage2_alpha=2.0)
    for step, code, alpha in ((2, 0, 1.0), (3, 1, 2.0), (7, 1, 2.0)):
        driver_hooks.set_current_step(step)
        out = compute_advantage(data, adv_estimator="paced", num_repeat=4, config=config)
        expected, _ = _reference_weights(scores, uids, alpha, 1.0)
        torch.testing.assert_close(out.batch["advantages"][:, 0], torch.tensor(expected))
        assert set(out.batch["returns"][:, 0].tolist()) == {float(code)}
        assert driver_hooks.pop_step_metrics()["paced/stage"] == (1 if step < 3 else 2)
    driver_hooks.set_current_step(None)


def test_estimator_rejects_single_rollout_groups():
    data = _batch([1, 0], ["a", "b"], [2, 2])
    with pytest.raises(ValueError, match="actor_rollout_ref.rollout.n"):
        compute_advantage(data, adv_estimator="paced", num_repeat=1, config=_algorithm())


# ---------------------------------------------------------------------------------------------------------
# losses through distillation_ppo_loss
# ---------------------------------------------------------------------------------------------------------

VOCAB, TOPK = 11, 11


def _micro_batch(seed=0):
    """Three samples (prompt lengths 2, 3, 1; response lengths 3, 1, 2) in verl's no-padding layout."""
    gen = torch.Generator().manual_seed(seed)
    prompt_lens, response_lens = [2, 3, 1], [3, 1, 2]
    seq_lens = [p + r for p, r in zip(prompt_lens, response_lens, strict=True)]
    total = sum(seq_lens)
    offsets = torch.tensor([0, *np.cumsum(seq_lens)])

    def nested(values, lengths):  # as verl builds them (as_nested_tensor records the true max length)
        return torch.nested.as_nested_tensor(list(torch.split(values, lengths)), layout=torch.jagged)

    teacher_logits = torch.randn(total, VOCAB, generator=gen) * 2
    teacher_topk = torch.log_softmax(teacher_logits, -1).topk(TOPK, dim=-1)
    weights = torch.tensor([2.0, 0.0, 1.0])
    codes = torch.tensor([0.0, 0.0, 0.0])
    data = tu.get_tensordict(
        {
            "prompts": nested(torch.zeros(sum(prompt_lens), dtype=torch.long), prompt_lens),
            "responses": nested(torch.zeros(sum(response_lens), dtype=torch.long), response_lens),
            "input_ids": nested(torch.zeros(total, dtype=torch.long), seq_lens),
            "response_mask": nested(torch.ones(sum(response_lens), dtype=torch.long), response_lens),
            "teacher_logprobs": nested(teacher_topk.values, seq_lens),
            "teacher_ids": nested(teacher_topk.indices, seq_lens),
            "advantages": nested(torch.repeat_interleave(weights, torch.tensor(response_lens)), response_lens),
            "returns": nested(torch.repeat_interleave(codes, torch.tensor(response_lens)), response_lens),
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": sum(response_lens), "global_batch_size": 3},
    )
    student_logits = torch.randn(total, VOCAB, generator=gen, requires_grad=True)
    return data, student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets


def _run_verl_loss(loss_mode, data, student_logits):
    return verl_distillation_loss(
        loss_mode, data, student_logits, topk=TOPK, micro_batch=3, loss_agg_mode="seq-mean-token-mean"
    )


def _reference_loss(kind, student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets):
    """Σ_i w_i ℓ_i / Σ_i w_i with ℓ_i the token-mean full-vocab divergence over sample i's response tokens
    (the logits at position t predict token t+1, so response token j of sample i uses row start+p_i-1+j)."""
    numerator, denominator = 0.0, 0.0
    for i, (p_len, r_len) in enumerate(zip(prompt_lens, response_lens, strict=True)):
        per_token = []
        for j in range(r_len):
            row = int(offsets[i]) + p_len - 1 + j
            log_q = torch.log_softmax(student_logits[row].double(), -1)
            log_p = torch.log_softmax(teacher_logits[row].double(), -1)
            if kind == "forward_kl":
                per_token.append((log_p.exp() * (log_p - log_q)).sum())
            else:
                per_token.append((log_q.exp() * (log_q - log_p)).sum())
        numerator = numerator + weights[i].double() * torch.stack(per_token).mean()
        denominator += float(weights[i])
    return numerator / denominator


@pytest.mark.parametrize(
    ("loss_mode", "kind"), [("paced_forward_kl_topk", "forward_kl"), ("paced_reverse_kl_topk", "reverse_kl")]
)
def test_registered_topk_loss_through_distillation_ppo_loss_matches_reference(loss_mode, kind):
    data, student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets = _micro_batch()
    loss, metrics = _run_verl_loss(loss_mode, data, student_logits)
    # the weights (2, 0, 1) have mean 1 over the batch: verl's seq-mean-token-mean gives Σ w ℓ / B = Σ w ℓ / Σ w
    reference = _reference_loss(kind, student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)
    grad = torch.autograd.grad(loss, student_logits)[0]
    ref_grad = torch.autograd.grad(reference, student_logits)[0]
    torch.testing.assert_close(grad.double(), ref_grad.double(), rtol=1e-4, atol=1e-6)
    assert int(metrics["paced/actor_zero_weight_samples"].values[0]) == 1  # the sample with w = 0


def test_paced_topk_uses_the_per_sample_code():
    data, student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets = _micro_batch(seed=3)
    data["returns"] = torch.nested.as_nested_tensor(
        [torch.ones(n) for n in response_lens], layout=torch.jagged
    )  # every sample in the reverse-KL stage
    loss, _ = _run_verl_loss("paced_topk", data, student_logits)
    reference = _reference_loss(
        "reverse_kl", student_logits, teacher_logits, weights, prompt_lens, response_lens, offsets
    )
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)


def test_all_zero_weights_give_zero_loss_not_nan():
    data, student_logits, *_ = _micro_batch()
    data["advantages"] = torch.nested.as_nested_tensor([torch.zeros(n) for n in (3, 1, 2)], layout=torch.jagged)
    loss, _ = _run_verl_loss("paced_forward_kl_topk", data, student_logits)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, student_logits)
    assert torch.isfinite(grad).all() and grad.abs().max() == 0


def test_uniform_weights_equal_verl_forward_kl_topk():
    """alpha = beta = 0 gives w = 1: Paced's forward KL equals verl's own forward_kl_topk, same aggregation."""
    data, student_logits, *_ = _micro_batch(seed=5)
    data["advantages"] = torch.nested.as_nested_tensor([torch.ones(n) for n in (3, 1, 2)], layout=torch.jagged)
    ours, _ = _run_verl_loss("paced_forward_kl_topk", data, student_logits)
    verls, _ = _run_verl_loss("forward_kl_topk", data, student_logits)
    torch.testing.assert_close(ours, verls)


# ---------------------------------------------------------------------------------------------------------
# validation (before Ray)
# ---------------------------------------------------------------------------------------------------------


def _config(**overrides):
    from omegaconf import OmegaConf

    base = {
        "algorithm": {"adv_estimator": "paced", "paced": {"alpha": 1.0, "beta": 1.0}},
        "distillation": {"enabled": True, "distillation_loss": {"loss_mode": "paced_forward_kl_topk"}},
        "actor_rollout_ref": {"rollout": {"n": 4}, "actor": {"loss_agg_mode": "seq-mean-token-mean"}},
    }
    config = OmegaConf.create(base)
    for key, value in overrides.items():
        OmegaConf.update(config, key, value, force_add=True)
    return config


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"actor_rollout_ref.rollout.n": 1}, "actor_rollout_ref.rollout.n"),
        ({"algorithm.paced.alpha": -1.0}, "algorithm.paced.alpha"),
        ({"actor_rollout_ref.actor.loss_agg_mode": "token-mean"}, "actor_rollout_ref.actor.loss_agg_mode"),
        ({"algorithm.adv_estimator": "grpo"}, "algorithm.adv_estimator"),
        ({"distillation.distillation_loss.loss_mode": "forward_kl_topk"}, "distillation.distillation_loss.loss_mode"),
        ({"algorithm.paced.switch_step": 5}, "distillation.distillation_loss.loss_mode"),
        ({"distillation.distillation_loss.loss_mode": "paced_k1"}, "algorithm.paced.divergence"),
        ({"algorithm.paced.normalize": "max"}, "algorithm.paced.normalize"),
    ],
)
def test_validation_names_the_key(overrides, key):
    with pytest.raises(FrontierConfigError, match=key.replace(".", r"\.")):
        validate_frontier_config(_config(**overrides), skip=("data_files", "model_paths"))


def test_valid_config_passes():
    validate_frontier_config(_config(), skip=("data_files", "model_paths"))


def test_registrations_are_in_verl_registries():
    from verl_frontier.registration import assert_registered

    assert_registered()
    assert ("adv_est", "paced") in verl_plugin.EXPECTED_REGISTRATIONS
