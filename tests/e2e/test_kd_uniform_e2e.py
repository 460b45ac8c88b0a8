"""kd_uniform's tiny recipe through verl's real trainer on CPU (2 steps): teacher-written responses replayed by
``teacher_replay``, scored by verl's teacher server, trained with verl's built-in ``forward_kl_topk``. With
FRONTIER_E2E_RESUME_ALL=1: 4 steps with a checkpoint at step 2, then a second launch resumed from that checkpoint
must log the same steps 3-4 (nothing is sampled: the replayed rows and the teacher's scores are deterministic)."""

from __future__ import annotations

import math

import pytest
from verl_runner import KD_SIZES, RESUME_ALL, assert_resumes, reference_rows, run_straight

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kd_data(small_world, tmp_path_factory):
    """The world's reference concise solutions as the teacher-written dataset (no model needed)."""
    return reference_rows(small_world, tmp_path_factory.mktemp("kd-data"), 32, agent="teacher_replay")


def test_kd_uniform_tiny_trains_on_whole_teacher_responses_and_resumes(small_world, kd_data, tmp_path, shared_ray):
    import pandas as pd

    overrides = [f"data.train_files={kd_data}", *KD_SIZES]
    run = run_straight(
        "kd_uniform", "kd_uniform_tiny", tmp_path, small_world, overrides, ray=shared_ray, resumable=RESUME_ALL
    )
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
    if RESUME_ALL:
        assert_resumes(run, overrides)
