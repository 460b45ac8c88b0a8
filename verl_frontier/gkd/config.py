"""GKD settings (the ``algorithm.gkd`` section of a recipe). No torch or verl imports here.

::

    algorithm:
      gkd: {lmbda: 0.5, cold_start_steps: 0, seed: 0}

The section's presence turns the mixing on: every training row named ``teacher_replay`` or ``gkd_mix``
(rows carrying ``extra_info.teacher_response``) is run by the agent loop ``gkd_mix``, which samples the
student on a fraction ``lmbda`` of them and replays the teacher's response on the rest
(:mod:`verl_frontier.gkd.assign` picks which).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.validation import check_fields, read_settings

SECTION = "algorithm.gkd"


@dataclass(frozen=True)
class GkdConfig:
    """``algorithm.gkd`` section.

    lmbda: the student-data fraction lambda of GKD (TRL's ``GKDTrainer(lmbda=...)``): the share of each step's
        rows on which the student samples its own response; the rest replay the teacher's. 0 = offline KD on
        teacher sequences (kd_uniform), 1 = on-policy distillation (opd_uniform).
    cold_start_steps: N >= 0: steps 1..N replay teacher sequences only (lambda 0), step N+1 on use ``lmbda``.
    seed: mixed into the per-step row permutation (:func:`verl_frontier.gkd.assign.on_policy_mask`).
    """

    lmbda: float = field(default=0.5, metadata={"ge": 0, "le": 1})
    cold_start_steps: int = field(default=0, metadata={"ge": 0})
    seed: int = 0

    def __post_init__(self):
        check_fields(self)

    def lambda_at(self, step: int | None) -> float:
        """The on-policy fraction of global step ``step`` (1-based): 0 during the cold start, else ``lmbda``.
        An unknown step (``None``) is only accepted without a cold start."""
        if self.cold_start_steps == 0:
            return float(self.lmbda)
        if step is None:
            raise ValueError("algorithm.gkd.cold_start_steps > 0 needs the training step; none was passed")
        return 0.0 if int(step) <= self.cold_start_steps else float(self.lmbda)

    @classmethod
    def from_mapping(cls, mapping) -> GkdConfig:
        """Build from a dict / DictConfig (missing keys take the defaults) with
        :func:`verl_frontier.validation.read_settings`."""
        return read_settings(cls, mapping, SECTION)
