"""ACE settings (the ``algorithm.ace`` section of a recipe). No torch or verl imports here."""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_frontier.validation import check_fields, read_settings

SECTION = "algorithm.ace"
MODULATIONS = ("softplus", "relu")
REDUCTIONS = ("mean", "sum")


@dataclass
class AceConfig:
    """``algorithm.ace`` section.

    base_estimator: the group advantage estimator ACE modulates (any name in verl's ADV_ESTIMATOR_REGISTRY
        except gae / remax / gdpo / ace itself, e.g. grpo, rloo, grpo_passk, grpo_vectorized).
    alpha: modulation strength α >= 0 (paper: 1.0 best; 0 = the base estimator).
    modulation: "softplus" (paper) or "relu" (ablation: only c > 0 is penalised).
    reduction: "mean" (length-normalised c, paper) or "sum" (sequence log-ratio).
    dump_dir: if set, every step's inputs and advantages are saved there as ``step_<k>.pt`` (analysis/tests).
    """

    base_estimator: str = "grpo"
    alpha: float = field(default=1.0, metadata={"ge": 0})
    modulation: str = field(default="softplus", metadata={"choices": list(MODULATIONS)})
    reduction: str = field(default="mean", metadata={"choices": list(REDUCTIONS)})
    dump_dir: str | None = None

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_mapping(cls, mapping) -> AceConfig:
        """Build from a dict / DictConfig (missing keys take the defaults) with
        :func:`verl_frontier.validation.read_settings`."""
        return read_settings(cls, mapping, SECTION)
