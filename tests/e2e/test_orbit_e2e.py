"""ORBIT's tiny recipe through verl's real trainer on CPU: the orbit_agent loop plays guess-the-number trials
against the hf rollout server, 2 GRPO steps on the v1 trainer and on the legacy one, validation at step 2.
Asserts on ORBIT's own metrics: per-episode success rates reach verl's validation metrics through
AgentLoopOutput.extra_fields["reward_extra_info"] (val-aux/orbit/guess_number/<key>/mean@1), and the
trial reward (number of successful episodes) is verl's critic/score.

Resume check (with FRONTIER_E2E_RESUME_ALL=1): 4 v1 steps with a checkpoint at step 2, then a second launch resumed
from it must log the same steps 3-4. Every tiny-world trial starts from the same prompt, and the rollout server
derives a request's sampling seed from (training step, prompt, occurrence of that prompt in the step): which trial
gets which sample stream follows the order in which the requests arrive. That order is not reproducible, so this
check trains on one task seed per step (``train_batch_size=1``): the step's ``rollout.n`` trials then play the same
secret, a trial's next request depends only on its own history, and the set of trajectories the step produces is the
same whatever the arrival order (only their row order may differ). Every logged training metric is an aggregate
over the rows, so all of them are compared. No validation runs: its requests (the same first prompt) would count as
occurrences in the step after the checkpoint of the straight run only."""

from __future__ import annotations

import pytest
from verl_runner import RESUME_ALL, assert_resumes, assert_trained, run_recipe, run_straight

pytestmark = pytest.mark.e2e

SRC = "orbit/guess_number"


@pytest.fixture(scope="module")
def orbit_world(small_world):
    from verl_frontier.orbit import data

    data.main(
        ["--out", str(small_world / "orbit"), "--preset", "tiny", "--train-size", "64", "--val-seeds-per-env", "8"]
    )
    return small_world


def _check(run):
    assert_trained(run, [1, 2])
    steps = run.steps()
    for step in (1, 2):
        data = steps[step]
        assert "actor/pg_loss" in data
        assert 0.0 <= data["critic/score/mean"] <= 3.0  # trial reward: 0..3 successful episodes
        assert data["response_length/mean"] > 0
    val = steps[2]
    per_episode = [val[f"val-aux/{SRC}/episode_{k}_success/mean@1"] for k in (1, 2, 3)]
    assert all(0.0 <= p <= 1.0 for p in per_episode), per_episode
    count = val[f"val-aux/{SRC}/success_count/mean@1"]
    assert count == pytest.approx(sum(per_episode))  # success count = sum of the per-episode successes
    assert val[f"val-core/{SRC}/reward/mean@1"] == pytest.approx(count)  # reward = number of successes
    assert 1.0 <= val[f"val-aux/{SRC}/model_turns/mean@1"] <= 12.0
    return steps


OVERRIDES = ["trainer.test_freq=2"]


def test_orbit_tiny_v1(orbit_world, tmp_path, shared_ray):
    _check(run_recipe("orbit", "orbit_tiny", tmp_path, orbit_world, OVERRIDES, steps=2, ray=shared_ray))


def test_orbit_tiny_legacy(orbit_world, tmp_path, shared_ray):
    overrides = [*OVERRIDES, "trainer.use_v1=false"]
    _check(run_recipe("orbit", "orbit_tiny", tmp_path, orbit_world, overrides, steps=2, ray=shared_ray))


@pytest.mark.skipif(not RESUME_ALL, reason="opt-in resume check: FRONTIER_E2E_RESUME_ALL=1")
@pytest.mark.parametrize("use_v1", [True, False], ids=["v1", "legacy"])
def test_orbit_tiny_resumed(orbit_world, tmp_path, shared_ray, use_v1):
    # one task seed per step (see the module docstring): the step's trials form one GRPO group
    overrides = [
        f"trainer.use_v1={str(use_v1).lower()}",
        "data.train_batch_size=1",
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
    ]
    run = run_straight("orbit", "orbit_tiny", tmp_path, orbit_world, overrides, ray=shared_ray)
    for step in (1, 2, 3, 4):
        assert 0.0 <= run.steps()[step]["critic/score/mean"] <= 3.0
    assert_resumes(run, overrides)
