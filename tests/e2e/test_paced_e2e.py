"""Paced through verl's real trainer on CPU (2 steps per run; the two-stage v1 run: 4 steps, then steps 3-4 again
from its step-2 checkpoint; with FRONTIER_E2E_RESUME_ALL=1 the legacy forward-KL run too), asserting on Paced's own
logged metrics.

A registration or config-key mistake (estimator not found, loss mode unknown in a worker, the weight not
reaching the actor's micro-batch, the stage not switching) fails here even when every unit test passes.
"""

from __future__ import annotations

import math

import pytest
from verl_runner import RESUME_ALL, assert_resumes, assert_trained, run_recipe, run_straight

pytestmark = pytest.mark.e2e

HIST_KEYS = ("p=0", "p=1")


def _assert_weights_logged(data):
    """The estimator's metrics (driver) and the loss's metrics (actor) both reached verl's tracking."""
    assert 0.0 <= data["paced/pass_rate_mean"] <= 1.0
    assert 0.0 <= data["paced/zero_weight_prompt_frac"] <= 1.0
    assert 0.0 <= data["paced/weight_mean"] <= 0.25 + 1e-6  # max of p(1-p)
    bins = [v for k, v in data.items() if k.startswith("paced/pass_rate_hist/") and k.split("/")[-1] not in HIST_KEYS]
    assert bins and math.isclose(sum(bins), 1.0, abs_tol=1e-6), bins
    # the actor saw the step-normalised weights: mean 1 over the batch (or all zero when no prompt is at the frontier)
    all_zero = data["paced/all_zero_weight_batch"] == 1.0
    expected = 0.0 if all_zero else 1.0
    assert data["actor/paced/actor_weight_mean"] == pytest.approx(expected, abs=1e-4), data
    assert math.isfinite(data["actor/distillation/loss"]) and data["actor/distillation/loss"] >= 0


def test_paced_two_stage_v1_switches_divergence_and_resumes(small_world, tmp_path, shared_ray):
    """v1 trainer, loss_mode=paced_topk, switch_step=3: steps 1-2 are forward KL, steps 3-4 reverse KL. A second
    launch resumed from the step-2 checkpoint starts in stage 2, as the straight run does, and logs the same
    steps 3-4 (with FRONTIER_E2E_RESUME_ALL=1)."""
    overrides = ["algorithm.paced.switch_step=3"]
    run = run_straight("paced_two_stage", "paced_two_stage_tiny", tmp_path, small_world, overrides, ray=shared_ray)
    steps = run.steps()
    first, second = steps[2], steps[3]
    for data in (first, second):
        _assert_weights_logged(data)
    assert first["paced/stage"] == 1 and first["paced/divergence_code"] == 0
    assert second["paced/stage"] == 2 and second["paced/divergence_code"] == 1
    # the per-divergence loss metrics show which divergence the actor applied (absent when the batch's weights
    # are all zero: then nothing is selected... but the divergence is still computed for every token)
    assert "actor/paced/loss_forward_kl" in first and "actor/paced/loss_reverse_kl" not in first, sorted(first)
    assert "actor/paced/loss_reverse_kl" in second and "actor/paced/loss_forward_kl" not in second, sorted(second)
    # v1 runs all n rollouts of a prompt in one agent-loop worker, so every zero-weight group is gated: the
    # teacher was skipped for exactly the zero-weight rows the actor saw (nothing is dropped before backward)
    for data in (first, second):
        assert data["actor/paced/actor_samples"] == 16 * 4, data
        assert data["actor/paced/actor_teacher_skipped_samples"] == data["actor/paced/actor_zero_weight_samples"]
        assert data["actor/paced/actor_zero_weight_samples"] == pytest.approx(
            64 * data["paced/zero_weight_prompt_frac"]
        )
    if RESUME_ALL:
        assert_resumes(run, overrides)


def test_paced_forward_kl_legacy_trainer_and_resumes(small_world, tmp_path, shared_ray):
    """With FRONTIER_E2E_RESUME_ALL=1: 4 steps with a checkpoint at step 2, and a second launch resumed from it logs
    the same steps 3-4."""
    # micro-batches of one group (4 rows), so a trimmed mini-batch still splits into micro-batches
    overrides = ["trainer.use_v1=false", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4"]
    run = run_straight(
        "paced_distill", "paced_distill_tiny", tmp_path, small_world, overrides, ray=shared_ray, resumable=RESUME_ALL
    )
    for data in run.steps().values():
        _assert_weights_logged(data)
        assert data["paced/stage"] == 1 and "actor/paced/loss_forward_kl" in data
        # zero-weight groups are dropped before the backward pass (one mini-batch, one rank: all of them, but
        # one group is kept when every group has weight 0); the teacher was skipped for the zero-weight rows
        zero_frac = data["paced/zero_weight_prompt_frac"]
        expected_drop = (1 - 1 / 16) if zero_frac == 1.0 else zero_frac
        assert data["paced/dropped_sample_frac"] == pytest.approx(expected_drop), data
        assert data["paced/backward_samples"] == round(64 * (1 - expected_drop))
        assert data["actor/paced/actor_samples"] == data["paced/backward_samples"]
        assert data["actor/paced/actor_teacher_skipped_samples"] <= data["actor/paced/actor_zero_weight_samples"]
    if RESUME_ALL:
        assert_resumes(run, overrides)


def test_paced_keep_zero_weight_legacy_trainer(small_world, tmp_path, shared_ray):
    """drop_zero_weight=false: the teacher sees every rollout and the actor every row."""
    overrides = ["trainer.use_v1=false", "trainer.total_training_steps=1", "algorithm.paced.drop_zero_weight=false"]
    run = run_recipe("paced_distill", "paced_distill_tiny", tmp_path, small_world, overrides, ray=shared_ray)
    assert_trained(run, [1])
    data = run.steps()[1]
    _assert_weights_logged(data)
    assert "paced/dropped_sample_frac" not in data
    assert data["actor/paced/actor_samples"] == 64 and data["actor/paced/actor_teacher_skipped_samples"] == 0
