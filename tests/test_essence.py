"""Distilling the Essence: segments, truncation, loss (against slow references), the verl loss called the way
verl calls it, the replay / on-policy agent loops, config checks and data prep."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from verl_frontier.essence.config import EssenceConfig
from verl_frontier.essence.losses import essence_kd_loss, essence_token_loss
from verl_frontier.essence.segments import (
    FMCHISEL_MODES,
    check_truncate_ratio,
    find_subsequence,
    keep_length,
    parse_segments,
    segment_mask,
    truncated_length,
)

# ---------------------------------------------------------------------------------------------------------
# segments and truncation
# ---------------------------------------------------------------------------------------------------------


def test_parse_segments_accepts_lists_strings_and_fmchisel_modes():
    assert parse_segments(["cot"]) == {"cot"}
    assert parse_segments("cot, answer") == {"cot", "answer"}
    assert parse_segments("all") == {"prompt", "cot", "answer"}
    assert FMCHISEL_MODES["promptcotAns"] == {"prompt", "cot", "answer"}
    assert parse_segments("promptAns") == {"prompt", "answer"}


@pytest.mark.parametrize("bad", [["cot", "reasoning"], "thoughts", ["Prompt"]])
def test_unknown_segment_is_named(bad):
    with pytest.raises(ValueError, match="unknown segment"):
        parse_segments(bad)


def test_no_segment_is_an_error():
    with pytest.raises(ValueError, match="no segment"):
        parse_segments([])


@pytest.mark.parametrize("r", [0.0, -0.5, 1.0001, 2, float("nan")])
def test_ratio_outside_unit_interval_is_rejected(r):
    with pytest.raises(ValueError, match=r"truncate_ratio must be in \(0, 1\]"):
        check_truncate_ratio(r)


def test_truncated_length_is_fmchisels_formula():
    assert truncated_length(10, 0.5) == 5
    assert truncated_length(9, 0.5) == 4  # int() floors
    assert truncated_length(3, 0.1) == 1  # at least one token
    assert truncated_length(7, 1.0) == 7
    assert truncated_length(0, 0.5) == 0


@given(st.integers(1, 5000), st.floats(1e-6, 1.0), st.floats(1e-6, 1.0))
def test_truncated_length_bounds_and_monotone(length, r1, r2):
    lo, hi = sorted((r1, r2))
    assert 1 <= truncated_length(length, lo) <= truncated_length(length, hi) <= length
    assert truncated_length(length, hi) == max(1, math.floor(length * hi))


def test_find_subsequence():
    assert find_subsequence([1, 2, 3, 2, 3], [2, 3]) == 1
    assert find_subsequence([1, 2, 3, 2, 3], [2, 3], start=2) == 3
    assert find_subsequence([1, 2], [2, 3]) == -1
    assert find_subsequence([1, 2], []) == -1


def _reference_mask(prompt_len, response, marker, segments, r, scope):
    """Slow reference through text: token i's segment from where it lies relative to the marker string."""
    text = "".join(chr(65 + t) for t in response)
    marker_text = "".join(chr(65 + t) for t in marker)
    at = text.find(marker_text)
    names = ["prompt"] * prompt_len + [("cot" if at < 0 or j < at else "answer") for j in range(len(response))]
    total = prompt_len + len(response)
    if scope == "sequence":
        keep = max(1, int(total * r))
    else:
        keep = prompt_len + (max(1, int(len(response) * r)) if response else 0)
    return [int(name in segments and i < keep) for i, name in enumerate(names)]


@settings(max_examples=200, deadline=None)
@given(
    prompt_len=st.integers(1, 12),
    response=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    marker=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    segments=st.sets(st.sampled_from(["prompt", "cot", "answer"]), min_size=1),
    r=st.floats(0.01, 1.0),
    scope=st.sampled_from(["sequence", "response"]),
)
def test_segment_mask_matches_text_reference(prompt_len, response, marker, segments, r, scope):
    got = segment_mask(prompt_len, response, marker, segments, r, scope)
    assert got == _reference_mask(prompt_len, response, marker, segments, r, scope)


def test_keep_length_scopes():
    assert keep_length(40, 60, 0.5, "sequence") == 50
    assert keep_length(40, 60, 0.5, "response") == 70
    with pytest.raises(ValueError, match="truncation scope"):
        keep_length(4, 6, 0.5, "tokens")


# ---------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------


def test_token_loss_hand_computed():
    logp = torch.tensor([[-1.0, -2.0]])
    fkl = torch.tensor([[0.5, 0.25]])
    torch.testing.assert_close(essence_token_loss(logp, fkl, 0.5), torch.tensor([[0.75, 1.125]]))
    torch.testing.assert_close(essence_token_loss(logp, fkl, 1.0), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(essence_token_loss(logp, fkl, 0.0), fkl)


def _slow_essence_loss(student_logits, teacher_logits, targets, mask, lam):
    total, count = 0.0, 0
    for n in range(student_logits.shape[0]):
        if not mask[n]:
            continue
        q = [math.exp(x) for x in student_logits[n].double().tolist()]
        p = [math.exp(x) for x in teacher_logits[n].double().tolist()]
        zq, zp = sum(q), sum(p)
        q, p = [v / zq for v in q], [v / zp for v in p]
        ce = -math.log(q[int(targets[n])])
        fkl = sum(pv * (math.log(pv) - math.log(qv)) for pv, qv in zip(p, q, strict=True))
        total += lam * ce + (1 - lam) * fkl
        count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.8, 1.0])
def test_full_vocab_loss_matches_slow_reference_and_gradient(lam):
    gen = torch.Generator().manual_seed(0)
    n, v = 9, 13
    student = (torch.randn(n, v, generator=gen) * 2).requires_grad_()
    teacher = torch.randn(n, v, generator=gen) * 2
    targets = torch.randint(0, v, (n,), generator=gen)
    mask = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1])
    loss = essence_kd_loss(student, teacher, targets, mask, ce_weight=lam, chunk_size=4)
    assert loss.item() == pytest.approx(_slow_essence_loss(student.detach(), teacher, targets, mask, lam), rel=1e-5)
    # gradient against plain autograd of the textbook formula
    s64 = student.detach().double().requires_grad_()
    log_q, log_p = torch.log_softmax(s64, -1), torch.log_softmax(teacher.double(), -1)
    per_token = lam * -log_q.gather(1, targets[:, None]).squeeze(1) + (1 - lam) * (log_p.exp() * (log_p - log_q)).sum(
        -1
    )
    ref = (per_token * mask).sum() / mask.sum()
    (g,) = torch.autograd.grad(loss, student)
    (g_ref,) = torch.autograd.grad(ref, s64)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# the verl loss, called the way verl calls it (logits processor, then the final loss)
# ---------------------------------------------------------------------------------------------------------

verl = pytest.importorskip("verl")
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl_distillation import verl_distillation_loss  # noqa: E402

from verl_frontier.essence import agent_loop as essence_loops  # noqa: E402
from verl_frontier.essence import verl_plugin  # noqa: E402

VOCAB = 11


def _micro_batch(seed=0):
    """Three samples (prompt 2, 3, 1; response 3, 1, 2 tokens; response mask with holes), verl's no-padding
    layout, teacher top-k = the whole vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    prompt_lens, response_lens = [2, 3, 1], [3, 1, 2]
    seq_lens = [p + r for p, r in zip(prompt_lens, response_lens, strict=True)]
    total = sum(seq_lens)
    input_ids = torch.randint(0, VOCAB, (total,), generator=gen)
    masks = [torch.tensor([1, 0, 1]), torch.tensor([1]), torch.tensor([0, 1])]

    def nested(values, lengths):
        return torch.nested.as_nested_tensor(list(torch.split(values, lengths)), layout=torch.jagged)

    teacher_logits = torch.randn(total, VOCAB, generator=gen) * 2
    top = torch.log_softmax(teacher_logits, -1).topk(VOCAB, dim=-1)
    responses = torch.cat(
        [input_ids[o + p : o + p + r] for o, p, r in zip(np.cumsum([0, *seq_lens[:-1]]), prompt_lens, response_lens)]
    )
    data = tu.get_tensordict(
        {
            "prompts": nested(torch.zeros(sum(prompt_lens), dtype=torch.long), prompt_lens),
            "responses": nested(responses, response_lens),
            "input_ids": nested(input_ids, seq_lens),
            "response_mask": nested(torch.cat(masks), response_lens),
            "teacher_logprobs": nested(top.values, seq_lens),
            "teacher_ids": nested(top.indices, seq_lens),
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": int(torch.cat(masks).sum()), "global_batch_size": 3},
    )
    student_logits = torch.randn(total, VOCAB, generator=gen, requires_grad=True)
    return data, student_logits, teacher_logits, input_ids, prompt_lens, response_lens, masks


def _verl_loss(data, student_logits, input_ids, seq_offsets):
    # the engine's log-probs of the next token (logits at t predict token t+1; rolled per packed stream)
    rolled = torch.roll(input_ids, shifts=-1)
    log_probs = torch.log_softmax(student_logits, -1).gather(1, rolled[:, None]).squeeze(1)
    return verl_distillation_loss(
        "essence_kd_topk", data, student_logits, topk=VOCAB, micro_batch=3, loss_agg_mode="token-mean",
        log_probs=log_probs,
    )  # fmt: skip


@pytest.mark.parametrize("lam", [0.5, 0.2])
def test_registered_loss_through_verl_matches_full_vocab_reference(lam, monkeypatch):
    monkeypatch.setattr(verl_plugin, "WORKER_SETTINGS", EssenceConfig(ce_weight=lam))
    data, student_logits, teacher_logits, input_ids, prompt_lens, response_lens, masks = _micro_batch()
    offsets = np.cumsum([0, *[p + r for p, r in zip(prompt_lens, response_lens, strict=True)]])
    loss, metrics = _verl_loss(data, student_logits, input_ids, offsets)
    rows, targets, keep = [], [], []
    for i, (p, r) in enumerate(zip(prompt_lens, response_lens, strict=True)):
        for j in range(r):
            rows.append(int(offsets[i]) + p - 1 + j)  # the logits row predicting response token j
            targets.append(int(input_ids[int(offsets[i]) + p + j]))
            keep.append(int(masks[i][j]))
    rows_t = torch.tensor(rows)
    reference = essence_kd_loss(
        student_logits[rows_t], teacher_logits[rows_t], torch.tensor(targets), torch.tensor(keep), ce_weight=lam
    )
    slow = _slow_essence_loss(
        student_logits.detach()[rows_t], teacher_logits[rows_t], torch.tensor(targets), torch.tensor(keep), lam
    )
    assert loss.item() == pytest.approx(slow, rel=1e-5)
    (g,) = torch.autograd.grad(loss, student_logits, retain_graph=True)
    (g_ref,) = torch.autograd.grad(reference, student_logits)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    assert metrics["essence/ce_weight"] == lam
    assert int(metrics["essence/trained_tokens"].values[0]) == sum(keep)


# ---------------------------------------------------------------------------------------------------------
# agent loops
# ---------------------------------------------------------------------------------------------------------

from verl.experimental.agent_loop.agent_loop import AgentLoopWorker  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from verl_frontier.agent_loops import standalone_agent_loop  # noqa: E402
from verl_frontier.kd.replay import TeacherReplayAgentLoop  # noqa: E402
from verl_frontier.tinyworld.tokenizer import build_tokenizer  # noqa: E402

TOK = build_tokenizer()
EOS = TOK.eos_token_id
PROMPT = [{"role": "user", "content": "Compute 2+7-1-4."}]
TEACHER = "We need 2+7-1-4. 2+7=9. 9-1=8. 8-4=4. So the result is 4. Answer: 4"


def _loop(cls, essence: dict, server=None, response_length=256):
    rollout = {"prompt_length": 64, "response_length": response_length}
    return standalone_agent_loop(cls, server, TOK, {"actor_rollout_ref": {"rollout": rollout, "essence": essence}})


def _run(cls, essence, server=None, params=None, **kwargs):
    """Build the loop inside the running event loop (verl's AgentLoopBase captures it) and run it once."""

    async def main():
        return await _loop(cls, essence, server=server).run(params or {}, raw_prompt=PROMPT, **kwargs)

    return asyncio.run(main())


def _replay(essence, **extra):
    info = {"teacher_response": TEACHER, "teacher_score": 1.0, "index": 7, **extra}
    return _run(essence_loops.EssenceReplayAgentLoop, essence, extra_info=info, global_steps=3)


def _full_ids():
    text = TOK.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    prompt = TOK.encode(text, add_special_tokens=False)
    return prompt, TOK.encode(TEACHER, add_special_tokens=False) + [EOS]


def test_replay_full_sequence_every_segment_trains_the_prompt_too():
    out = _replay({"segments": ["prompt", "cot", "answer"], "truncate_ratio": 1.0})
    prompt, response = _full_ids()
    assert out.prompt_ids == prompt[:1]  # the prompt is predicted and trained
    assert out.response_ids == prompt[1:] + response
    assert out.response_mask == [1] * (len(prompt) - 1 + len(response))
    assert out.reward_score == 1.0 and out.extra_fields["min_global_steps"] == 3


def test_replay_cot_only_at_half_length():
    out = _replay({"segments": ["cot"], "truncate_ratio": 0.5})
    prompt, response = _full_ids()
    keep = max(1, int((len(prompt) + len(response)) * 0.5))
    assert out.prompt_ids == prompt
    assert out.response_ids == response[: keep - len(prompt)]
    decoded = TOK.decode([t for t, m in zip(out.response_ids, out.response_mask, strict=True) if m])
    assert decoded == TOK.decode(response[: keep - len(prompt)]) and "Answer" not in decoded


def test_replay_answer_only_masks_the_reasoning():
    out = _replay({"segments": ["answer"], "truncate_ratio": 1.0})
    trained = TOK.decode([t for t, m in zip(out.response_ids, out.response_mask, strict=True) if m])
    assert trained == "Answer: 4" + TOK.eos_token
    assert sum(out.response_mask) == len(TOK.encode("Answer: 4", add_special_tokens=False)) + 1


def test_replay_cut_inside_an_untrained_prompt_trains_nothing():
    out = _replay({"segments": ["cot", "answer"], "truncate_ratio": 0.1})
    assert len(out.response_ids) == 1 and out.response_mask == [0]


def test_replay_response_scope_keeps_the_prompt():
    out = _replay({"segments": ["cot", "answer"], "truncate_ratio": 0.5, "truncate_scope": "response"})
    prompt, response = _full_ids()
    assert out.prompt_ids == prompt and out.response_ids == response[: len(response) // 2]


def test_replay_row_without_teacher_response_names_the_row():
    with pytest.raises(KeyError, match="essence_replay: row 12 has no extra_info\\['teacher_response'\\]"):
        _run(essence_loops.EssenceReplayAgentLoop, {}, extra_info={"index": 12})
    with pytest.raises(KeyError, match="teacher_replay: row 12 has no extra_info\\['teacher_response'\\]"):
        _run(TeacherReplayAgentLoop, {}, extra_info={"index": 12})


def test_teacher_replay_trains_the_whole_response():
    """kd.replay's general loop: the prompt stays the prompt, every response token is trained, cut to
    rollout.response_length; Essence's replay with segments cot + answer at r = 1 is the same sequence."""
    info = {"teacher_response": TEACHER, "teacher_score": 1.0, "index": 7}
    out = _run(TeacherReplayAgentLoop, {}, extra_info=info, global_steps=3)
    prompt, response = _full_ids()
    assert out.prompt_ids == prompt and out.response_ids == response
    assert out.response_mask == [1] * len(response)
    assert out.reward_score == 1.0 and out.extra_fields["min_global_steps"] == 3
    essence = _replay({"segments": ["cot", "answer"], "truncate_ratio": 1.0})
    assert (essence.prompt_ids, essence.response_ids, essence.response_mask) == (
        out.prompt_ids,
        out.response_ids,
        out.response_mask,
    )

    async def short():
        loop = _loop(TeacherReplayAgentLoop, {}, response_length=5)
        return await loop.run({}, raw_prompt=PROMPT, extra_info=info)

    cut = asyncio.run(short())
    assert cut.response_ids == response[:5] and cut.response_mask == [1] * 5
    # the data writer's agent names (it imports no verl) are the registered loops'
    from verl_frontier.essence import data
    from verl_frontier.kd import replay

    assert (data.REPLAY_AGENT, data.TEACHER_REPLAY_AGENT) == (essence_loops.REPLAY_AGENT, replay.REPLAY_AGENT)


def test_replay_output_through_verl_postprocess():
    out = _replay({"segments": ["cot"], "truncate_ratio": 1.0})
    worker = AgentLoopWorker.__new__(AgentLoopWorker)
    worker.rollout_config = SimpleNamespace(prompt_length=64, response_length=256)
    worker.tokenizer, worker.processor = TOK, None
    worker.reward_loop_worker_handles, worker.distillation_enabled = None, False
    worker.mm_processor_kwargs = {}
    internal = asyncio.run(worker._agent_loop_postprocess(out, validate=False, raw_prompt=PROMPT))
    batch = worker._postprocess([internal])
    n = len(out.response_ids)
    assert torch.equal(batch.batch["response_mask"][0, :n], torch.tensor(out.response_mask))
    assert batch.batch["response_mask"][0, n:].sum() == 0
    assert batch.batch["rm_scores"][0].sum() == 1.0


class FakeServer:
    def __init__(self, text):
        self.ids = TOK.encode(text, add_special_tokens=False) + [EOS]

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        return TokenOutput(token_ids=self.ids, log_probs=[-0.1] * len(self.ids), stop_reason="completed")


@pytest.mark.parametrize(("segments", "r"), [(["cot"], 1.0), (["answer"], 1.0), (["cot", "answer"], 0.5)])
def test_on_policy_loop_masks_the_students_rollout(segments, r):
    text = "2+7=9. 9-1=8. 8-4=4. Answer: 4"
    essence = {"segments": segments, "truncate_ratio": r, "truncate_scope": "response"}
    out = _run(essence_loops.EssenceSingleTurnAgentLoop, essence, FakeServer(text), {"temperature": 1.0})
    ids = TOK.encode(text, add_special_tokens=False) + [EOS]
    assert out.response_ids == ids  # generated and kept in full (it is scored in full)
    marker = TOK.encode("Answer:", add_special_tokens=False)
    expected = segment_mask(len(out.prompt_ids), ids, marker, segments, r, "response")[len(out.prompt_ids) :]
    assert out.response_mask == expected
    at = text.index("Answer:")
    if segments == ["cot"]:
        assert sum(out.response_mask) == at


def test_on_policy_loop_refuses_the_prompt_segment():
    with pytest.raises(ValueError, match="drop 'prompt'"):
        _loop(essence_loops.EssenceSingleTurnAgentLoop, {"segments": ["prompt", "cot"]}, server=FakeServer("x"))


# ---------------------------------------------------------------------------------------------------------
# config checks (driver, before Ray)
# ---------------------------------------------------------------------------------------------------------

from verl_frontier.validation import FrontierConfigError, validate_frontier_config  # noqa: E402


def _config(essence=None, **distill):
    loss = {"loss_mode": "essence_kd_topk", "use_task_rewards": False, "use_policy_gradient": False, **distill}
    cfg = {
        "distillation": {"enabled": True, "distillation_loss": loss},
        "actor_rollout_ref": {"rollout": {"agent": {"default_agent_loop": "single_turn_agent"}}},
    }
    if essence is not None:
        cfg["actor_rollout_ref"]["essence"] = essence
    return OmegaConf.create(cfg)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (_config({"truncate_ratio": 1.5}), "actor_rollout_ref.essence.truncate_ratio"),
        (_config({"truncate_ratio": 0}), "actor_rollout_ref.essence.truncate_ratio"),
        (_config({"segments": ["cot", "thinking"]}), "actor_rollout_ref.essence"),
        (_config({"ce_weight": 2.0}), "actor_rollout_ref.essence.ce_weight"),
        (_config({"truncate_scope": "tokens"}), "actor_rollout_ref.essence.truncate_scope"),
        (_config({"truncate_ratoi": 0.5}), "actor_rollout_ref.essence.truncate_ratoi"),
        (_config({}, use_policy_gradient=True), "distillation.distillation_loss.use_policy_gradient"),
        (_config({}, use_task_rewards=True), "distillation.distillation_loss.use_task_rewards"),
    ],
)
def test_bad_settings_name_the_key(config, key):
    with pytest.raises(FrontierConfigError, match=key.replace(".", r"\.")):
        validate_frontier_config(config, skip=("data_files", "model_paths", "world_size"))


def test_unknown_segment_error_names_the_segment():
    with pytest.raises(FrontierConfigError, match="unknown segment 'thinking'"):
        validate_frontier_config(
            _config({"segments": ["cot", "thinking"]}), skip=("data_files", "model_paths", "world_size")
        )


def test_on_policy_loop_with_prompt_segment_is_rejected_before_ray():
    cfg = _config({"segments": ["prompt", "cot"]})
    cfg.actor_rollout_ref.rollout.agent.default_agent_loop = "essence_single_turn"
    with pytest.raises(FrontierConfigError, match=r"actor_rollout_ref\.essence\.segments"):
        validate_frontier_config(cfg, skip=("data_files", "model_paths", "world_size"))


def test_valid_settings_pass():
    validate_frontier_config(
        _config({"segments": "cotAns", "truncate_ratio": 0.5, "ce_weight": 0.5}),
        skip=("data_files", "model_paths", "world_size"),
    )


# ---------------------------------------------------------------------------------------------------------
# data prep
# ---------------------------------------------------------------------------------------------------------


def test_data_from_field_keeps_correct_rows_and_marks_the_agent(tmp_path):
    from verl_frontier.essence.data import build

    rows = [
        {
            "data_source": "tinyworld/arith",
            "prompt": [{"role": "user", "content": f"Compute {a}+1."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + 1)},
            "extra_info": {"index": a, "reference": f"{a}+1={a + 1}. Answer: {a + 1 if a != 2 else 0}"},
        }
        for a in range(5)
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "in.parquet")
    stats = build(tmp_path / "in.parquet", tmp_path / "out", from_field="extra_info.reference", seed=1)
    assert stats["rows"] == 5 and stats["kept"] == 4 and stats["teacher_accuracy"] == 0.8
    out = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert set(out["agent_name"]) == {"essence_replay"}
    assert sorted(int(e["index"]) for e in out["extra_info"]) == [0, 1, 3, 4]
    for e in out["extra_info"]:
        assert e["teacher_response"] == e["reference"] and e["teacher_score"] == 1.0
    with pytest.raises(KeyError, match="no field 'extra_info.solution'"):
        build(tmp_path / "in.parquet", tmp_path / "out2", from_field="extra_info.solution")


def test_data_from_a_teacher_model_scores_its_generations(small_world_dir, tmp_path):
    from verl_frontier.essence.data import build
    from verl_frontier.tinyworld.reward import compute_score

    stats = build(
        small_world_dir / "data" / "train_verbose.parquet",
        tmp_path,
        teacher=small_world_dir / "teacher",
        num=12,
        keep_incorrect=True,
        max_new_tokens=64,
    )
    out = pd.read_parquet(tmp_path / "train.parquet")
    assert stats["rows"] == stats["kept"] == len(out) == 12
    for _, row in out.iterrows():
        extra = row["extra_info"]
        truth = row["reward_model"]["ground_truth"]
        expected = compute_score(solution_str=extra["teacher_response"], ground_truth=truth)
        assert extra["teacher_score"] == float(expected["score"])
    assert stats["teacher_accuracy"] == np.mean([e["teacher_score"] > 0 for e in out["extra_info"]])


def test_world_teacher_data_is_written_once_from_the_world_teacher(small_world_dir, tmp_path):
    import shutil

    from verl_frontier.essence.data import ensure_world_teacher_data

    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world)
    with pytest.raises(KeyError, match="kd_typo.*essence.*kd_concise"):
        ensure_world_teacher_data(world, "kd_typo")
    path = ensure_world_teacher_data(world, "kd_concise", num=8, keep_incorrect=True)
    assert path == world / "kd_concise" / "train.parquet"
    rows = pd.read_parquet(path)
    assert len(rows) == 8 and set(rows["agent_name"]) == {"teacher_replay"}  # plain sequence-level KD
    assert all(p[0]["content"].endswith("Be concise.") for p in rows["prompt"])  # concise prompts
    assert all(isinstance(e["teacher_response"], str) for e in rows["extra_info"])
    before = path.stat().st_mtime_ns
    assert ensure_world_teacher_data(world, "kd_concise", num=8, keep_incorrect=True) == path
    assert path.stat().st_mtime_ns == before  # cached: not regenerated
    rows.assign(agent_name="essence_replay").to_parquet(path, index=False)  # rows naming another replay loop
    assert ensure_world_teacher_data(world, "kd_concise", num=8, keep_incorrect=True) == path
    again = pd.read_parquet(path)
    assert set(again["agent_name"]) == {"teacher_replay"} and list(again["extra_info"]) == list(rows["extra_info"])
