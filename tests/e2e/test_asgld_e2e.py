"""ASGLD as the actor's optimizer through verl's real trainer on CPU (4 steps, a checkpoint at step 2), built by
verl's own optimizer builder from ``optim.optimizer_impl`` / ``optim.optimizer``. The saved optimizer checkpoint
proves which class trained the actor: only our optimizers save the noise generator state. A second launch
resumed from the step-2 checkpoint logs the same steps 3-4 (the noise generator continues where it was)."""

from __future__ import annotations

import math

import pytest
import torch
from verl_runner import assert_resumes, run_straight

pytestmark = pytest.mark.e2e


def test_asgld_trains_the_actor_through_verl(small_world, tmp_path, shared_ray):
    seed = ["actor_rollout_ref.actor.optim.override_optimizer_config.seed=7"]
    run = run_straight("asgld_grpo", "asgld_grpo_tiny", tmp_path, small_world, seed, ray=shared_ray)
    for data in run.steps().values():
        assert math.isfinite(data["actor/grad_norm"]) and data["actor/lr"] == pytest.approx(1e-4)
    optim_files = sorted((tmp_path / "checkpoints" / "global_step_2" / "actor").glob("optim_*.pt"))
    assert optim_files, sorted(p.name for p in (tmp_path / "checkpoints" / "global_step_2" / "actor").iterdir())
    state = torch.load(optim_files[0], weights_only=False)
    assert state["noise_seed"] == 7 and state["noise_generator"] is not None, sorted(state)
    assert state["param_groups"][0]["noise_scale"] == pytest.approx(1e-3)
    assert all("square_avg" in s for s in state["state"].values()) and state["state"]
    assert_resumes(run, seed)
