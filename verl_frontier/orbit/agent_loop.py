"""verl agent loop for ORBIT: one multi-episode trial per sample, token-in/token-out.

Layout of one :class:`AgentLoopOutput` (what verl's trainer consumes):

* ``prompt_ids``: the chat template over the row's system message(s) and the trial's first observation
  (episode-1 header + initial observation), with the generation prompt;
* ``response_ids``: ``[model turn 1][env turn 1][model turn 2][env turn 2]...[model turn T]``; model tokens
  are the rollout server's token ids, appended as returned (never decoded and re-encoded); env turns are the
  user message (observation, plus the next episode's header when an episode ended) rendered by verl's
  Continuous Token builder, including the next generation prompt;
* ``response_mask``: 1 on model tokens, 0 on env tokens (and on an end-of-turn token the loop inserts when a
  model turn was cut by ``max_tokens_per_turn``, so the chat stays well-formed);
* ``reward_score`` = number of successful episodes (ORBIT's trajectory reward). verl puts it on the last
  response token (``rm_scores``) and skips its reward loop because it is set; GRPO then normalises it over
  the ``rollout.n`` trials of the same seed (same ``uid``);
* ``extra_fields["reward_extra_info"]``: per-episode success / steps etc. (fixed keys, see
  :meth:`MultiEpisodeEnv.metrics`); verl logs these in validation as ``val-aux/orbit/<env>/<key>/mean@n``.

The trial ends when the step budget / episode count is reached or the response budget
(``rollout.response_length``) is spent; a model turn cut by the response budget is not played (ORBIT zeroes
the last step's reward when the context overflows).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

from .multi_episode import build_trial

logger = logging.getLogger(__name__)

AGENT_NAME = "orbit_agent"
DEFAULT_MAX_TOKENS_PER_TURN = 1024


@register(AGENT_NAME)
class OrbitAgentLoop(AgentLoopBase):
    """Runs the trial described by the row's ``extra_info`` (see :func:`build_trial`) against
    ``server_manager.generate``. ``extra_info["max_tokens_per_turn"]`` caps each model turn."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        eos = self.tokenizer.eos_token_id
        self.eos_token_id = int(eos) if eos is not None else None

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        extra_info = dict(kwargs.get("extra_info") or {})
        trial, seed = build_trial(extra_info)
        per_turn = int(extra_info.get("max_tokens_per_turn") or DEFAULT_MAX_TOKENS_PER_TURN)
        raw_prompt = list(kwargs.get("raw_prompt") or [])

        t_env = time.perf_counter()
        first_obs, _ = trial.reset(seed)
        env_seconds = time.perf_counter() - t_env
        messages = [dict(m) for m in raw_prompt if m.get("role") == "system"]
        messages.append({"role": "user", "content": first_obs})
        prompt_ids = await self.ct_build_initial_tokens(messages)

        runtime_ids = list(prompt_ids)
        response_mask: list[int] = []
        response_logprobs: list[float] | None = None
        turn_scores: list[float] = []
        gen_seconds = 0.0
        server_fields: dict = {}  # the server's extra fields (weight versions min/max_global_steps), over all turns
        overflow = False
        model_turns = 0
        while True:
            budget = self.response_length - len(response_mask)
            if budget <= 0:
                overflow = True
                break
            params = dict(sampling_params)
            params["max_tokens"] = min(per_turn, budget)
            t0 = time.perf_counter()
            output = await self.server_manager.generate(
                request_id=uuid4().hex, prompt_ids=runtime_ids, sampling_params=params
            )
            gen_seconds += time.perf_counter() - t0
            _merge_server_fields(server_fields, output.extra_fields or {})
            token_ids = list(output.token_ids)
            if response_logprobs is None and output.log_probs:
                response_logprobs = [0.0] * len(response_mask)
            merge, response_mask, response_logprobs = await self.ct_merge_assistant_token(
                runtime_ids,
                token_ids,
                response_mask,
                response_logprobs,
                assistant_logprobs=list(output.log_probs) if response_logprobs is not None else None,
            )
            runtime_ids = merge.token_ids
            model_turns += 1
            ended = bool(token_ids) and token_ids[-1] == self.eos_token_id
            if not ended and len(token_ids) >= budget:  # cut by the response budget: not played
                overflow = True
                break
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
            messages.append({"role": "assistant", "content": text})
            t_env = time.perf_counter()
            obs, reward, terminated, truncated, _ = trial.step(text)
            env_seconds += time.perf_counter() - t_env
            turn_scores.append(float(reward))
            if terminated or truncated:
                break
            if not ended and self.eos_token_id is not None:  # close the cut turn (an env token: mask 0)
                runtime_ids = runtime_ids + [self.eos_token_id]
                response_mask = response_mask + [0]
                if response_logprobs is not None:
                    response_logprobs = response_logprobs + [0.0]
            updated = messages + [{"role": "user", "content": obs}]
            merge, response_mask, response_logprobs = await self.ct_merge_context_msg(
                messages, updated, runtime_ids, response_mask, response_logprobs
            )
            messages = updated
            runtime_ids = merge.token_ids
            if len(response_mask) >= self.response_length:
                overflow = True
                break

        response_ids = runtime_ids[len(prompt_ids) :]
        assert len(response_ids) == len(response_mask), (len(response_ids), len(response_mask))
        n = self.response_length
        metrics = trial.metrics()
        metrics["overflow"] = float(overflow)
        metrics["model_turns"] = float(model_turns)
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids[:n],
            response_mask=response_mask[:n],
            response_logprobs=response_logprobs[:n] if response_logprobs is not None else None,
            reward_score=trial.success_reward * trial.success_count,
            num_turns=sum(m["role"] != "system" for m in messages),
            metrics=AgentLoopMetrics(generate_sequences=gen_seconds, tool_calls=env_seconds),
            extra_fields={
                **server_fields,
                "reward_extra_info": metrics,
                "turn_scores": turn_scores,
                "tool_rewards": [],
            },
        )


def _merge_server_fields(merged: dict, fields: dict) -> None:
    """Keep the first turn's fields and the latest ``max_global_steps``, as verl's tool agent loop does (the v1
    trainer's staleness metrics read ``min_global_steps`` / ``max_global_steps`` of every trajectory)."""
    if not merged:
        merged.update(fields)
    elif fields.get("max_global_steps") is not None:
        merged["max_global_steps"] = fields["max_global_steps"]
