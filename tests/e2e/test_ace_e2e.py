"""ACE through verl's real trainer on CPU: v1 + DAPO and v1 + GRPO with α = 0 (2 steps each), legacy + GRPO (4 steps,
and with FRONTIER_E2E_RESUME_ALL=1 steps 3-4 again from its step-2 checkpoint in a resumed launch); with
FRONTIER_E2E_RESUME_ALL=1 also v1 + GRPO, 4 steps and the same resumed launch.

The rewards come from ace_mixed_reward.py (pseudo-random 0/1), so that groups are mixed on the small world.

Every run dumps each step's advantage inputs and outputs (``algorithm.ace.dump_dir``); the tests recompute
the base estimator (verl's own GRPO) and ACE from the dumped rewards / uids / log-probs, check the ``ace/*``
metrics verl logged against the dump, and check that the advantages verl used downstream (its
``critic/advantages/{max,min}`` metrics) are the modulated ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from verl_runner import RESUME_ALL, assert_resumed_like_straight, assert_trained, resume_from, run_recipe, save_at

from verl_frontier.ace.advantage import ace_advantages, ace_metrics

pytestmark = pytest.mark.e2e

#: the small world's student scores 0 everywhere; a pseudo-random 0/1 reward gives mixed groups (see the file)
MIXED_REWARD = [
    f"reward.custom_reward_function.path={Path(__file__).with_name('ace_mixed_reward.py')}",
    "reward.custom_reward_function.name=compute_score",
]

ACE_KEYS = (
    "ace/wrong_conf_shift_mean",
    "ace/wrong_conf_shift_max",
    "ace/wrong_overconfident_frac",
    "ace/wrong_modulation_factor_mean",
    "ace/wrong_frac",
)


def _grpo(dump) -> torch.Tensor:
    import numpy as np
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=dump["token_level_rewards"],
        response_mask=dump["response_mask"],
        index=np.array(dump["uid"], dtype=object),
        norm_adv_by_std_in_grpo=True,
    )
    return advantages


def _run(name, config, tmp_path, world, ray, extra=(), steps=(1, 2)):
    dump_dir = tmp_path / "ace_dump"
    overrides = [f"+algorithm.ace.dump_dir={dump_dir}", *MIXED_REWARD, *extra]
    run = run_recipe(name, config, tmp_path, world, overrides, steps=max(steps), ray=ray)
    assert_trained(run, list(steps))
    dumps = {step: torch.load(dump_dir / f"step_{step}.pt", weights_only=False) for step in steps}
    return run, dumps


def _check_step(data: dict, dump: dict, alpha: float) -> None:
    mask = dump["response_mask"].bool()
    # the base advantages are verl's GRPO on these rewards and groups, bit for bit
    assert torch.equal(dump["base_advantages"], _grpo(dump))
    # ACE recomputed from the dumped log-probs
    expected = ace_advantages(
        dump["base_advantages"], dump["old_log_probs"], dump["ref_log_prob"], dump["response_mask"], alpha
    )
    torch.testing.assert_close(dump["advantages"], expected.advantages, rtol=1e-6, atol=1e-7)
    # the logged metrics are ACE's metrics of this batch
    for key, value in ace_metrics(expected).items():
        assert data[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, data[key], value)
    assert data["ace/alpha"] == alpha
    # verl trained on the modulated advantages: its own advantage statistics match them
    used = dump["advantages"][mask]
    assert data["critic/advantages/max"] == pytest.approx(used.max().item(), rel=1e-5, abs=1e-6)
    assert data["critic/advantages/min"] == pytest.approx(used.min().item(), rel=1e-5, abs=1e-6)


def _check_ace_active(steps: dict, dumps: dict) -> None:
    for step in (1, 2):
        data = steps[step]
        for key in ACE_KEYS:
            assert key in data and math.isfinite(data[key]), (key, sorted(k for k in data if k.startswith("ace/")))
        _check_step(data, dumps[step], alpha=1.0)
        assert 0.0 <= data["ace/wrong_overconfident_frac"] <= 1.0
        assert data["ace/wrong_conf_shift_max"] >= data["ace/wrong_conf_shift_mean"]
        wrong = dumps[step]["wrong"]
        assert wrong.any(), "no wrong rollout in a mixed batch: nothing was modulated"
        # softplus > 0: every wrong rollout is penalised harder, correct ones are untouched
        assert data["ace/wrong_modulation_factor_mean"] > 1.0
        assert torch.equal(dumps[step]["advantages"][~wrong], dumps[step]["base_advantages"][~wrong])
    # step 2's rollout policy has taken an update away from the reference: a nonzero confidence shift
    assert dumps[2]["c"][dumps[2]["response_mask"].sum(-1) > 0].abs().max() > 0


def test_ace_dapo_v1_trainer(small_world, tmp_path, shared_ray):
    """v1 trainer, ACE on DAPO: group filtering leaves only mixed groups, so every step has wrong rollouts."""
    run, dumps = _run("ace_dapo", "ace_dapo_tiny", tmp_path, small_world, shared_ray)
    steps = run.steps()
    _check_ace_active(steps, dumps)
    for step in (1, 2):
        # dynamic sampling: no group with all-equal rewards reaches the estimator
        rewards = dumps[step]["token_level_rewards"].sum(-1)
        groups: dict[str, list[float]] = {}
        for uid, reward in zip(dumps[step]["uid"], rewards.tolist(), strict=True):
            groups.setdefault(uid, []).append(reward)
        assert all(len(set(r)) > 1 for r in groups.values()), groups


def test_ace_grpo_legacy_trainer_and_resumed(small_world, tmp_path, shared_ray):
    """Legacy trainer, 4 steps with a checkpoint at step 2; a second launch resumed from it logs the same steps
    3-4 and trains on the same advantages (with FRONTIER_E2E_RESUME_ALL=1)."""
    legacy = ["trainer.use_v1=false"]
    run, dumps = _run(
        "ace_grpo", "ace_grpo_tiny", tmp_path, small_world, shared_ray, [*legacy, *save_at(2)], steps=(1, 2, 3, 4)
    )
    assert "actor/kl_loss" in run.steps()[1]
    _check_ace_active(run.steps(), dumps)
    for step in (3, 4):
        _check_step(run.steps()[step], dumps[step], alpha=1.0)
    if RESUME_ALL:
        _assert_resumes(run, dumps, small_world, shared_ray, legacy)


@pytest.mark.skipif(not RESUME_ALL, reason="opt-in resume check: FRONTIER_E2E_RESUME_ALL=1")
def test_ace_grpo_v1_trainer_resumed(small_world, tmp_path, shared_ray):
    """v1 trainer, 4 steps with a checkpoint at step 2; a second launch resumed from it logs the same steps 3-4 and
    trains on the same advantages."""
    run, dumps = _run("ace_grpo", "ace_grpo_tiny", tmp_path, small_world, shared_ray, save_at(2), steps=(1, 2, 3, 4))
    _check_ace_active(run.steps(), dumps)
    for step in (3, 4):
        _check_step(run.steps()[step], dumps[step], alpha=1.0)
    _assert_resumes(run, dumps, small_world, shared_ray)


def _assert_resumes(run, dumps: dict, world, ray, extra=()) -> None:
    """A second launch of ``run`` (ace_grpo_tiny with ``extra``) resumed from its step-2 checkpoint logs the same
    steps 3-4 and trains on the same advantages: the same rows (the legacy trainer may order a step's rows
    differently)."""
    resumed, resumed_dumps = _run(
        "ace_grpo", "ace_grpo_tiny", run.out_dir / "resumed", world, ray, [*extra, *resume_from(run, 2)], steps=(3, 4)
    )
    assert_resumed_like_straight(run, resumed, [3, 4])
    for step in (3, 4):
        torch.testing.assert_close(
            _sorted_rows(resumed_dumps[step]["advantages"]),
            _sorted_rows(dumps[step]["advantages"]),
            rtol=1e-5,
            atol=1e-6,
        )


def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    return t[sorted(range(t.shape[0]), key=lambda i: t[i].tolist())]


def test_ace_alpha_zero_equals_grpo_v1(small_world, tmp_path, shared_ray):
    """α = 0: the advantages verl trains on are verl's GRPO advantages, exactly."""
    run, dumps = _run("ace_grpo", "ace_grpo_tiny", tmp_path, small_world, shared_ray, ["algorithm.ace.alpha=0.0"])
    for step in (1, 2):
        data, dump = run.steps()[step], dumps[step]
        _check_step(data, dump, alpha=0.0)
        assert torch.equal(dump["advantages"], _grpo(dump))
        assert data["ace/wrong_modulation_factor_mean"] == 1.0
