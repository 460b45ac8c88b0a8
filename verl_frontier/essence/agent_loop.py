"""verl agent loops for Distilling the Essence (the verl glue; the math is in segments.py).

``essence_replay`` (offline KD, selected per parquet row by ``agent_name``): no generation. The row's
teacher-written response (``extra_info["teacher_response"]``) is replayed as the rollout, so verl's teacher
servers score exactly that sequence and the actor trains on it (the ``essence_kd_topk`` loss). Layout of the
returned :class:`AgentLoopOutput`, with the full sequence ``[prompt][cot][answer][eos]`` cut to its first
``keep`` tokens (segments.replay_layout):

* prompt segment trained: ``prompt_ids`` = the sequence's first token only, ``response_ids`` = the rest, so
  the prompt tokens are predicted and trained like fmchisel's ``promptcotAns``/``promptAns``/``promptCot``
  (``rollout.response_length`` must then hold prompt + response);
* otherwise: ``prompt_ids`` = the chat-templated prompt, ``response_ids`` = the kept response tokens;
* ``response_mask`` = 1 on the tokens of the selected segments, 0 elsewhere;
* ``reward_score`` = ``extra_info["teacher_score"]`` (so verl skips its reward loop for replayed rows).

``essence_single_turn`` (on-policy, composes with Paced / any of our distillation losses): verl's single-turn
loop, then the response mask is multiplied by the cot/answer segment mask and the first-r truncation of the
student's own rollout (the rollout is generated and scored in full; only the loss mask changes).

Both read ``actor_rollout_ref.essence`` (:class:`EssenceConfig`).
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from verl_frontier.essence.config import EssenceConfig
from verl_frontier.essence.segments import replay_layout, segment_mask

REPLAY_AGENT = "essence_replay"
ON_POLICY_AGENT = "essence_single_turn"


def essence_settings(trainer_config) -> EssenceConfig:
    section = trainer_config.get("actor_rollout_ref", {}).get("essence", None)
    return EssenceConfig.from_mapping(section)


def split_at_marker(text: str, marker: str) -> tuple[str, str]:
    """(chain of thought, answer): the answer starts at the first ``marker``; no marker = all chain of thought."""
    at = text.find(marker)
    return (text, "") if at < 0 else (text[:at], text[at:])


@register(REPLAY_AGENT)
class EssenceReplayAgentLoop(AgentLoopBase):
    """Replays ``extra_info["teacher_response"]`` (offline KD on teacher-written reasoning)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = essence_settings(self.config)
        self.response_length = int(self.rollout_config.response_length)
        self.eos_token_id = self.tokenizer.eos_token_id

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        extra_info = dict(kwargs.get("extra_info") or {})
        if "teacher_response" not in extra_info:
            raise KeyError(
                f"{REPLAY_AGENT}: row {extra_info.get('index', '?')} has no extra_info['teacher_response'] "
                "(write the data with python -m verl_frontier.essence.data)"
            )
        step = int(kwargs.get("global_steps") or 0)
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        cot, answer = split_at_marker(str(extra_info["teacher_response"]), self.settings.answer_marker)
        cot_ids = self.tokenizer.encode(cot, add_special_tokens=False)
        answer_ids = self.tokenizer.encode(answer, add_special_tokens=False)
        if self.eos_token_id is not None:
            answer_ids = answer_ids + [self.eos_token_id]
        s = self.settings
        verl_prompt, response, mask = replay_layout(
            prompt_ids, cot_ids, answer_ids, s.segments, s.truncate_ratio, s.truncate_scope, self.response_length
        )
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


@register(ON_POLICY_AGENT)
class EssenceSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop with the Essence cot/answer mask and truncation on the student's rollout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = essence_settings(self.config)
        if "prompt" in self.settings.segments:
            raise ValueError(
                f"actor_rollout_ref.essence.segments={self.settings.segments}: {ON_POLICY_AGENT} trains the "
                "student's own response only; drop 'prompt'"
            )
        self.marker_ids = self.tokenizer.encode(self.settings.answer_marker, add_special_tokens=False)

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        output = await super().run(sampling_params, **kwargs)
        prompt_len = len(output.prompt_ids)
        mask = segment_mask(
            prompt_len,
            output.response_ids,
            self.marker_ids,
            self.settings.segments,
            self.settings.truncate_ratio,
            self.settings.truncate_scope,
        )[prompt_len:]
        output.response_mask = [a * b for a, b in zip(output.response_mask, mask, strict=True)]
        return output
