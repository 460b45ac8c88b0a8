"""verl agent loops for Distilling the Essence (the verl glue; the math is in segments.py).

``essence_replay`` (offline KD, selected per parquet row by ``agent_name``): the general distillation loop
``teacher_replay`` (:mod:`verl_frontier.kd.replay`: no generation, the row's teacher-written response
``extra_info["teacher_response"]`` is the rollout, ``reward_score`` = ``extra_info["teacher_score"]``) with the
Essence layout on top: the full sequence ``[prompt][cot][answer][eos]`` cut to its first ``keep`` tokens
(segments.replay_layout), trained with the ``essence_kd_topk`` loss:

* prompt segment trained: ``prompt_ids`` = the sequence's first token only, ``response_ids`` = the rest, so
  the prompt tokens are predicted and trained like fmchisel's ``promptcotAns``/``promptAns``/``promptCot``
  (``rollout.response_length`` must then hold prompt + response);
* otherwise: ``prompt_ids`` = the chat-templated prompt, ``response_ids`` = the kept response tokens;
* ``response_mask`` = 1 on the tokens of the selected segments, 0 elsewhere.

``essence_single_turn`` (on-policy, composes with Paced / any of our distillation losses): verl's single-turn
loop, then the response mask is multiplied by the cot/answer segment mask and the first-r truncation of the
student's own rollout (the rollout is generated and scored in full; only the loss mask changes).

Both read ``actor_rollout_ref.essence`` (:class:`EssenceConfig`).
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from verl_frontier.essence.config import EssenceConfig
from verl_frontier.essence.segments import replay_layout, segment_mask
from verl_frontier.kd.replay import TeacherReplayAgentLoop

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
class EssenceReplayAgentLoop(TeacherReplayAgentLoop):
    """``teacher_replay`` with the Essence segment mask and first-r truncation (offline KD on teacher-written
    reasoning)."""

    agent_name = REPLAY_AGENT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = essence_settings(self.config)

    def layout(self, prompt_ids: list[int], response: str) -> tuple[list[int], list[int], list[int]]:
        s = self.settings
        cot, answer = split_at_marker(response, s.answer_marker)
        return replay_layout(
            prompt_ids,
            self.encode(cot),
            self.encode(answer, end=True),
            s.segments,
            s.truncate_ratio,
            s.truncate_scope,
            self.response_length,
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
