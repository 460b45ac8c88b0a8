"""verl's real trainer on CPU (verl_cpu), 2 steps per run, asserting on the metrics verl logged.

One subprocess per run (each is a full ``python -m verl.trainer.main_ppo``); runs are sequential.
"""

from __future__ import annotations

import pytest
from verl_runner import assert_trained, run_recipe

pytestmark = pytest.mark.e2e

# Rollout log-probs served by the hf server vs the actor's recompute after the weight update: equal up to
# float32 noise when the weight sync is exact (a stale or partial sync shows up as ~1e-1).
WEIGHT_SYNC_TOLERANCE = 1e-4


def test_grpo_v1_kl_ref_validation_checkpoint_and_resume(small_world, tmp_path, shared_ray):
    """v1 trainer: GRPO with the KL loss against a ref model, validation, a checkpoint, then a resume."""
    overrides = ["trainer.test_freq=2", "trainer.save_freq=2", "actor_rollout_ref.actor.kl_loss_coef=0.1"]
    first = run_recipe("grpo_baseline", "grpo_baseline_tiny", tmp_path, small_world, overrides, steps=2, ray=shared_ray)
    assert_trained(first, [1, 2])
    steps = first.steps()
    for step in (1, 2):
        data = steps[step]
        assert "actor/kl_loss" in data and "actor/pg_loss" in data
        assert data["training/rollout_probs_diff_max"] < WEIGHT_SYNC_TOLERANCE, data["training/rollout_probs_diff_max"]
        assert 0.0 <= data["critic/score/mean"] <= 1.0
    assert any(key.startswith("val-core/") for key in steps[2]), sorted(steps[2])
    checkpoint = tmp_path / "checkpoints" / "global_step_2"
    assert (checkpoint / "actor").is_dir()
    assert (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"

    # `frontier eval` works on verl's saved FSDP checkpoint (merged to HF the way verl's model_merger does)
    from verl_frontier.evaluation import evaluate

    result = evaluate(checkpoint, small_world / "data" / "test.parquet", n=2, limit=8, max_new_tokens=32)
    assert result["hf_dir"] != str(checkpoint) and result["num_problems"] == 8
    assert 0.0 <= result["greedy_accuracy"] <= 1.0 and sorted(map(int, result["pass_at_k"])) == [1, 2]

    resumed = run_recipe(
        "grpo_baseline",
        "grpo_baseline_tiny",
        tmp_path,
        small_world,
        [*overrides, "trainer.resume_mode=auto"],
        steps=3,
        ray=shared_ray,
    )
    assert resumed.returncode == 0, resumed.tail()
    # verl's file logger starts a new JSONL per run: the resumed run logs step 3 only.
    assert resumed.train_steps() == [3], (resumed.train_steps(), resumed.tail())
    assert "Resuming from" in resumed.log and "global_step_2" in resumed.log
    assert resumed.steps()[3]["training/rollout_probs_diff_max"] < WEIGHT_SYNC_TOLERANCE


def test_grpo_legacy_trainer(small_world, tmp_path, shared_ray):
    run = run_recipe(
        "grpo_baseline", "grpo_baseline_tiny", tmp_path, small_world, ["trainer.use_v1=false"], ray=shared_ray
    )
    assert_trained(run, [1, 2])
    for data in run.steps().values():
        assert "actor/pg_loss" in data and "actor/kl_loss" in data
        assert data["training/rollout_probs_diff_max"] < WEIGHT_SYNC_TOLERANCE


def test_distillation_k3_v1_teacher_on_hf_server(small_world, tmp_path, shared_ray):
    overrides = [
        "distillation.distillation_loss.loss_mode=k3",
        "distillation.distillation_loss.use_policy_gradient=false",
    ]
    run = run_recipe("opd_uniform", "opd_uniform_tiny", tmp_path, small_world, overrides, ray=shared_ray)
    assert_trained(run, [1, 2])
    for data in run.steps().values():
        # teacher (trained) and student (random init) differ: a real teacher signal gives a positive KL
        assert data["actor/distillation/loss"] > 0, data["actor/distillation/loss"]
        assert data["training/rollout_probs_diff_max"] < WEIGHT_SYNC_TOLERANCE


def test_distillation_forward_kl_topk_legacy_teacher_equal_to_student_gives_zero(small_world, tmp_path, shared_ray):
    """Teacher = the student's own checkpoint: the hf server's top-k prompt log-probs, realigned by verl onto
    the response, must match the actor's exactly (zero forward KL, identical top-k sets). An off-by-one in
    the teacher layout or a stale weight shows up here as a positive loss."""
    overrides = [
        "trainer.use_v1=false",
        "distillation.distillation_loss.loss_mode=forward_kl_topk",
        "distillation.distillation_loss.use_policy_gradient=false",
        "distillation.distillation_loss.topk=8",
        f"distillation.teacher_models.teacher_model.model_path={small_world / 'student'}",
        "actor_rollout_ref.actor.optim.lr=1e-12",  # step 2 still sees (numerically) the initial weights
    ]
    run = run_recipe("opd_uniform", "opd_uniform_tiny", tmp_path, small_world, overrides, ray=shared_ray)
    assert_trained(run, [1, 2])
    for data in run.steps().values():
        assert data["actor/distillation/loss"] == pytest.approx(0.0, abs=1e-5)
        assert data["actor/distillation/overlap_ratio"] == pytest.approx(1.0, abs=1e-6)
        assert 0 < data["actor/distillation/teacher_mass"] <= 1.0 + 1e-6


def test_same_seed_same_first_step_metrics(small_world, tmp_path, shared_ray):
    """Reproducibility: two runs with the same seed log the same first-step metrics (rollout samples are seeded
    by (engine seed, prompt, occurrence), not by the order in which concurrent requests arrive)."""
    runs = [
        run_recipe("grpo_baseline", "grpo_baseline_tiny", tmp_path / name, small_world, [], steps=1, ray=shared_ray)
        for name in ("first", "second")
    ]
    for run in runs:
        assert_trained(run, [1])
    first, second = (run.steps()[1] for run in runs)
    for key in ("critic/score/mean", "response_length/mean", "response_length/max", "critic/advantages/mean"):
        assert first[key] == second[key], (key, first[key], second[key])
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/entropy"):
        assert first[key] == pytest.approx(second[key], rel=1e-5, abs=1e-7), (key, first[key], second[key])
