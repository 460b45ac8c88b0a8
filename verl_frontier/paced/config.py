"""Paced settings (the ``algorithm.paced`` section of a recipe) and the two-stage schedule.

Single stage (Paced distillation / self-distillation)::

    algorithm:
      adv_estimator: paced
      paced: {alpha: 1.0, beta: 1.0, divergence: forward_kl}

Two stages (forward KL for the first ``switch_step - 1`` steps, then reverse KL: "mode coverage, then
consolidation")::

      paced: {divergence: forward_kl, switch_step: 21, stage2_divergence: reverse_kl}

Each stage has its own divergence and (optionally) its own α, β. No verl imports here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.kd.kinds import KINDS
from verl_frontier.validation import check_fields, read_settings

SECTION = "algorithm.paced"

#: divergence name -> code carried per sample from the estimator to the loss (see verl_plugin.py):
#: forward_kl 0, reverse_kl 1, jsd 2
DIVERGENCE_CODES = {name: code for code, name in enumerate(KINDS)}


@dataclass(frozen=True)
class Stage:
    divergence: str
    alpha: float
    beta: float

    @property
    def code(self) -> int:
        return DIVERGENCE_CODES[self.divergence]


@dataclass
class PacedConfig:
    """``algorithm.paced``: w(p) = p^alpha (1-p)^beta on the student's pass rate p of each prompt.

    pass_threshold: a rollout passes when its verifiable reward (sum over tokens) is > pass_threshold.
    normalize: rescale the step's weights so their mean ("mean", default: the learning-rate scale of
        uniform distillation is kept) or sum ("sum") equals normalize_target; "none" keeps w(p) as is.
    divergence: the (first) stage's divergence: forward_kl (teacher -> student), reverse_kl, jsd.
    switch_step: two-stage schedule: from this global step (1-based) on, stage 2 is used; None = one stage.
    stage2_*: stage 2's divergence and exponents (alpha/beta default to stage 1's).
    drop_zero_weight: skip the teacher query for rollouts of zero-weight prompt groups (p = 0 or 1 with
        alpha, beta > 0) and, on the legacy trainer, drop them before the backward pass (frontier.py).
    (divergence "jsd" is the generalised JSD with beta = 0.5, GKD's default; see verl_plugin.JSD_BETA.)
    """

    alpha: float = field(default=1.0, metadata={"ge": 0})
    beta: float = field(default=1.0, metadata={"ge": 0})
    pass_threshold: float = 0.0
    normalize: str = field(default="mean", metadata={"choices": ["mean", "sum", "none"]})
    normalize_target: float = field(default=1.0, metadata={"gt": 0})
    divergence: str = field(default="forward_kl", metadata={"choices": list(DIVERGENCE_CODES)})
    switch_step: int | None = field(default=None, metadata={"ge": 1})
    stage2_divergence: str = field(default="reverse_kl", metadata={"choices": list(DIVERGENCE_CODES)})
    stage2_alpha: float | None = field(default=None, metadata={"ge": 0})
    stage2_beta: float | None = field(default=None, metadata={"ge": 0})
    drop_zero_weight: bool = True

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_mapping(cls, mapping) -> PacedConfig:
        """Build from a dict / DictConfig (missing keys take the defaults) with
        :func:`verl_frontier.validation.read_settings`."""
        return read_settings(cls, mapping, SECTION)

    def stage_at(self, step: int | None) -> Stage:
        """The stage of global step ``step`` (``None``, e.g. outside a trainer, means stage 1)."""
        if self.switch_step is not None and step is not None and step >= self.switch_step:
            alpha = self.alpha if self.stage2_alpha is None else self.stage2_alpha
            beta = self.beta if self.stage2_beta is None else self.stage2_beta
            return Stage(self.stage2_divergence, float(alpha), float(beta))
        return Stage(self.divergence, float(self.alpha), float(self.beta))

    def stages(self) -> list[Stage]:
        first = self.stage_at(None)
        return [first] if self.switch_step is None else [first, self.stage_at(self.switch_step)]
