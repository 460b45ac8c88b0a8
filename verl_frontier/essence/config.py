"""``actor_rollout_ref.essence``: the Distilling-the-Essence settings, read by the agent loops (mask and
truncation) and by the actor's ``essence_kd_topk`` loss (``ce_weight``). No verl imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.essence.segments import SCOPES, check_truncate_ratio, parse_segments


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
        self.truncate_ratio = check_truncate_ratio(self.truncate_ratio)
        if self.truncate_scope not in SCOPES:
            raise ValueError(f"truncate_scope must be one of {list(SCOPES)}, got {self.truncate_scope!r}")
        if not isinstance(self.answer_marker, str) or not self.answer_marker:
            raise ValueError(f"answer_marker must be a non-empty string, got {self.answer_marker!r}")
        if not 0.0 <= float(self.ce_weight) <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1], got {self.ce_weight!r}")

    @classmethod
    def from_mapping(cls, mapping) -> EssenceConfig:
        if mapping is None:
            return cls()
        items = dict(mapping.items()) if hasattr(mapping, "items") else dict(mapping)
        if "segments" in items and not isinstance(items["segments"], str):
            items["segments"] = list(items["segments"])
        return cls(**items)
