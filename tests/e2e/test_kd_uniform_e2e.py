"""kd_uniform's tiny recipe through verl's real trainer on CPU (2 steps): teacher-written responses replayed by
``teacher_replay``, scored by verl's teacher server, trained with verl's built-in ``forward_kl_topk``. With
FRONTIER_E2E_RESUME_ALL=1: 4 steps with a checkpoint at step 2, then a second launch resumed from that checkpoint
must log the same steps 3-4 (nothing is sampled: the replayed rows and the teacher's scores are deterministic)."""

from __future__ import annotations

import math

import pytest
from verl_runner import RESUME_ALL, assert_resumed_like_straight, assert_trained, resume_from, run_recipe, save_at

pytestmark = pytest.mark.e2e

BATCH = 8


@pytest.fixture(scope="module")
def kd_data(small_world, tmp_path_factory):
    """The world's reference concise solutions as the teacher-written dataset (no model needed)."""
    from verl_frontier.essence.data import build

    out = tmp_path_factory.mktemp("kd-data")
    stats = build(
        small_world / "data" / "train.parquet", out, from_field="extra_info.reference", num=32, agent="teacher_replay"
    )
    assert stats["kept"] == 32
    return out / "train.parquet"


def test_kd_uniform_tiny_trains_on_whole_teacher_responses_and_resumes(small_world, kd_data, tmp_path, shared_ray):
    import pandas as pd

    overrides = [
        f"data.train_files={kd_data}",
        f"data.train_batch_size={BATCH}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={BATCH}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={BATCH}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={BATCH}",
        "actor_rollout_ref.actor.optim.lr_warmup_steps=1",
        "data.val_max_samples=16",
    ]
    steps = [1, 2, 3, 4] if RESUME_ALL else [1, 2]
    run = run_recipe(
        "kd_uniform", "kd_uniform_tiny", tmp_path, small_world, [*overrides, *(save_at(2) if RESUME_ALL else [])],
        steps=max(steps), ray=shared_ray,
    )  # fmt: skip
    assert_trained(run, steps)
    rows = pd.read_parquet(kd_data)
    # char-level tokenizer: a replayed response is the reference text + end of sequence
    lengths = rows["extra_info"].map(lambda e: len(e["teacher_response"]) + 1)
    prompt_tokens = [len(p[0]["content"]) for p in rows["prompt"]]
    for data in run.steps().values():
        assert lengths.min() <= data["response_length/mean"] <= lengths.max()
        assert data["prompt_length/mean"] > min(prompt_tokens)  # the prompt stays the prompt (not trained)
        assert data["critic/score/mean"] == 1.0  # replayed rows carry the teacher's score
        loss = data["actor/distillation/loss"]
        assert math.isfinite(loss) and loss >= 0  # exact forward KL (top-k = vocabulary) is non-negative
    if not RESUME_ALL:
        return
    resumed = run_recipe(
        "kd_uniform", "kd_uniform_tiny", tmp_path / "resumed", small_world, [*overrides, *resume_from(run, 2)],
        steps=4, ray=shared_ray,
    )  # fmt: skip
    assert_resumed_like_straight(run, resumed, [3, 4])
