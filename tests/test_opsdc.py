"""OPSDC: re-prompting, exact realignment against a direct HF forward, losses against slow references, teacher sync."""

from __future__ import annotations

import types

import pytest
import torch
from omegaconf import OmegaConf

from verl_frontier.opsdc import verl_plugin as vp
from verl_frontier.opsdc.sync import copy_weights_, max_abs_diff, should_sync, weight_checksum
from verl_frontier.opsdc.teacher_inputs import (
    Reprompter,
    build_teacher_batch,
    realignment,
    reprompt,
    student_packed_index,
)
from verl_frontier.tinyworld.tasks import CONCISE_INSTRUCTION
from verl_frontier.tinyworld.tokenizer import build_tokenizer
from verl_frontier.validation import FrontierConfigError


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


#: the tiny models of these tests (conftest's ``tiny_qwen2`` factory) run eager attention
EAGER = {"attn_implementation": "eager"}


def chat_ids(tokenizer, content: str) -> list[int]:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=True, add_generation_prompt=True, return_dict=False
    )


# ---------------------------------------------------------------------------------------------------------
# re-prompting
# ---------------------------------------------------------------------------------------------------------


def test_reprompt_modes_by_hand():
    head, tail, instr = [1, 2], [8, 9], [70, 71]
    prompt = [1, 2, 5, 6, 7, 8, 9]
    assert reprompt(prompt, "prepend", instr, head, tail) == ([1, 2, 70, 71, 5, 6, 7, 8, 9], True)
    assert reprompt(prompt, "append", instr, head, tail) == ([1, 2, 5, 6, 7, 70, 71, 8, 9], True)
    assert reprompt(prompt, "replace", instr, replace_ids=[6, 7]) == ([1, 2, 5, 70, 71, 8, 9], True)
    # anchors missing: the student prompt comes back unchanged, flagged
    assert reprompt(prompt, "prepend", instr, [3], tail) == (prompt, False)
    assert reprompt(prompt, "append", instr, head, [4]) == (prompt, False)
    assert reprompt(prompt, "replace", instr, replace_ids=[6, 5]) == (prompt, False)


def test_tiny_world_teacher_prompt_is_the_concise_prompt(tokenizer):
    """append + " " + "Be concise." turns the verbose (default) prompt into the tiny world's concise prompt."""
    rep = Reprompter.create(tokenizer, CONCISE_INSTRUCTION, mode="append", separator=" ")
    student = chat_ids(tokenizer, "Compute 3+4*2.")
    teacher, ok = rep(student)
    assert ok
    assert teacher == chat_ids(tokenizer, f"Compute 3+4*2. {CONCISE_INSTRUCTION}")
    prep = Reprompter.create(tokenizer, "Be brief.", mode="prepend", separator=" ")
    assert prep(student) == (chat_ids(tokenizer, "Be brief. Compute 3+4*2."), True)
    repl = Reprompter.create(tokenizer, "Add", mode="replace", replace_text="Compute")
    assert repl(student) == (chat_ids(tokenizer, "Add 3+4*2."), True)


# ---------------------------------------------------------------------------------------------------------
# realignment: exact against a direct HF forward
# ---------------------------------------------------------------------------------------------------------


def _samples(tokenizer):
    contents = ["Compute 3+4.", "Compute 12*7-5+1.", "Compute 9."]
    responses = ["3+4=7\nAnswer: 7", "12*7=84\n84-5=79\n79+1=80\nAnswer: 80", "9"]
    prompts = [chat_ids(tokenizer, c) for c in contents]
    resp = [tokenizer.encode(r, add_special_tokens=False) for r in responses]
    return prompts, resp


@pytest.mark.parametrize("packed", [False, True])
def test_teacher_logits_match_direct_forward(tokenizer, packed, tiny_qwen2):
    prompts, responses = _samples(tokenizer)
    rep = Reprompter.create(tokenizer, CONCISE_INSTRUCTION, mode="append", separator=" ")
    teacher_prompts = [rep(p)[0] for p in prompts]
    assert all(len(t) > len(p) for t, p in zip(teacher_prompts, prompts))  # prompts differ in length
    model = tiny_qwen2(len(tokenizer), seed=0, **EAGER)
    got = vp.teacher_response_logits(model, teacher_prompts, responses, "cpu", tokenizer.pad_token_id, packed)
    s_pos, t_pos = realignment(
        [len(p) for p in prompts], [len(t) for t in teacher_prompts], [len(r) for r in responses]
    )
    rows = []
    with torch.no_grad():
        for p, tp, r, sp, tpos in zip(prompts, teacher_prompts, responses, s_pos, t_pos):
            assert sp.tolist() == list(range(len(p) - 1, len(p) - 1 + len(r)))
            full = model(input_ids=torch.tensor([tp + r])).logits[0]
            # position P'-1+t predicts response token t
            assert tpos.tolist() == list(range(len(tp) - 1, len(tp) - 1 + len(r)))
            rows.append(full[tpos])
    want = torch.cat(rows)
    assert got.shape == want.shape == (sum(len(r) for r in responses), len(tokenizer))
    torch.testing.assert_close(torch.log_softmax(got, -1), torch.log_softmax(want, -1), atol=1e-5, rtol=1e-5)


def test_student_packed_index_and_verl_unpadding_agree(tokenizer):
    """The processor stores token t's loss at packed position offset+P-1+t; verl's no_padding_2_padding reads it
    back as response column t."""
    from tensordict import TensorDict
    from verl.workers.utils.padding import no_padding_2_padding

    p_lens, r_lens = [3, 5, 2], [4, 1, 3]
    idx = student_packed_index(p_lens, r_lens)
    total = sum(p_lens) + sum(r_lens)
    values = torch.zeros(total)
    marks = torch.cat([torch.arange(1, r + 1) + 10 * i for i, r in enumerate(r_lens)]).float()
    values[idx] = marks

    def nested(lens):
        return torch.nested.as_nested_tensor([torch.zeros(n, dtype=torch.long) for n in lens], layout=torch.jagged)  # noqa: E731

    data = TensorDict({"prompts": nested(p_lens), "responses": nested(r_lens)}, batch_size=[3])
    out = no_padding_2_padding(values, data)
    for i, r in enumerate(r_lens):
        assert out[i, :r].tolist() == [10 * i + j for j in range(1, r + 1)]


def test_build_teacher_batch_layout():
    b = build_teacher_batch([[5, 6], [7]], [[1, 2, 3], [4]], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 1, 2, 3], [0, 7, 4, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
    assert b.position_ids.tolist()[1][1:3] == [0, 1]
    assert b.logits_to_keep == 4 and b.rows.tolist() == [0, 0, 0, 1] and b.cols.tolist() == [0, 1, 2, 0]


# ---------------------------------------------------------------------------------------------------------
# loss == slow reference
# ---------------------------------------------------------------------------------------------------------


def slow_divergence(s_logits, t_logits, kind, beta=0.5):
    out = []
    for s_row, t_row in zip(s_logits.double(), t_logits.double()):
        q = [float(x) for x in torch.softmax(s_row, -1)]
        p = [float(x) for x in torch.softmax(t_row, -1)]
        import math

        if kind == "reverse_kl":
            out.append(sum(qi * (math.log(qi) - math.log(pi)) for qi, pi in zip(q, p)))
        elif kind == "forward_kl":
            out.append(sum(pi * (math.log(pi) - math.log(qi)) for qi, pi in zip(q, p)))
        else:
            m = [beta * pi + (1 - beta) * qi for qi, pi in zip(q, p)]
            kl_pm = sum(pi * (math.log(pi) - math.log(mi)) for pi, mi in zip(p, m))
            kl_qm = sum(qi * (math.log(qi) - math.log(mi)) for qi, mi in zip(q, m))
            out.append(beta * kl_pm + (1 - beta) * kl_qm)
    return torch.tensor(out, dtype=torch.float64)


def _state(tokenizer, teacher, settings, packed=False):
    rep = Reprompter.create(tokenizer, settings.instruction, settings.mode, settings.separator)
    return vp.OpsdcWorkerState(
        settings=settings,
        reprompter=rep,
        teacher_engine=types.SimpleNamespace(module=teacher),
        student_engine=None,
        pad_id=tokenizer.pad_token_id,
        packed=packed,
    )


@pytest.mark.parametrize(("kind", "topk"), [("reverse_kl", 0), ("forward_kl", 0), ("jsd", 0), ("reverse_kl", 7)])
def test_processor_and_loss_equal_slow_reference(tokenizer, kind, topk, tiny_qwen2):
    from tensordict import TensorDict

    settings = vp.OpsdcConfig(instruction=CONCISE_INSTRUCTION, mode="append", separator=" ", loss=kind, topk=topk)
    teacher, student = tiny_qwen2(len(tokenizer), seed=1, **EAGER), tiny_qwen2(len(tokenizer), seed=2, **EAGER)
    state = _state(tokenizer, teacher, settings)
    prompts, responses = _samples(tokenizer)
    nested = lambda seqs: torch.nested.as_nested_tensor([torch.tensor(s) for s in seqs], layout=torch.jagged)  # noqa: E731
    data = TensorDict(
        {
            "prompts": nested(prompts),
            "responses": nested(responses),
            "response_mask": nested([[1] * len(r) for r in responses]),
        },
        batch_size=[3],
    )
    seqs = [p + r for p, r in zip(prompts, responses)]
    student_logits = torch.cat([student(input_ids=torch.tensor([s])).logits[0] for s in seqs]).unsqueeze(0)
    student_logits = student_logits.detach().requires_grad_(True)
    out = vp.opsdc_logits_processor(state, data, student_logits)["opsdc_losses"]
    assert out.shape == (1, sum(len(s) for s in seqs))

    # slow reference: teacher on its own unpadded [instruction prompt + response], explicit softmax sums
    want_rows = []
    offset = 0
    for p, r in zip(prompts, responses):
        tp = p[:-2] + tokenizer.encode(" " + CONCISE_INSTRUCTION, add_special_tokens=False) + p[-2:]  # before the tail
        assert tp == chat_ids(tokenizer, tokenizer.decode(p[1:-2]) + " " + CONCISE_INSTRUCTION)
        with torch.no_grad():
            t_full = teacher(input_ids=torch.tensor([tp + r])).logits[0]
        s_rows = student_logits[0, offset + len(p) - 1 : offset + len(p) - 1 + len(r)].detach()
        t_rows = t_full[len(tp) - 1 : len(tp) - 1 + len(r)]
        if topk:
            t_lp = torch.log_softmax(t_rows.double(), -1)
            top = t_lp.topk(topk, -1).indices
            s_lp = torch.log_softmax(s_rows.double(), -1)
            for row in range(len(r)):
                ids = top[row]
                q = torch.softmax(s_lp[row, ids], -1)
                pt = torch.softmax(t_lp[row, ids], -1)
                want_rows.append(float((q * (q.log() - pt.log())).sum()))
        else:
            want_rows.extend(slow_divergence(s_rows, t_rows, kind).tolist())
        got = out[0, offset + len(p) - 1 : offset + len(p) - 1 + len(r)]
        assert out[0, offset : offset + len(p) - 1].abs().sum() == 0  # prompt positions carry nothing
        offset += len(p) + len(r)
        torch.testing.assert_close(
            got.double(), torch.tensor(want_rows[-len(r) :], dtype=torch.float64), atol=1e-5, rtol=1e-4
        )

    # final loss: token-mean over the response tokens (dp 1)
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=sum(len(r) for r in responses), global_batch_size=3)
    config = types.SimpleNamespace(global_batch_info={}, loss_scale_factor=None, loss_agg_mode="token-mean")
    offsets = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    as_engine = torch.nested.nested_tensor_from_jagged(out.squeeze(0), offsets)  # what the FSDP engine stores
    loss, metrics = vp.opsdc_loss(config, {"opsdc_losses": as_engine}, data, state=state)
    want = sum(want_rows) / len(want_rows)
    assert float(loss) == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert f"opsdc/{kind}" in metrics and "opsdc/reprompt_miss_frac" in metrics
    loss.backward()
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0


def test_identical_contexts_give_zero_kl(tokenizer, tiny_qwen2):
    """Teacher = student weights and an empty instruction: every per-token KL is 0."""
    settings = vp.OpsdcConfig(instruction="", mode="append", separator="")
    model = tiny_qwen2(len(tokenizer), seed=3, **EAGER)
    state = _state(tokenizer, model, settings, packed=True)
    from tensordict import TensorDict

    prompts, responses = _samples(tokenizer)
    nested = lambda seqs: torch.nested.as_nested_tensor([torch.tensor(s) for s in seqs], layout=torch.jagged)  # noqa: E731
    data = TensorDict({"prompts": nested(prompts), "responses": nested(responses)}, batch_size=[3])
    with torch.no_grad():
        logits = torch.cat([model(input_ids=torch.tensor([p + r])).logits[0] for p, r in zip(prompts, responses)])
    out = vp.opsdc_logits_processor(state, data, logits.unsqueeze(0))["opsdc_losses"]
    assert out.abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------------
# teacher sync
# ---------------------------------------------------------------------------------------------------------


def test_should_sync_schedule():
    assert [s for s in range(1, 151) if should_sync(s, 50)] == [50, 100, 150]
    assert [s for s in range(1, 5) if should_sync(s, 1)] == [1, 2, 3, 4]
    assert not any(should_sync(s, 0) for s in range(0, 200))
    assert not should_sync(0, 50)
    with pytest.raises(ValueError):
        should_sync(3, -1)


def test_after_update_copies_exactly_at_m_and_not_before(tokenizer, tiny_qwen2):
    student, teacher = tiny_qwen2(60, seed=4, **EAGER), tiny_qwen2(60, seed=4, **EAGER)
    state = vp.OpsdcWorkerState(
        settings=vp.OpsdcConfig(teacher_update_freq=3, track_weights=True),
        reprompter=None,
        teacher_engine=types.SimpleNamespace(module=teacher),
        student_engine=types.SimpleNamespace(module=student),
        pad_id=0,
        packed=False,
    )
    initial = {k: v.clone() for k, v in teacher.state_dict().items()}
    state.initial_checksum = weight_checksum(teacher)
    for step in (1, 2, 3, 4):
        with torch.no_grad():  # an optimizer step on the student
            for p in student.parameters():
                p.add_(0.01 * torch.randn_like(p))
        metrics = vp.after_update(state)
        if step < 3:
            assert metrics["opsdc/teacher_synced"] == 0.0
            assert all(torch.equal(initial[k], v) for k, v in teacher.state_dict().items())
            assert metrics["opsdc/teacher_minus_initial_checksum"] == 0.0
            assert metrics["opsdc/teacher_actor_max_abs_diff"] > 0
        elif step == 3:
            assert metrics["opsdc/teacher_synced"] == 1.0
            assert all(torch.equal(student.state_dict()[k], v) for k, v in teacher.state_dict().items())
            assert metrics["opsdc/teacher_actor_max_abs_diff"] == 0.0
            assert metrics["opsdc/teacher_checksum"] == metrics["opsdc/actor_checksum"]
            assert metrics["opsdc/teacher_minus_initial_checksum"] != 0.0
        else:
            assert metrics["opsdc/teacher_synced"] == 0.0 and metrics["opsdc/teacher_actor_max_abs_diff"] > 0


def test_copy_weights_casts_and_rejects_mismatch(tiny_qwen2):
    a, b = tiny_qwen2(60, seed=5, **EAGER), tiny_qwen2(60, seed=6, **EAGER).to(torch.bfloat16)
    copy_weights_(b, a)
    assert max_abs_diff(b, a) == 0.0
    with pytest.raises(RuntimeError):
        copy_weights_(tiny_qwen2(61, seed=0, **EAGER), a)


# ---------------------------------------------------------------------------------------------------------
# config and driver metrics
# ---------------------------------------------------------------------------------------------------------


def _cfg(**opsdc):
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"actor": {"use_kl_loss": False, "strategy": "fsdp"}, "model": {}, "opsdc": opsdc},
            "distillation": {"enabled": False},
        }
    )


def test_config_check_names_the_key():
    with pytest.raises(FrontierConfigError, match="actor_rollout_ref.actor.use_kl_loss"):
        vp.check_opsdc(_cfg(teacher_update_freq=50))
    cfg = _cfg()
    cfg.actor_rollout_ref.actor.use_kl_loss = True
    vp.check_opsdc(cfg)
    OmegaConf.update(cfg, "actor_rollout_ref.rollout.temperature", 0.7, force_add=True)
    with pytest.raises(FrontierConfigError, match="actor_rollout_ref.rollout.temperature"):
        vp.check_opsdc(cfg)
    cfg.actor_rollout_ref.rollout.temperature = 1.0
    vp.check_opsdc(cfg)
    cfg.distillation.enabled = True
    with pytest.raises(FrontierConfigError, match="distillation.enabled"):
        vp.check_opsdc(cfg)
    from verl_frontier.validation import validate_section

    with pytest.raises(FrontierConfigError, match="teacher_update_freq"):
        validate_section(_cfg(teacher_update_freq=-1), vp.CONFIG_SECTION, vp.OpsdcConfig)
    with pytest.raises(FrontierConfigError, match="loss"):
        validate_section(_cfg(loss="kl"), vp.CONFIG_SECTION, vp.OpsdcConfig)


def test_estimator_logs_length_compression_accuracy(monkeypatch):
    from verl_frontier import driver_hooks

    monkeypatch.setattr(vp, "_DRIVER_STATE", {})
    driver_hooks.pop_step_metrics()
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    rewards = torch.tensor([[0, 0, 0, 1.0, 0], [0, 0, 0, 0, 0]])
    adv, ret = vp.compute_opsdc_advantage(rewards, mask, config=OmegaConf.create({}))
    assert adv.abs().sum() == 0 and ret.abs().sum() == 0
    m = driver_hooks.pop_step_metrics()
    assert m["opsdc/response_length_mean"] == 3.0 and m["opsdc/compression_ratio"] == 1.0
    assert m["opsdc/accuracy"] == 0.5
    vp.compute_opsdc_advantage(rewards, torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]), config=None)
    m = driver_hooks.pop_step_metrics()
    assert m["opsdc/compression_ratio"] == pytest.approx(1.5 / 3.0)


def test_registered():
    from verl_frontier.registration import assert_registered

    assert assert_registered(["verl_frontier.opsdc.verl_plugin"], check_hook=False)


def test_mark_distillation_sets_verl_flags_on_both_batch_types():
    """Legacy trainer: a TensorDict; v1 trainer: a TransferQueue BatchMeta whose extra_info becomes the worker
    TensorDict's non-tensor fields. Either way the FSDP engine must read distillation_use_topk/only = True."""
    from tensordict import TensorDict
    from transfer_queue.metadata import BatchMeta
    from verl.utils import tensordict_utils as tu

    td = TensorDict({"input_ids": torch.zeros(2, 3, dtype=torch.long)}, batch_size=[2])
    vp._mark_distillation(td)
    assert tu.get_non_tensor_data(td, "distillation_use_topk", False) is True
    assert tu.get_non_tensor_data(td, "distillation_only", False) is True

    meta = BatchMeta(global_indexes=[0, 1], partition_ids=["train", "train"], extra_info={"temperature": 1.0})
    vp._mark_distillation(meta)
    assert meta.extra_info == {"temperature": 1.0, "distillation_use_topk": True, "distillation_only": True}

    with pytest.raises(TypeError, match="update_actor batch type"):
        vp._mark_distillation({"input_ids": None})
