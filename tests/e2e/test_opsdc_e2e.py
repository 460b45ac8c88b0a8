"""OPSDC through verl's real trainer on CPU (recipes/opsdc/opsdc_tiny.yaml), asserting on OPSDC's own logged
metrics. v1 trainer with M = 1 (teacher refreshed after every step): 4 steps with a checkpoint at step 2, then
a second launch resumed from that checkpoint must log the same steps 3-4 (teacher weights, sync counter and
compression baseline restored). Legacy trainer with M = 0 (teacher frozen at the initial weights): the same
4 steps + resumed launch."""

from __future__ import annotations

import pytest
from verl_runner import assert_resumes, batch_overrides, run_straight

pytestmark = pytest.mark.e2e

FAST = [
    *batch_overrides(8),
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "data.max_response_length=192",
]


def _metric(data: dict, name: str):
    """verl prefixes worker metrics with the role ("actor/..."); accept either spelling."""
    for key in (name, f"actor/{name}"):
        if key in data:
            return data[key]
    raise KeyError(f"{name} not logged; keys: {sorted(k for k in data if 'opsdc' in k)}")


def _common(steps, numbers=(1, 2)):
    for step in numbers:
        data = steps[step]
        assert _metric(data, "opsdc/reprompt_miss_frac") == 0.0
        assert _metric(data, "opsdc/teacher_prompt_extra_tokens") == len(" Be concise.")  # char-level tokenizer
        assert _metric(data, "opsdc/reverse_kl") > 0.0  # the instruction changes the teacher's distributions
        assert data["opsdc/response_length_mean"] > 0
        assert 0.0 <= data["opsdc/accuracy"] <= 1.0
        assert _metric(data, "opsdc/worker_step") == step
    assert steps[1]["opsdc/compression_ratio"] == pytest.approx(1.0)  # step-1 rollouts are the step-0 model's
    assert steps[2]["opsdc/compression_ratio"] > 0


def test_opsdc_v1_teacher_synced_every_step_and_resumed(small_world, tmp_path, shared_ray):
    overrides = [*FAST, "actor_rollout_ref.opsdc.teacher_update_freq=1"]
    run = run_straight(
        "opsdc", "opsdc_tiny", tmp_path / "straight", small_world, overrides, ray=shared_ray, tail_lines=200
    )
    steps = run.steps()
    _common(steps, (1, 2, 3, 4))
    for step in (1, 2, 3, 4):
        data = steps[step]
        assert _metric(data, "opsdc/teacher_synced") == 1.0
        # after the sync the teacher's weights equal the actor's, and have left the initial weights
        assert _metric(data, "opsdc/teacher_actor_max_abs_diff") == 0.0
        assert _metric(data, "opsdc/teacher_checksum") == _metric(data, "opsdc/actor_checksum")
        assert _metric(data, "opsdc/teacher_minus_initial_checksum") != 0.0
    # preempted after step 2: the resumed launch starts from the step-2 checkpoint (teacher = step-2 actor)
    assert_resumes(run, overrides)


def test_opsdc_legacy_trainer_frozen_teacher_and_resumed(small_world, tmp_path, shared_ray):
    overrides = [*FAST, "trainer.use_v1=false", "actor_rollout_ref.opsdc.teacher_update_freq=0"]
    run = run_straight(
        "opsdc", "opsdc_tiny", tmp_path / "straight", small_world, overrides, ray=shared_ray, tail_lines=200
    )
    steps = run.steps()
    _common(steps, (1, 2, 3, 4))
    assert_resumes(run, overrides)  # step counter and compression baseline restored
    for step in (1, 2, 3, 4):
        data = steps[step]
        assert _metric(data, "opsdc/teacher_synced") == 0.0
        # the teacher keeps its initial weights while the actor moves away from them
        assert _metric(data, "opsdc/teacher_minus_initial_checksum") == 0.0
        assert _metric(data, "opsdc/teacher_actor_max_abs_diff") > 0.0
        assert _metric(data, "opsdc/actor_checksum") != _metric(data, "opsdc/teacher_initial_checksum")
