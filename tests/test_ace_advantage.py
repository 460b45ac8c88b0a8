"""ACE advantages (verl_frontier.ace): math against slow references, the verl registration and hooks, config
checks, and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from verl_frontier.ace.advantage import (
    AceConfig,
    ace_advantages,
    ace_metrics,
    confidence_shift,
    modulation_factor,
)

# ---------------------------------------------------------------------------------------------------------
# slow references: explicit loops over rollouts and tokens, math.* only
# ---------------------------------------------------------------------------------------------------------


def slow_grpo(scores: list[float], uids: list[str], eps: float = 1e-6) -> list[float]:
    """GRPO outcome advantage per rollout: (r - mean_g) / (std_g + eps), unbiased std, 0 for singletons."""
    out = []
    for i, uid in enumerate(uids):
        group = [scores[j] for j in range(len(uids)) if uids[j] == uid]
        if len(group) == 1:
            out.append(0.0)
            continue
        mean = sum(group) / len(group)
        std = math.sqrt(sum((g - mean) ** 2 for g in group) / (len(group) - 1))
        out.append((scores[i] - mean) / (std + eps))
    return out


def slow_ace(base_seq, old, ref, mask, alpha, modulation="softplus", reduction="mean"):
    """Per-rollout loop: (B,) base sequence advantages -> (B, T) ACE advantages as nested lists."""
    rows = []
    for i in range(len(base_seq)):
        diffs = [old[i][t] - ref[i][t] for t in range(len(mask[i])) if mask[i][t]]
        total = sum(diffs)
        c = total if reduction == "sum" else (total / len(diffs) if diffs else 0.0)
        g = math.log1p(math.exp(c)) if modulation == "softplus" else max(c, 0.0)
        factor = 1.0 + alpha * g if base_seq[i] < 0 else 1.0
        rows.append([base_seq[i] * factor if mask[i][t] else 0.0 for t in range(len(mask[i]))])
    return rows


def make_batch(seed: int, groups: int = 5, n: int = 4, length: int = 7):
    gen = torch.Generator().manual_seed(seed)
    bs = groups * n
    lengths = torch.randint(1, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    scores = torch.randint(0, 2, (bs,), generator=gen).float()
    rewards = torch.zeros(bs, length)
    rewards[torch.arange(bs), lengths - 1] = scores  # outcome reward on the last response token
    old = -torch.rand(bs, length, generator=gen) * 3 * mask
    ref = -torch.rand(bs, length, generator=gen) * 3 * mask
    uids = np.array([f"p{i // n}" for i in range(bs)], dtype=object)
    return rewards, mask, old, ref, uids, scores


def algo_config(**ace):
    return OmegaConf.create({"adv_estimator": "ace", "norm_adv_by_std_in_grpo": True, "ace": ace})


# ---------------------------------------------------------------------------------------------------------
# pure math
# ---------------------------------------------------------------------------------------------------------


def test_hand_computed_example():
    # two rollouts of one group: correct (r=1) and wrong (r=0); GRPO: +1/sqrt(2)*..., i.e. ±0.7071
    base = torch.tensor([[0.5, 0.5, 0.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    old = torch.tensor([[-1.0, -1.0, 0.0], [-0.5, -1.0, -1.5]])
    ref = torch.tensor([[-2.0, -2.0, 0.0], [-1.5, -1.0, -2.5]])  # wrong rollout: c = (1 + 0 + 1) / 3
    result = ace_advantages(base, old, ref, mask, alpha=1.0)
    c_wrong = 2.0 / 3.0
    factor = 1.0 + math.log(1.0 + math.exp(c_wrong))
    assert result.c.tolist() == pytest.approx([1.0, c_wrong])
    assert result.wrong.tolist() == [False, True]
    assert result.factor.tolist() == pytest.approx([1.0, factor])
    torch.testing.assert_close(result.advantages[0], base[0])  # correct rollout untouched
    torch.testing.assert_close(result.advantages[1], torch.full((3,), -0.5 * factor))
    metrics = ace_metrics(result)
    assert metrics["ace/wrong_conf_shift_mean"] == pytest.approx(c_wrong)
    assert metrics["ace/wrong_conf_shift_max"] == pytest.approx(c_wrong)
    assert metrics["ace/wrong_overconfident_frac"] == 1.0
    assert metrics["ace/wrong_modulation_factor_mean"] == pytest.approx(factor)
    assert metrics["ace/wrong_frac"] == 0.5


def test_factor_at_zero_shift_is_one_plus_alpha_ln2():
    c = torch.zeros(3)
    assert modulation_factor(c, 1.0).tolist() == pytest.approx([1 + math.log(2)] * 3)
    assert modulation_factor(c, 1.0, "relu").tolist() == [1.0, 1.0, 1.0]


def test_metrics_without_wrong_rollouts():
    base = torch.tensor([[0.3, 0.3], [0.0, 0.0]])
    mask = torch.ones(2, 2)
    result = ace_advantages(base, torch.zeros(2, 2), -torch.ones(2, 2), mask)
    metrics = ace_metrics(result)
    assert metrics["ace/wrong_count"] == 0 and metrics["ace/wrong_modulation_factor_mean"] == 1.0
    assert metrics["ace/wrong_conf_shift_mean"] == 0.0
    assert torch.equal(result.advantages, base)


def test_confidence_shift_sum_and_empty_response():
    old = torch.tensor([[-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    ref = torch.tensor([[-3.0, -3.0, -9.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert confidence_shift(old, ref, mask, "sum").tolist() == [3.0, 0.0]
    assert confidence_shift(old, ref, mask, "mean").tolist() == [1.5, 0.0]
    with pytest.raises(ValueError, match="reduction"):
        confidence_shift(old, ref, mask, "max")


@pytest.mark.parametrize(("modulation", "reduction"), [("softplus", "mean"), ("relu", "mean"), ("softplus", "sum")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_registered_estimator_equals_slow_reference(seed, modulation, reduction):
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    import verl_frontier.ace.verl_plugin  # noqa: F401

    rewards, mask, old, ref, uids, scores = make_batch(seed)
    alpha = 0.7
    fn = get_adv_estimator_fn("ace")
    config = algo_config(base_estimator="grpo", alpha=alpha, modulation=modulation, reduction=reduction)
    advantages, _ = fn(
        token_level_rewards=rewards, response_mask=mask, index=uids, config=config, old_log_probs=old, ref_log_prob=ref
    )
    base_seq = slow_grpo(scores.tolist(), list(uids))
    expected = torch.tensor(slow_ace(base_seq, old.tolist(), ref.tolist(), mask.tolist(), alpha, modulation, reduction))
    torch.testing.assert_close(advantages, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# verl integration: registry, compute_advantage hook (legacy) and the v1 multi-trajectory path
# ---------------------------------------------------------------------------------------------------------


def _data_proto(rewards, mask, old, ref, uids, with_ref=True):
    from verl.protocol import DataProto

    tensors = {"token_level_rewards": rewards, "response_mask": mask, "old_log_probs": old}
    if with_ref:
        tensors["ref_log_prob"] = ref
    return DataProto.from_dict(tensors=tensors, non_tensors={"uid": uids})


@pytest.mark.parametrize("base", ["grpo", "rloo", "grpo_passk", "grpo_vectorized"])
def test_alpha_zero_is_the_base_estimator_exactly(base):
    from verl.trainer.ppo import ray_trainer

    import verl_frontier.ace.verl_plugin  # noqa: F401

    rewards, mask, old, ref, uids, _ = make_batch(3)
    ace = ray_trainer.compute_advantage(
        _data_proto(rewards, mask, old, ref, uids), "ace", config=algo_config(base_estimator=base, alpha=0.0)
    )
    plain = ray_trainer.compute_advantage(
        _data_proto(rewards, mask, old, ref, uids), base, config=algo_config(base_estimator=base)
    )
    assert torch.equal(ace.batch["advantages"], plain.batch["advantages"])
    assert torch.equal(ace.batch["returns"], plain.batch["returns"])


@pytest.mark.parametrize("base", ["grpo", "rloo"])
def test_hook_path_equals_direct_call_and_correct_rollouts_untouched(base):
    from verl.trainer.ppo import core_algos, ray_trainer

    from verl_frontier import driver_hooks
    from verl_frontier.ace import verl_plugin

    rewards, mask, old, ref, uids, _ = make_batch(4)
    config = algo_config(base_estimator=base, alpha=1.0)
    driver_hooks.pop_step_metrics()
    out = ray_trainer.compute_advantage(_data_proto(rewards, mask, old, ref, uids), "ace", config=config)
    metrics = driver_hooks.pop_step_metrics()
    base_adv = ray_trainer.compute_advantage(_data_proto(rewards, mask, old, ref, uids), base, config=config)
    base_adv = base_adv.batch["advantages"]
    direct = ace_advantages(base_adv, old, ref, mask, alpha=1.0)
    torch.testing.assert_close(out.batch["advantages"], direct.advantages, rtol=0, atol=0)
    # the registered function, called with the log-probs, gives the same
    registered, _ = core_algos.get_adv_estimator_fn("ace")(
        token_level_rewards=rewards, response_mask=mask, index=uids, config=config, old_log_probs=old, ref_log_prob=ref
    )
    torch.testing.assert_close(registered, direct.advantages, rtol=0, atol=0)
    assert verl_plugin.compute_ace_advantage is core_algos.ADV_ESTIMATOR_REGISTRY["ace"]
    # correct (non-negative advantage) rollouts untouched, wrong ones pushed further down
    wrong = direct.wrong
    assert wrong.any() and (~wrong).any()
    assert torch.equal(out.batch["advantages"][~wrong], base_adv[~wrong])
    response = mask[wrong].bool()
    assert (out.batch["advantages"][wrong][response] < base_adv[wrong][response]).all()
    assert metrics == {**ace_metrics(direct), "ace/alpha": 1.0}


def test_v1_multi_trajectory_path():
    """v1's compute_advantage_for_multi_trajectories (as bound in trainer_base) runs ACE on grpo's session path."""
    from verl.trainer.ppo.v1 import trainer_base, utils

    import verl_frontier.ace.verl_plugin  # noqa: F401

    assert trainer_base.compute_advantage_for_multi_trajectories is utils.compute_advantage_for_multi_trajectories
    rewards, mask, old, ref, uids, _ = make_batch(5)
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(uids)]  # one output per session (single turn)
    config = algo_config(base_estimator="grpo", alpha=1.0)
    out = trainer_base.compute_advantage_for_multi_trajectories(
        _data_proto(rewards, mask, old, ref, uids), keys, "ace", norm_adv_by_std_in_grpo=True, config=config
    )
    base = utils.compute_advantage_for_multi_trajectories(
        _data_proto(rewards, mask, old, ref, uids), keys, "grpo", norm_adv_by_std_in_grpo=True, config=config
    )
    expected = ace_advantages(base.batch["advantages"], old, ref, mask, alpha=1.0).advantages
    torch.testing.assert_close(out.batch["advantages"], expected, rtol=0, atol=0)
    assert not torch.equal(out.batch["advantages"], base.batch["advantages"])


def test_missing_ref_log_prob_and_unhooked_call_fail_clearly():
    from verl.trainer.ppo import core_algos, ray_trainer

    import verl_frontier.ace.verl_plugin  # noqa: F401

    rewards, mask, old, ref, uids, _ = make_batch(6)
    with pytest.raises(RuntimeError, match=r"ref_log_prob.*actor_rollout_ref\.actor\.use_kl_loss=true"):
        ray_trainer.compute_advantage(
            _data_proto(rewards, mask, old, ref, uids, with_ref=False), "ace", config=algo_config()
        )
    with pytest.raises(ValueError, match="old_log_probs and ref_log_prob"):
        core_algos.get_adv_estimator_fn("ace")(
            token_level_rewards=rewards, response_mask=mask, index=uids, config=algo_config()
        )


def test_other_estimators_pass_through_the_hook():
    from verl.trainer.ppo import core_algos, ray_trainer

    import verl_frontier.ace.verl_plugin  # noqa: F401

    rewards, mask, old, ref, uids, _ = make_batch(7)
    out = ray_trainer.compute_advantage(_data_proto(rewards, mask, old, ref, uids), "grpo", config=algo_config())
    expected, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uids)
    assert torch.equal(out.batch["advantages"], expected)


# ---------------------------------------------------------------------------------------------------------
# config checks (driver, before Ray)
# ---------------------------------------------------------------------------------------------------------


def _compose(data_overrides, *overrides):
    from verl_frontier import recipes as rc

    return rc.compose_recipe("ace_grpo", [*data_overrides, *overrides])


def test_recipes_validate(data_overrides):
    from verl_frontier.validation import validate_frontier_config

    config = _compose(data_overrides)
    validate_frontier_config(config, skip=("model_paths",))
    assert config.algorithm.adv_estimator == "ace" and config.algorithm.ace.alpha == 1.0
    assert config.actor_rollout_ref.rollout.n == 8 and config.actor_rollout_ref.actor.kl_loss_coef == 0.001


def test_no_reference_policy_names_the_key(data_overrides):
    from verl_frontier.validation import FrontierConfigError, validate_frontier_config

    config = _compose(data_overrides, "actor_rollout_ref.actor.use_kl_loss=false")
    with pytest.raises(FrontierConfigError, match=r"^actor_rollout_ref\.actor\.use_kl_loss: .*ref_log_prob") as info:
        validate_frontier_config(config, skip=("model_paths",))
    assert "\n" not in str(info.value)
    # the reference policy through the KL-in-reward route is accepted
    config = _compose(data_overrides, "actor_rollout_ref.actor.use_kl_loss=false", "algorithm.use_kl_in_reward=true")
    validate_frontier_config(config, skip=("model_paths",))


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("algorithm.ace.base_estimator=gae", r"algorithm\.ace\.base_estimator: .*not supported"),
        ("algorithm.ace.base_estimator=nope", r"algorithm\.ace\.base_estimator: not a registered"),
        ("algorithm.ace.alpha=-1", r"algorithm\.ace\.alpha: must be >= 0"),
        ("algorithm.ace.modulation=tanh", r"algorithm\.ace\.modulation: must be one of"),
        ("+algorithm.ace.alpah=1", r"algorithm\.ace\.alpah: unknown key.*did you mean 'algorithm\.ace\.alpha'"),
    ],
)
def test_bad_ace_section(data_overrides, override, pattern):
    from verl_frontier.validation import FrontierConfigError, validate_frontier_config

    with pytest.raises(FrontierConfigError, match=pattern):
        validate_frontier_config(_compose(data_overrides, override), skip=("model_paths",))


def test_ace_config_from_mapping():
    cfg = AceConfig.from_mapping(OmegaConf.create({"alpha": 2, "modulation": "relu"}))
    assert cfg == AceConfig(alpha=2.0, modulation="relu")
    assert AceConfig.from_mapping(None) == AceConfig()


# ---------------------------------------------------------------------------------------------------------
# hypothesis properties
# ---------------------------------------------------------------------------------------------------------

floats = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, width=32)


@st.composite
def batches(draw):
    bs = draw(st.integers(1, 6))
    length = draw(st.integers(1, 5))
    shape = (bs, length)

    def tensor():
        return torch.tensor(draw(st.lists(floats, min_size=bs * length, max_size=bs * length))).reshape(shape)

    seq_adv = torch.tensor(draw(st.lists(floats, min_size=bs, max_size=bs)))
    lengths = torch.tensor(draw(st.lists(st.integers(0, length), min_size=bs, max_size=bs)))
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    base = seq_adv[:, None] * mask
    return base, tensor(), tensor(), mask


@settings(max_examples=60, deadline=None)
@given(batch=batches(), alpha=st.floats(0.0, 4.0), modulation=st.sampled_from(["softplus", "relu"]))
def test_properties(batch, alpha, modulation):
    base, old, ref, mask = batch
    result = ace_advantages(base, old, ref, mask, alpha=alpha, modulation=modulation)
    # signs never flip, magnitudes never shrink, correct rollouts are untouched
    assert (torch.sign(result.advantages) == torch.sign(base)).all()
    assert (result.advantages.abs() >= base.abs() - 1e-6).all()
    assert torch.equal(result.advantages[~result.wrong], base[~result.wrong])
    assert (result.factor >= 1.0).all() and torch.equal(
        result.factor[~result.wrong], torch.ones_like(result.factor)[~result.wrong]
    )
    # zero stays zero outside the response
    assert (result.advantages[mask == 0] == 0).all()
    # relu: rollouts with c <= 0 are never modulated
    if modulation == "relu":
        assert (result.factor[result.c <= 0] == 1.0).all()
    # alpha = 0 is the identity, bit for bit
    same = ace_advantages(base, old, ref, mask, alpha=0.0, modulation=modulation)
    assert torch.equal(same.advantages, base)
    # row blocks of any size (one row, a few rows) give the one-block result; in place gives the same tensor
    for chunk_elements in (1, 2 * base.shape[1] + 1):
        chunked = ace_advantages(base.clone(), old, ref, mask, alpha=alpha, modulation=modulation,
                                 chunk_elements=chunk_elements)  # fmt: skip
        torch.testing.assert_close(chunked.advantages, result.advantages, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(chunked.c, result.c, rtol=1e-6, atol=1e-6)
        assert torch.equal(chunked.wrong, result.wrong)
    copy = base.clone()
    assert ace_advantages(copy, old, ref, mask, alpha=alpha, modulation=modulation, inplace=True).advantages is copy
    torch.testing.assert_close(copy, result.advantages, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(c=st.lists(floats, min_size=2, max_size=8), alpha=st.floats(0.01, 4.0))
def test_factor_monotone_in_confidence_shift(c, alpha):
    c = torch.tensor(sorted(c))
    factor = modulation_factor(c, alpha)
    assert (factor[1:] >= factor[:-1]).all() and (factor > 1.0).all()
