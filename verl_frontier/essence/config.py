"""``actor_rollout_ref.essence``: the Distilling-the-Essence settings, read by the agent loops (mask and
truncation) and by the actor's ``essence_kd_topk`` loss (``ce_weight``). No verl imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.essence.segments import SCOPES, parse_segments
from verl_frontier.validation import check_fields, read_settings

SECTION = "actor_rollout_ref.essence"


@dataclass
class EssenceConfig:
    """segments: which of prompt / cot / answer are trained (list, comma string or fmchisel mode).
    truncate_ratio: r in (0, 1]; keep the first max(1, int(L r)) tokens (scope: "sequence" = prompt +
        response as in the paper, "response" = response tokens only, prompt kept).
    answer_marker: text that opens the answer segment ("Answer:" in the tiny world, "</think>" for thinking
        models).
    ce_weight: lambda in lambda * CE + (1 - lambda) * forward KL (fmchisel: 1 - distillation_loss_ratio).
    """

    segments: list[str] | str = field(default_factory=lambda: ["prompt", "cot", "answer"])
    truncate_ratio: float = field(default=1.0, metadata={"gt": 0, "le": 1})
    truncate_scope: str = field(default="sequence", metadata={"choices": list(SCOPES)})
    answer_marker: str = "Answer:"
    ce_weight: float = field(default=0.5, metadata={"ge": 0, "le": 1})

    def __post_init__(self):
        self.segments = sorted(parse_segments(self.segments))
        if isinstance(self.truncate_ratio, int) and not isinstance(self.truncate_ratio, bool):
            self.truncate_ratio = float(self.truncate_ratio)
        check_fields(self)
        if not self.answer_marker:
            raise ValueError(f"answer_marker must be a non-empty string, got {self.answer_marker!r}")

    @classmethod
    def from_mapping(cls, mapping) -> EssenceConfig:
        """Build from a dict / DictConfig (missing keys take the defaults) with
        :func:`verl_frontier.validation.read_settings`."""
        return read_settings(cls, mapping, SECTION)
