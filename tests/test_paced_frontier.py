"""Paced's frontier: the teacher gate (asyncio) and the backward-pass row selection, against slow references."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.paced.frontier import GroupScoreGate, frontier_rows, group_has_zero_weight


@pytest.mark.parametrize(
    "scores, alpha, beta, expected",
    [
        ([1, 1, 1, 1], 1, 1, True),  # p = 1
        ([0, 0, 0, 0], 1, 1, True),  # p = 0
        ([1, 0, 0, 0], 1, 1, False),  # p = 1/4
        ([1, 1, 1, 1], 1, 0, False),  # beta = 0: w(1) = 1
        ([0, 0, 0, 0], 0, 1, False),  # alpha = 0: w(0) = 1
        ([0, 0, 0, 0], 0, 0, False),  # uniform
        ([1, 1, None, 1], 1, 1, False),  # a missing score: unknown weight, kept
        ([0.5, 0.7], 1, 1, True),  # both above the threshold 0
    ],
)
def test_group_has_zero_weight(scores, alpha, beta, expected):
    assert group_has_zero_weight(scores, 0.0, alpha, beta) is expected


def test_threshold_counts_strictly_greater():
    assert group_has_zero_weight([0.5, 0.5], 0.5, 1, 1) is True  # nobody passes: p = 0
    assert group_has_zero_weight([0.6, 0.5], 0.5, 1, 1) is False


def test_gate_releases_a_group_only_when_complete_and_ignores_unknown_groups():
    async def scenario():
        gate = GroupScoreGate()
        gate.expect("a", 3, lambda scores: all(s == 1 for s in scores))
        gate.expect("b", 2, lambda scores: False)
        first = asyncio.create_task(gate.arrive("a", 1))
        second = asyncio.create_task(gate.arrive("a", 1))
        await asyncio.sleep(0)
        assert not first.done() and not second.done()  # waiting for the third rollout of "a"
        assert await gate.arrive("unknown", 1) is False  # never blocks
        assert await asyncio.wait_for(gate.arrive("a", 1), 1) is True
        assert await first is True and await second is True
        b = await asyncio.gather(gate.arrive("b", 0), gate.arrive("b", 1))
        assert b == [False, False]
        assert gate.pending() == 0
        assert await gate.arrive("a", 1) is False  # a finished group is forgotten
        with pytest.raises(ValueError, match="group size"):
            gate.expect("c", 0, lambda s: True)

    asyncio.run(scenario())


def test_gate_with_interleaved_groups_matches_per_group_decision():
    """Many groups whose rollouts arrive interleaved in random order: each gets its own group's decision."""
    rng = np.random.default_rng(0)
    groups = {f"g{i}": rng.integers(0, 2, size=4).tolist() for i in range(20)}

    async def scenario():
        gate = GroupScoreGate()
        for uid in groups:
            gate.expect(uid, 4, lambda scores: group_has_zero_weight(scores, 0.0, 1.0, 1.0))
        arrivals = [(uid, s) for uid, scores in groups.items() for s in scores]
        rng.shuffle(arrivals)

        async def one(uid, score):
            await asyncio.sleep(float(rng.random()) * 1e-3)
            return uid, await gate.arrive(uid, score)

        return await asyncio.wait_for(asyncio.gather(*(one(u, s) for u, s in arrivals)), 5)

    for uid, skipped in asyncio.run(scenario()):
        scores = groups[uid]
        assert skipped == (len(set(scores)) == 1)


def slow_frontier_rows(weights, ids, num_mini, world):
    """Reference: try every kept-group count from the live count up; padding groups in batch order."""
    order = list(dict.fromkeys(ids))
    n = ids.count(order[0])
    live = [g for g in order if any(w > 0 for w, i in zip(weights, ids) if i == g)]
    dead = [g for g in order if g not in live]
    for keep in itertools.count(max(len(live), num_mini)):
        if keep >= len(order) or (keep % num_mini == 0 and (keep // num_mini * n) % world == 0):
            break
    chosen = set(live) | set(dead[: keep - len(live)])
    rows = [r for r, i in enumerate(ids) if i in chosen]
    return rows, len(rows) // num_mini


@settings(max_examples=150, deadline=None)
@given(
    groups=st.integers(1, 12),
    n=st.integers(1, 5),
    live_mask=st.lists(st.booleans(), min_size=12, max_size=12),
    num_mini=st.sampled_from([1, 2, 4]),
    world=st.sampled_from([1, 2, 4, 8]),
    seed=st.integers(0, 1000),
)
def test_frontier_rows_matches_slow_reference(groups, n, live_mask, num_mini, world, seed):
    if (groups % num_mini) or ((groups // num_mini * n) % world):
        return  # not a valid verl configuration to begin with
    rng = np.random.default_rng(seed)
    perm = rng.permutation(groups * n)  # groups' rows may be anywhere in the batch
    ids = [f"u{perm[r] // n}" for r in range(groups * n)]
    weights = [float(rng.uniform(0.1, 2.0)) if live_mask[int(i[1:])] else 0.0 for i in ids]
    rows, per_mini = frontier_rows(torch.tensor(weights), np.array(ids, dtype=object), num_mini, world)
    ref_rows, ref_per = slow_frontier_rows(weights, ids, num_mini, world)
    assert rows.tolist() == ref_rows and per_mini == ref_per
    kept = len(rows)
    assert kept % num_mini == 0 and per_mini % world == 0 and per_mini % n == 0
    assert {r for r in range(len(ids)) if weights[r] > 0} <= set(rows.tolist())  # every live row is kept


def test_frontier_rows_hand_computed():
    ids = np.array(["a", "a", "b", "b", "c", "c", "d", "d"], dtype=object)
    weights = torch.tensor([0.0, 0.0, 1.5, 1.5, 0.0, 0.0, 0.5, 0.5])
    rows, per = frontier_rows(weights, ids, num_mini_batches=1, world_size=1)
    assert rows.tolist() == [2, 3, 6, 7] and per == 4
    rows, per = frontier_rows(weights, ids, num_mini_batches=1, world_size=8)  # 2 groups x 2 rows: pad to 8
    assert rows.tolist() == list(range(8)) and per == 8
    rows, per = frontier_rows(weights, ids, num_mini_batches=2, world_size=2)  # 2 groups = 2 mini-batches of 2
    assert rows.tolist() == [2, 3, 6, 7] and per == 2
    rows, per = frontier_rows(torch.zeros(8), ids, num_mini_batches=1, world_size=1)  # all zero: one group kept
    assert rows.tolist() == [0, 1] and per == 2
    uneven = np.array(["a", "a", "b"], dtype=object)
    rows, _ = frontier_rows(torch.tensor([0.0, 0.0, 1.0]), uneven, 1, 1)
    assert rows.tolist() == [0, 1, 2]  # unequal group sizes: nothing dropped


# ---------------------------------------------------------------------------------------------------------
# verl glue: the wrapped agent-loop worker methods and the legacy trainer's _update_actor, with fakes
# ---------------------------------------------------------------------------------------------------------


def _paced_config(drop=True, n=2, mini=4, micro=1):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "algorithm": {"adv_estimator": "paced", "paced": {"drop_zero_weight": drop}},
            "actor_rollout_ref": {
                "rollout": {"n": n},
                "actor": {"ppo_mini_batch_size": mini, "ppo_micro_batch_size_per_gpu": micro},
            },
        }
    )


class _FakeWorker:
    """What the wrapped methods touch on verl's AgentLoopWorker."""

    distillation_enabled = True

    def __init__(self, config, topk=5):
        from types import SimpleNamespace

        self.config = config
        self.tokenizer = SimpleNamespace(pad_token_id=7)
        self.teacher_server_manager = SimpleNamespace(
            distillation_loss_config=SimpleNamespace(topk=topk, loss_settings=SimpleNamespace(use_topk=True))
        )
        self.teacher_calls = []


def test_teacher_is_skipped_exactly_for_zero_weight_groups():
    from types import SimpleNamespace

    from verl.protocol import DataProto

    from verl_frontier.paced import verl_plugin as vp

    async def teacher(self, output, prompt_ids, response_ids, validate, sample_kwargs=None):
        self.teacher_calls.append(sample_kwargs["uid"])
        output.extra_fields["teacher_logprobs"] = torch.full((len(prompt_ids) + len(response_ids), 5), -0.5)

    async def generate(self, batch):  # verl's loop: one task per rollout, each scored then sent to the teacher
        outputs = [SimpleNamespace(reward_score=float(s), extra_fields={}) for s in batch.non_tensor_batch["score"]]
        await asyncio.gather(
            *(
                self._compute_teacher_logprobs(o, [1, 2], [3], False, {"uid": u})
                for o, u in zip(outputs, batch.non_tensor_batch["uid"])
            )
        )
        return outputs

    Worker = type("Worker", (_FakeWorker,), {})
    Worker._compute_teacher_logprobs = vp._make_teacher_logprobs(teacher)
    Worker.generate_sequences = vp._make_generate_sequences(generate)
    worker = Worker(_paced_config(n=2))
    uids = np.array(["a", "a", "b", "b", "c", "d", "d"], dtype=object)  # "c" is split across workers: 1 of 2
    scores = np.array([1, 1, 1, 0, 0, 0, 0], dtype=object)
    batch = DataProto.from_dict(non_tensors={"uid": uids, "score": scores}, meta_info={"global_steps": 1})
    outputs = asyncio.run(asyncio.wait_for(worker.generate_sequences(batch), 5))
    assert sorted(worker.teacher_calls) == ["b", "b", "c"]  # a (p=1) and d (p=0) skipped; c not gated
    for uid, out in zip(uids, outputs):
        logprobs = out.extra_fields["teacher_logprobs"]
        assert logprobs.shape == (3, 5)
        skipped = uid in ("a", "d")
        assert bool((logprobs == vp.TEACHER_SKIPPED_LOGPROB).all()) is skipped
        if skipped:
            assert (out.extra_fields["teacher_ids"] == 7).all() and out.extra_fields["teacher_ids"].dtype == torch.int32

    # validation and drop_zero_weight=false: the teacher is always asked
    worker = Worker(_paced_config(drop=False, n=2))
    asyncio.run(asyncio.wait_for(worker.generate_sequences(batch), 5))
    assert len(worker.teacher_calls) == len(uids)


def test_skip_marker_with_positive_weight_is_an_error():
    from verl_frontier.paced import verl_plugin as vp

    teacher = torch.full((2, 3, 4), -1.0)
    teacher[1] = vp.TEACHER_SKIPPED_LOGPROB
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert vp._teacher_skipped(teacher, mask, torch.tensor([[1.0] * 3, [0.0] * 3])).tolist() == [False, True]
    with pytest.raises(RuntimeError, match="drop_zero_weight=false"):
        vp._teacher_skipped(teacher, mask, torch.ones(2, 3))


def test_legacy_update_actor_drops_zero_weight_groups_and_keeps_the_objective():
    from types import SimpleNamespace

    from verl.protocol import DataProto

    from verl_frontier import driver_hooks
    from verl_frontier.paced import verl_plugin as vp

    seen = {}

    def original(self, batch):
        seen["rows"] = len(batch)
        seen["mini"] = self.config.actor_rollout_ref.actor.ppo_mini_batch_size
        seen["advantages"] = batch.batch["advantages"].clone()
        seen["uid"] = batch.non_tensor_batch["uid"].tolist()
        return "updated"

    trainer = SimpleNamespace(config=_paced_config(n=2, mini=4), actor_rollout_wg=SimpleNamespace(world_size=1))
    trainer.config.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu = 2
    uids = np.array(["a", "a", "b", "b", "c", "c", "d", "d"], dtype=object)
    weight = torch.tensor([0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 2.0, 2.0])  # mean 1 over the step
    mask = torch.tensor([[1, 1, 0]] * 8)
    batch = DataProto.from_dict(
        tensors={"advantages": weight[:, None] * mask, "response_mask": mask}, non_tensors={"uid": uids}
    )
    losses = torch.rand(8)  # per-sample token-mean losses; the objective is (1/B) sum_i w_i l_i
    driver_hooks.pop_step_metrics()
    assert vp._make_update_actor(original)(trainer, batch) == "updated"
    assert seen["rows"] == 4 and seen["mini"] == 2 and seen["uid"] == ["b", "b", "d", "d"]
    assert trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size == 4  # restored
    kept_w = seen["advantages"][:, 0]
    full = (weight * losses).sum() / 8
    trimmed = (kept_w * losses[[2, 3, 6, 7]]).sum() / 4
    torch.testing.assert_close(trimmed, full)
    metrics = driver_hooks.pop_step_metrics()
    assert metrics["paced/dropped_sample_frac"] == 0.5 and metrics["paced/backward_samples"] == 4

    # a fixed micro-batch of 8 rows per rank: the 4 live rows cannot form a mini-batch, nothing is dropped
    trainer.config.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu = 8
    vp._make_update_actor(original)(trainer, batch)
    assert seen["rows"] == 8 and seen["mini"] == 4
    assert driver_hooks.pop_step_metrics()["paced/dropped_sample_frac"] == 0.0
