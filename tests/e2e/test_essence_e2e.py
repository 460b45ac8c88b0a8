"""Distilling the Essence through verl's real trainer on CPU (2 steps per run): the replay agent loop feeds
teacher-written sequences, verl's teacher server scores them, and the actor's ``essence_kd_topk`` loss logs
what it trained on. A registration / config-key / worker-hook mistake fails here. With FRONTIER_E2E_RESUME_ALL=1
each run (v1 and legacy) trains 4 steps with a checkpoint at step 2, and a second launch resumed from that
checkpoint must log the same steps 3-4 (replayed rows, nothing sampled)."""

from __future__ import annotations

import math

import pytest
from verl_runner import RESUME_ALL, assert_resumes, batch_overrides, reference_rows, run_straight

pytestmark = pytest.mark.e2e

BATCH = 8


@pytest.fixture(scope="module")
def essence_data(small_world, tmp_path_factory):
    """The world's reference verbose solutions as the "teacher-written" dataset (no model needed)."""
    return reference_rows(small_world, tmp_path_factory.mktemp("essence-data"), 64, source="train_verbose.parquet")


def essence_data_full_response_tokens(path) -> float:
    """Mean tokens of the full teacher responses (char-level tokenizer: characters + end of sequence)."""
    import pandas as pd

    return float(pd.read_parquet(path)["extra_info"].map(lambda e: len(e["teacher_response"]) + 1).mean())


def _overrides(data, *extra):
    return [f"data.train_files={data}", *batch_overrides(BATCH), *extra]


def test_essence_cot_only_half_length_v1_and_resumes(small_world, essence_data, tmp_path, shared_ray):
    overrides = _overrides(
        essence_data,
        "actor_rollout_ref.essence.segments=[cot]",
        "actor_rollout_ref.essence.truncate_ratio=0.5",
        "actor_rollout_ref.essence.ce_weight=0.3",
    )
    run = run_straight(
        "essence", "essence_tiny", tmp_path, small_world, overrides, ray=shared_ray, resumable=RESUME_ALL
    )
    for data in run.steps().values():
        assert data["actor/essence/ce_weight"] == pytest.approx(0.3)  # the worker read actor_rollout_ref.essence
        assert data["critic/score/mean"] == 1.0  # the replayed rows' teacher_score (verl skipped its reward loop)
        # half of each sequence: the cut falls inside the reasoning, so every kept response token is CoT
        assert data["actor/essence/trained_tokens"] == pytest.approx(data["response_length/mean"] * BATCH)
        assert data["response_length/mean"] < 0.75 * essence_data_full_response_tokens(essence_data)
        assert math.isfinite(data["actor/distillation/loss"]) and data["actor/essence/forward_kl"] >= 0
        assert data["actor/essence/ce"] > 0
    if RESUME_ALL:
        assert_resumes(run, overrides)


def test_essence_full_sequence_legacy_and_resumes(small_world, essence_data, tmp_path, shared_ray):
    overrides = _overrides(
        essence_data,
        "trainer.use_v1=false",
        "actor_rollout_ref.essence.segments=[prompt,cot,answer]",
        "actor_rollout_ref.essence.truncate_ratio=1.0",
    )
    run = run_straight(
        "essence", "essence_tiny", tmp_path, small_world, overrides, ray=shared_ray, resumable=RESUME_ALL
    )
    for data in run.steps().values():
        assert data["actor/essence/ce_weight"] == pytest.approx(0.5)
        # every token of every sequence is trained: the prompt moved into the response (one prompt token left)
        assert data["actor/essence/trained_tokens"] == pytest.approx(data["response_length/mean"] * BATCH)
        assert data["prompt_length/mean"] == 1.0
    if RESUME_ALL:
        assert_resumes(run, overrides)
