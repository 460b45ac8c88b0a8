"""verl agent loop ``teacher_replay``: sequence-level distillation on teacher-written responses (verl 0.9.1 glue).

No generation. The parquet row (selected by its ``agent_name``) carries the teacher's response in
``extra_info["teacher_response"]`` (and its reward in ``extra_info["teacher_score"]``); the loop returns it as
the rollout, so verl's teacher servers score exactly that sequence and the actor trains on it with any
distillation loss (e.g. verl's ``forward_kl_topk``). Layout of the returned :class:`AgentLoopOutput`:

* ``prompt_ids``: the chat-templated prompt; ``response_ids``: the response's tokens + end of sequence, cut to
  ``rollout.response_length``; ``response_mask``: 1 on every response token;
* ``reward_score`` = ``extra_info["teacher_score"]`` (so verl skips its reward loop for replayed rows).

Subclasses change what is trained by overriding :meth:`TeacherReplayAgentLoop.layout` (Distilling the Essence's
segment masks and first-r truncation: ``verl_frontier.essence.agent_loop``). Unlike the rest of
``verl_frontier.kd``, this module imports verl (it is an agent loop); the data is written by
``python -m verl_frontier.essence.data``.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

REPLAY_AGENT = "teacher_replay"
EXPECTED_REGISTRATIONS = [("agent_loop", REPLAY_AGENT)]


@register(REPLAY_AGENT)
class TeacherReplayAgentLoop(AgentLoopBase):
    """Replays ``extra_info["teacher_response"]`` as the rollout (the whole response is trained)."""

    agent_name = REPLAY_AGENT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_length = int(self.rollout_config.response_length)
        self.eos_token_id = self.tokenizer.eos_token_id

    def encode(self, text: str, end: bool = False) -> list[int]:
        """``text``'s token ids, with the end-of-sequence token appended when ``end``."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids + [self.eos_token_id] if end and self.eos_token_id is not None else ids

    def layout(self, prompt_ids: list[int], response: str) -> tuple[list[int], list[int], list[int]]:
        """(verl prompt ids, response ids, response mask) of one replayed sequence."""
        response_ids = self.encode(response, end=True)[: self.response_length]
        return prompt_ids, response_ids, [1] * len(response_ids)

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        extra_info = dict(kwargs.get("extra_info") or {})
        if "teacher_response" not in extra_info:
            raise KeyError(
                f"{self.agent_name}: row {extra_info.get('index', '?')} has no extra_info['teacher_response'] "
                "(write the data with python -m verl_frontier.essence.data)"
            )
        step = int(kwargs.get("global_steps") or 0)
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        verl_prompt, response, mask = self.layout(prompt_ids, str(extra_info["teacher_response"]))
        return AgentLoopOutput(
            prompt_ids=verl_prompt,
            response_ids=response,
            response_mask=mask,
            reward_score=float(extra_info.get("teacher_score", 0.0)),
            num_turns=2,
            metrics=AgentLoopMetrics(),
            extra_fields={
                "turn_scores": [],
                "tool_rewards": [],
                # weight versions "used" by this trajectory (the v1 trainer's staleness tags): a replayed
                # sequence does not depend on the policy, so it is as fresh as the step that loads it
                "min_global_steps": step,
                "max_global_steps": step,
            },
        )
