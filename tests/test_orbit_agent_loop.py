"""ORBIT's verl agent loop against a fake rollout server (scripted responses): token/mask layout, episode
headers, reward, and what verl's own post-processing (AgentLoopWorker._agent_loop_postprocess/_postprocess,
AgentLoopOutput.as_dict for v1) makes of the output."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("verl")

from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopWorker,
    _agent_loop_registry,
)
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from verl_frontier.agent_loops import standalone_agent_loop  # noqa: E402
from verl_frontier.orbit.agent_loop import OrbitAgentLoop  # noqa: E402
from verl_frontier.orbit.envs import make_env  # noqa: E402
from verl_frontier.tinyworld.tokenizer import build_tokenizer  # noqa: E402

TOK = build_tokenizer()
EOS = TOK.eos_token_id


class FakeServer:
    """Returns scripted texts, encoded once here; records every prompt it was sent."""

    def __init__(self, texts, eos=True, logprobs=True):
        self.texts, self.eos, self.logprobs = list(texts), eos, logprobs
        self.prompts, self.outputs, self.params = [], [], []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.prompts.append(list(prompt_ids))
        self.params.append(dict(sampling_params))
        ids = TOK.encode(self.texts.pop(0), add_special_tokens=False) + ([EOS] if self.eos else [])
        ids = ids[: sampling_params["max_tokens"]]
        self.outputs.append(ids)
        lps = [-0.01 * (i + 1) for i in range(len(ids))] if self.logprobs else None
        # the weight version a real server reports; here it advances with every call
        version = {"min_global_steps": len(self.prompts), "max_global_steps": len(self.prompts)}
        return TokenOutput(token_ids=ids, log_probs=lps, stop_reason="completed", extra_fields=version)


def make_loop(server, prompt_length=64, response_length=400):
    rollout = {"prompt_length": prompt_length, "response_length": response_length}
    return standalone_agent_loop(OrbitAgentLoop, server, TOK, {"actor_rollout_ref": {"rollout": rollout}})


def extra(seed, **kw):
    info = {
        "env": "guess_number",
        "seed": seed,
        "num_episodes": 3,
        "max_turns": 4,
        "max_episodes": 3,
        "episode_header": "[Episode {k}]",
        "env_kwargs": json.dumps({"low": 1, "high": 8}),
        "max_tokens_per_turn": 12,
    }
    info.update(kw)
    return info


def secret_of(seed):
    env = make_env("guess_number")
    env.reset(seed)
    return env.secret


def run(server, info, raw_prompt=None, **loop_kwargs):
    """Build the loop inside the running event loop (verl's AgentLoopBase captures it) and run one trial."""
    raw_prompt = raw_prompt or [{"role": "user", "content": "ignored: the env's first observation is used"}]
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def main():
        return await make_loop(server, **loop_kwargs).run(params, raw_prompt=raw_prompt, extra_info=info)

    return asyncio.run(main())


def segments(ids, mask):
    """[(mask value, ids)] runs."""
    out = []
    for i, m in zip(ids, mask, strict=True):
        if out and out[-1][0] == m:
            out[-1][1].append(i)
        else:
            out.append((m, [i]))
    return out


def test_registered():
    assert _agent_loop_registry["orbit_agent"]["_target_"] == "verl_frontier.orbit.agent_loop.OrbitAgentLoop"


def test_token_layout_headers_and_reward():
    seed = 5
    s = secret_of(seed)
    wrong = 1 if s != 1 else 2
    low_guess = "higher" if wrong < s else "lower"
    script = [f"\\boxed{{{wrong}}}", f"\\boxed{{{s}}}", f"\\boxed{{{s}}}", *[f"\\boxed{{{wrong}}}"] * 4]
    server = FakeServer(script)
    out = run(server, extra(seed))

    assert TOK.decode(out.prompt_ids) == "<|user|>[Episode 1]\nGuess 1-8.<|endoftext|><|assistant|>"
    segs = segments(out.response_ids, out.response_mask)
    model = [ids for m, ids in segs if m == 1]
    env = [TOK.decode(ids) for m, ids in segs if m == 0]
    assert model == server.outputs  # the server's tokens, unchanged (token-in/token-out)
    assert env == [
        f"<|user|>{low_guess}<|endoftext|><|assistant|>",
        "<|user|>correct!\n\n[Episode 2]\nGuess 1-8.<|endoftext|><|assistant|>",
        "<|user|>correct!\n\n[Episode 3]\nGuess 1-8.<|endoftext|><|assistant|>",
        *[f"<|user|>{low_guess}<|endoftext|><|assistant|>"] * 3,
    ]
    assert segs[-1][0] == 1  # the trial ends on the model's last turn
    # each request's prompt is exactly the running token stream
    for prompt in server.prompts:
        assert prompt == out.prompt_ids + out.response_ids[: len(prompt) - len(out.prompt_ids)]
    assert out.reward_score == 2.0
    # v1's staleness metrics need the weight versions of the whole trajectory: first turn's min, last turn's max
    assert out.extra_fields["min_global_steps"] == 1
    assert out.extra_fields["max_global_steps"] == len(server.prompts)
    info = out.extra_fields["reward_extra_info"]
    assert [info[f"episode_{k}_success"] for k in (1, 2, 3)] == [1.0, 1.0, 0.0]
    assert [info[f"episode_{k}_steps"] for k in (1, 2, 3)] == [2.0, 1.0, 4.0]
    assert info["success_count"] == 2.0 and info["overflow"] == 0.0
    # rollout log-probs: the server's on model tokens, 0 on env tokens
    lp = iter(lp for ids in server.outputs for lp in [-0.01 * (i + 1) for i in range(len(ids))])
    for m, got in zip(out.response_mask, out.response_logprobs, strict=True):
        assert got == (next(lp) if m else 0.0)
    assert all(p["max_tokens"] == 12 for p in server.params)


def test_system_prompt_kept_and_first_observation_from_env():
    server = FakeServer([f"\\boxed{{{secret_of(1)}}}"] * 3)
    raw = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "stale"}]
    out = run(server, extra(1), raw_prompt=raw)
    assert TOK.decode(out.prompt_ids).startswith("<|system|>SYS<|endoftext|><|user|>[Episode 1]\nGuess 1-8.")
    assert out.reward_score == 3.0 and out.num_turns == 6


def test_cut_turn_gets_an_unmasked_end_token_and_overflow_is_not_played():
    # no eos from the server: every turn is cut at max_tokens_per_turn=12; the loop closes it with an eos (mask 0)
    s = secret_of(2)
    server = FakeServer([f"\\boxed{{{s}}}   padding"] * 3, eos=False)
    out = run(server, extra(2))
    segs = segments(out.response_ids, out.response_mask)
    assert segs[1][1][0] == EOS and all(len(ids) == 12 for m, ids in segs if m == 1)
    assert out.reward_score == 3.0
    # response budget: a turn cut by the budget is not played, even when it would have succeeded
    server = FakeServer([f"\\boxed{{{s}}}", f"\\boxed{{{s}}}", f"\\boxed{{{s}}}"])
    env_turn = len(TOK.encode("<|user|>correct!\n\n[Episode 2]\nGuess 1-8.<|endoftext|><|assistant|>"))
    first_two = 2 * 10 + 2 * env_turn  # two model turns of 10 tokens, each followed by an env turn
    out = run(server, extra(2), response_length=first_two + 5)  # room for 5 tokens of turn 3
    info = out.extra_fields["reward_extra_info"]
    assert len(out.response_ids) == first_two + 5 and out.response_mask[-5:] == [1] * 5
    assert out.reward_score == 2.0 and info["overflow"] == 1.0 and info["episode_3_success"] == 0.0


def test_verl_postprocess_places_reward_and_extra_info():
    """verl's own AgentLoopWorker post-processing (legacy trainer path) and as_dict (v1 path)."""
    s = secret_of(3)
    server = FakeServer([f"\\boxed{{{s}}}", "\\boxed{9}", "junk", f"\\boxed{{{s}}}", f"\\boxed{{{s}}}"])
    out = run(server, extra(3))
    assert out.reward_score == 3.0 and out.extra_fields["reward_extra_info"]["invalid_actions"] == 2.0

    worker = AgentLoopWorker.__new__(AgentLoopWorker)
    worker.rollout_config = SimpleNamespace(prompt_length=64, response_length=400)
    worker.tokenizer, worker.processor = TOK, None
    worker.reward_loop_worker_handles, worker.distillation_enabled = None, False
    worker.mm_processor_kwargs = {}
    raw = [{"role": "user", "content": "x"}]
    internal = asyncio.run(worker._agent_loop_postprocess(out, validate=False, raw_prompt=raw))
    batch = worker._postprocess([internal, internal])
    rm = batch.batch["rm_scores"]
    n_resp = len(out.response_ids)
    assert rm.shape == (2, 400) and rm[0, n_resp - 1] == 3.0 and rm[0].sum() == 3.0
    assert torch.equal(batch.batch["response_mask"][0, :n_resp], torch.tensor(out.response_mask))
    assert batch.batch["response_mask"][0, n_resp:].sum() == 0
    assert "episode_1_success" in batch.meta_info["reward_extra_keys"]
    assert list(batch.non_tensor_batch["episode_1_success"]) == [1.0, 1.0]
    v1 = out.as_dict()  # v1 (TransferQueue) path
    assert v1["rm_scores"][-1] == 3.0 and v1["rm_scores"].sum() == 3.0
    assert torch.equal(v1["response_mask"], torch.tensor(out.response_mask))
