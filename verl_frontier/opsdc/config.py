"""OPSDC settings (the ``actor_rollout_ref.opsdc`` section of a recipe), read by the actor worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.kd.kinds import KINDS
from verl_frontier.opsdc.teacher_inputs import MODES
from verl_frontier.validation import check_fields, read_settings

SECTION = "actor_rollout_ref.opsdc"


@dataclass
class OpsdcConfig:
    """``actor_rollout_ref.opsdc``: OPSDC settings (read by the actor worker)."""

    enable: bool = True
    #: teacher instruction: a preset ("uniform" = the paper's v1 OPSDC instruction, "difficulty_aware" =
    #: CRISP v2) or the literal text
    instruction: str = "uniform"
    #: where the instruction goes: "prepend" (start of the user turn), "append" (end of the user turn),
    #: "replace" (replaces the ids of replace_text)
    mode: str = field(default="prepend", metadata={"choices": MODES})
    separator: str = "\n\n"
    replace_text: str | None = None
    #: per-token divergence: reverse_kl (the paper's), forward_kl or jsd (ablations)
    loss: str = field(default="reverse_kl", metadata={"choices": KINDS})
    jsd_beta: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    #: 0 = full vocabulary; k > 0 = divergence on the teacher's top-k support (renormalised)
    topk: int = field(default=0, metadata={"ge": 0})
    chunk_size: int = field(default=1024, metadata={"gt": 0})
    #: M: copy the student into the teacher after every M-th step; 0 = frozen initial teacher
    teacher_update_freq: int = field(default=50, metadata={"ge": 0})
    #: extra ``apply_chat_template`` kwargs used to probe the chat template (match data.apply_chat_template_kwargs)
    chat_template_kwargs: dict | None = None
    #: log weight fingerprints (teacher/actor checksums, max |teacher - actor|) every step
    track_weights: bool = False

    def __post_init__(self):
        check_fields(self)
        if self.mode == "replace" and not self.replace_text:
            raise ValueError("mode 'replace' needs replace_text")

    @classmethod
    def from_mapping(cls, mapping) -> OpsdcConfig:
        """Build from a dict / DictConfig (missing keys take the defaults) with
        :func:`verl_frontier.validation.read_settings`."""
        return read_settings(cls, mapping, SECTION)
