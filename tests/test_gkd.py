"""GKD mixing (verl_frontier.gkd): which rows of a step are on-policy, the cold-start switch, the driver-side
assignment of both trainers' batches, the agent loop's delegation and the config checks. No verl run."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from verl_frontier import driver_hooks
from verl_frontier.gkd.assign import on_policy_count, on_policy_mask
from verl_frontier.gkd.config import GkdConfig
from verl_frontier.validation import FrontierConfigError

# --- the row assignment ------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2, 7, 8, 64, 100])
@pytest.mark.parametrize("lmbda", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_exact_share_of_on_policy_rows(groups, lmbda):
    mask = on_policy_mask(3, GkdConfig(lmbda=lmbda), row_ids=list(range(groups)))
    assert sum(mask) == on_policy_count(lmbda, groups) == math.floor(lmbda * groups + 0.5)
    assert abs(sum(mask) / groups - lmbda) <= 0.5 / groups + 1e-12  # the closest achievable share


def test_round_half_up_and_edges():
    assert on_policy_count(0.5, 7) == 4 and on_policy_count(0.5, 1) == 1 and on_policy_count(0.25, 2) == 1
    assert on_policy_count(0.0, 50) == 0 and on_policy_count(1.0, 50) == 50
    with pytest.raises(ValueError):
        on_policy_count(1.5, 4)


@pytest.mark.parametrize("lmbda, expected", [(0.0, False), (1.0, True)])
def test_lambda_zero_and_one_take_every_row_to_one_side(lmbda, expected):
    for step in (1, 2, 17):
        assert on_policy_mask(step, GkdConfig(lmbda=lmbda), row_ids=list(range(33))) == [expected] * 33


def test_deterministic_per_step_and_independent_of_row_order():
    settings = GkdConfig(lmbda=0.5)
    ids = list(range(100, 164))

    def chosen(step, order):
        mask = on_policy_mask(step, settings, row_ids=order)
        return {row for row, on in zip(order, mask) if on}

    first = chosen(5, ids)
    assert chosen(5, ids) == first  # same step, same rows: same choice
    assert chosen(5, list(reversed(ids))) == first  # the permutation is keyed by row id, not position
    assert chosen(6, ids) != first  # a new permutation every step
    assert len(first) == 32
    assert chosen(5, ids) != {
        r for r, on in zip(ids, on_policy_mask(5, GkdConfig(lmbda=0.5, seed=1), row_ids=ids)) if on
    }


def test_rows_of_one_prompt_take_the_same_side():
    """Legacy trainer: the n rollouts of a prompt are n rows with one uid; the share is over prompts."""
    uids = [f"u{i // 4}" for i in range(40)]  # 10 prompts x n = 4
    ids = [i // 4 for i in range(40)]
    mask = on_policy_mask(2, GkdConfig(lmbda=0.3), uids=uids, row_ids=ids)
    for g in range(10):
        assert len(set(mask[4 * g : 4 * g + 4])) == 1
    assert sum(mask) == 4 * 3


def test_rows_without_ids_use_positions():
    assert sum(on_policy_mask(1, GkdConfig(lmbda=0.5), num_rows=10)) == 5
    assert on_policy_mask(1, GkdConfig(lmbda=0.5), num_rows=10) == on_policy_mask(1, GkdConfig(lmbda=0.5), num_rows=10)


def test_cold_start_switch():
    settings = GkdConfig(lmbda=0.5, cold_start_steps=3)
    assert [settings.lambda_at(s) for s in (1, 2, 3, 4, 5)] == [0.0, 0.0, 0.0, 0.5, 0.5]
    ids = list(range(16))
    for step in (1, 2, 3):
        assert not any(on_policy_mask(step, settings, row_ids=ids))
    assert sum(on_policy_mask(4, settings, row_ids=ids)) == 8
    # the two-stage use: teacher sequences, then every row on-policy
    assert all(on_policy_mask(4, GkdConfig(lmbda=1.0, cold_start_steps=3), row_ids=ids))
    with pytest.raises(ValueError, match="needs the training step"):
        settings.lambda_at(None)
    assert GkdConfig(lmbda=0.5).lambda_at(None) == 0.5


def test_config_schema():
    assert GkdConfig.from_mapping(None) == GkdConfig()
    assert GkdConfig.from_mapping({"lmbda": 1, "cold_start_steps": 2}) == GkdConfig(lmbda=1.0, cold_start_steps=2)
    with pytest.raises(FrontierConfigError, match="algorithm.gkd.lmbda"):
        GkdConfig.from_mapping({"lmbda": 1.5})
    with pytest.raises(FrontierConfigError, match="algorithm.gkd.cold_start_steps"):
        GkdConfig.from_mapping({"cold_start_steps": -1})
    with pytest.raises(FrontierConfigError, match="did you mean 'algorithm.gkd.lmbda'"):
        GkdConfig.from_mapping({"lmbd": 0.5})


# --- the driver side: both trainers' agent-loop manager calls -----------------------------------------------

plugin = pytest.importorskip("verl_frontier.gkd.verl_plugin")


def _config(**gkd):
    return OmegaConf.create({"algorithm": {"gkd": gkd} if gkd else {}})


def test_assign_rows_mixes_only_replay_rows_and_reports_the_share():
    names = ["teacher_replay"] * 6 + ["single_turn_agent"] * 2 + ["gkd_mix"] * 2
    names_out, decision, mixed_batch, metrics = plugin.assign_rows(
        names, None, list(range(10)), 4, GkdConfig(lmbda=0.5, cold_start_steps=1), validate=False
    )
    assert mixed_batch
    assert names_out[:6] == ["gkd_mix"] * 6 and names_out[6:8] == ["single_turn_agent"] * 2
    assert names_out[8:] == ["gkd_mix"] * 2
    mixed = [decision[i] for i in (*range(6), 8, 9)]
    assert sum(mixed) == 4
    assert metrics == {"gkd/on_policy_frac": 0.5, "gkd/lambda": 0.5, "gkd/cold_start": 0.0, "gkd/mixed_rows": 8.0}
    _, decision, mixed_batch, metrics = plugin.assign_rows(
        names, None, list(range(10)), 1, GkdConfig(cold_start_steps=1), False
    )
    assert metrics["gkd/on_policy_frac"] == 0.0 and metrics["gkd/cold_start"] == 1.0 and not mixed_batch
    assert not any(decision[i] for i in (*range(6), 8, 9))
    assert plugin.assign_rows(["single_turn_agent"] * 3, None, None, 1, GkdConfig(), False) is None


def test_validation_batches_are_not_mixed():
    names, decision, mixed_batch, metrics = plugin.assign_rows(
        ["gkd_mix", "teacher_replay"], None, [0, 1], 3, GkdConfig(), True
    )
    assert names == ["gkd_mix", "teacher_replay"] and decision[0] is True and metrics == {} and not mixed_batch


def test_legacy_manager_wrap_assigns_rows_and_logs_for_the_step():
    from verl.protocol import DataProto

    seen = {}

    def original(self, prompts):
        seen["batch"] = prompts
        return "out"

    rows = 8
    batch = DataProto.from_single_dict(
        {
            "agent_name": np.array(["teacher_replay"] * rows, dtype=object),
            "uid": np.array([f"u{i}" for i in range(rows)], dtype=object),
            "index": np.arange(rows),
        }
    )
    batch.meta_info["global_steps"] = 7
    manager = SimpleNamespace(config=_config(lmbda=0.25))
    driver_hooks.pop_metrics_for_step(10**6)  # nothing left from other tests
    assert plugin._make_generate_sequences(original)(manager, batch) == "out"
    out = seen["batch"].non_tensor_batch
    assert list(out["agent_name"]) == ["gkd_mix"] * rows
    assert sum(out[plugin.ON_POLICY_COLUMN]) == 2 and all(out[plugin.MIXED_COLUMN])
    assert driver_hooks.pop_metrics_for_step(7)["gkd/on_policy_frac"] == 0.25
    # without algorithm.gkd the batch is left alone
    plain = DataProto.from_single_dict({"agent_name": np.array(["teacher_replay"] * 2, dtype=object)})
    plugin._make_generate_sequences(original)(SimpleNamespace(config=_config()), plain)
    assert plugin.ON_POLICY_COLUMN not in plain.non_tensor_batch


def test_v1_manager_wrap_assigns_rows_and_logs_for_the_step():
    from verl.utils import tensordict_utils as tu

    seen = {}
    rows = 6
    batch = tu.get_tensordict(
        {
            "agent_name": np.array(["teacher_replay"] * rows, dtype=object),
            "uid": np.array([f"u{i}" for i in range(rows)], dtype=object),
            "index": np.arange(rows),
        }
    )
    tu.assign_non_tensor_data(batch, "global_steps", 2)
    manager = SimpleNamespace(config=_config(lmbda=0.5, cold_start_steps=1))
    plugin._make_generate_sequences_tq(lambda self, prompts: seen.setdefault("batch", prompts))(manager, batch)
    out = seen["batch"]
    assert list(out["agent_name"]) == ["gkd_mix"] * rows
    assert sum(bool(v) for v in out[plugin.ON_POLICY_COLUMN]) == 3 and all(out[plugin.MIXED_COLUMN])
    assert driver_hooks.pop_metrics_for_step(2) == {
        "gkd/on_policy_frac": 0.5,
        "gkd/lambda": 0.5,
        "gkd/cold_start": 0.0,
        "gkd/mixed_rows": 6.0,
    }


def test_step_tagged_metrics_reach_only_their_step():
    driver_hooks.log_metrics_for_step(3, {"a": 1})
    driver_hooks.log_metrics_for_step(4, {"b": 2})
    assert driver_hooks.pop_metrics_for_step(4) == {"b": 2.0}
    assert driver_hooks.pop_metrics_for_step(3) == {}  # an earlier step's leftovers are dropped
    assert driver_hooks.pop_metrics_for_step(None) == {}


# --- the agent loop ------------------------------------------------------------------------------------------


class _FakeLoop:
    calls: list = []

    def __init__(self, *args, **kwargs):
        self.init = kwargs

    async def run(self, sampling_params, **kwargs):
        _FakeLoop.calls.append((type(self).__name__, self.init, sampling_params, kwargs))
        return SimpleNamespace(loop=type(self).__name__, reward_score=1.0)


class FakeOnPolicy(_FakeLoop):
    pass


class FakeReplay(_FakeLoop):
    pass


def test_agent_loop_delegates_with_verl_arguments(monkeypatch):
    from verl.experimental.agent_loop import agent_loop

    monkeypatch.setitem(agent_loop._agent_loop_registry, "fake_on_policy", {"_target_": f"{__name__}.FakeOnPolicy"})
    monkeypatch.setattr(plugin, "TeacherReplayAgentLoop", FakeReplay)
    loop = plugin.GkdMixAgentLoop.__new__(plugin.GkdMixAgentLoop)
    loop._args, loop._kwargs = (), {"tokenizer": "tok", "server_manager": "srv"}
    loop.rollout_config = OmegaConf.create({"agent": {"default_agent_loop": "fake_on_policy"}})
    _FakeLoop.calls.clear()
    row = {"raw_prompt": [{"role": "user", "content": "1+1="}], "extra_info": {"index": 3}, "uid": "u"}
    sampled = asyncio.run(loop.run({"temperature": 1.0}, **row, gkd_on_policy=True, gkd_mixed_batch=True))
    assert sampled.loop == "FakeOnPolicy" and sampled.reward_score == 1.0
    replayed = asyncio.run(loop.run({"temperature": 1.0}, **row, gkd_on_policy=False, gkd_mixed_batch=False))
    assert replayed.loop == "FakeReplay" and replayed.reward_score == 1.0  # the data's teacher_score, as kd_uniform
    # next to sampled rows, a replayed row is scored by verl's reward path like them
    assert asyncio.run(loop.run({}, **row, gkd_on_policy=False, gkd_mixed_batch=True)).reward_score is None
    for _, init, params, kwargs in _FakeLoop.calls[:2]:
        assert init == {"tokenizer": "tok", "server_manager": "srv"} and params == {"temperature": 1.0}
        assert kwargs == row  # the row's fields as verl passed them, without the assignment column
    with pytest.raises(KeyError, match="algorithm.gkd"):
        asyncio.run(loop.run({}, **row))
    loop.rollout_config = OmegaConf.create({"agent": {"default_agent_loop": "gkd_mix"}})
    assert loop.on_policy_agent() == "single_turn_agent"


# --- config checks -------------------------------------------------------------------------------------------


def _check_config(train, **extra):
    base = {
        "data": {"train_files": str(train)},
        "distillation": {"enabled": True},
        "actor_rollout_ref": {"rollout": {"calculate_log_probs": False}},
        "algorithm": {"gkd": {"lmbda": 0.5}},
    }
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(extra))


def test_config_checks(tmp_path, rl_parquet, caplog):
    from verl_frontier.gkd.validation import check_gkd

    replay = rl_parquet(tmp_path / "kd.parquet", rows=2, agent_name="teacher_replay")
    plain = rl_parquet(tmp_path / "plain.parquet", rows=2)
    named = rl_parquet(tmp_path / "gkd.parquet", rows=2, agent_name="gkd_mix")
    check_gkd(_check_config(replay))
    check_gkd(_check_config(named))
    with pytest.raises(FrontierConfigError, match="distillation.enabled"):
        check_gkd(_check_config(replay, distillation={"enabled": False}))
    with pytest.raises(FrontierConfigError, match="calculate_log_probs"):
        check_gkd(_check_config(replay, actor_rollout_ref={"rollout": {"calculate_log_probs": True}}))
    with caplog.at_level("WARNING", logger="verl_frontier"):
        check_gkd(_check_config(plain))
    assert "the training data has none" in caplog.text
    without = _check_config(named)
    without.algorithm.pop("gkd")
    with pytest.raises(FrontierConfigError, match="rows named 'gkd_mix'"):
        check_gkd(without)
    without.data.train_files = str(replay)
    check_gkd(without)  # kd data without the section: nothing to check


def test_agent_loop_rows_equal_the_single_turn_and_replay_loops_output():
    """Real verl agent loops (tiny-world tokenizer, a scripted server): an on-policy row of gkd_mix is verl's
    single_turn_agent output for the row and a replayed row is teacher_replay's, field for field (lambda = 1 is
    on-policy distillation, lambda = 0 kd_uniform)."""
    from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop
    from verl.workers.rollout.replica import TokenOutput

    from verl_frontier.agent_loops import standalone_agent_loop
    from verl_frontier.kd.replay import TeacherReplayAgentLoop
    from verl_frontier.tinyworld.tokenizer import build_tokenizer

    tok = build_tokenizer()

    class Server:
        async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
            ids = tok.encode("Answer: 5", add_special_tokens=False) + [tok.eos_token_id]
            return TokenOutput(token_ids=ids, log_probs=None, stop_reason="completed")

    rollout = {"prompt_length": 64, "response_length": 96, "agent": {"default_agent_loop": "single_turn_agent"}}
    config = {"actor_rollout_ref": {"rollout": rollout}}
    row = {
        "raw_prompt": [{"role": "user", "content": "Compute 2+3."}],
        "extra_info": {"teacher_response": "2+3=5. Answer: 5", "teacher_score": 1.0, "index": 4},
        "global_steps": 2,
    }

    async def run(cls, **extra):
        return await standalone_agent_loop(cls, Server(), tok, config).run({"temperature": 1.0}, **row, **extra)

    def fields(out):
        return out.model_dump(exclude={"metrics"})

    sampled = asyncio.run(run(plugin.GkdMixAgentLoop, gkd_on_policy=True))
    assert fields(sampled) == fields(asyncio.run(run(SingleTurnAgentLoop)))
    replayed = asyncio.run(run(plugin.GkdMixAgentLoop, gkd_on_policy=False))
    assert fields(replayed) == fields(asyncio.run(run(TeacherReplayAgentLoop)))
    assert replayed.response_ids != sampled.response_ids and replayed.reward_score == 1.0
