"""The training budget every arm of a study gets, in one of three units, turned into verl's step count per arm.

Units (``Budget.unit``):

* ``prompts``: distinct prompts seen, ``data.train_batch_size`` x steps (a replayed teacher sequence counts as
  its prompt). Every arm must reach the amount exactly: a budget its batch size does not divide is refused.
* ``optimizer_steps``: actor updates, ``ppo_epochs x train_batch_size / ppo_mini_batch_size`` per verl step.
* ``response_tokens``: response tokens trained on, ``response_length/mean x train_batch_size x rollout.n``
  summed over the logged steps (whoever sampled them). Lengths are known only after the run, so the schedule
  needs each arm's expected tokens per response and the check allows ``Budget.tolerance`` (relative).

:func:`schedule` gives each arm its steps (and the override that sets them); :func:`check_spent` reads the
budget a finished run actually spent from its logged verl metrics and refuses a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

UNITS = {
    "prompts": "distinct prompts seen",
    "response_tokens": "sampled response tokens",
    "optimizer_steps": "optimizer steps",
}
#: verl metrics the check reads (a study keeps them for every logged step)
METRIC_KEYS = ("training/global_step", "response_length/mean", "timing_s/step")
#: arm setting -> verl config key (recipe YAML, overridden by the arm's and the study's Hydra overrides)
SETTING_KEYS = {
    "train_batch_size": "data.train_batch_size",
    "rollout_n": "actor_rollout_ref.rollout.n",
    "ppo_mini_batch_size": "actor_rollout_ref.actor.ppo_mini_batch_size",
    "ppo_epochs": "actor_rollout_ref.actor.ppo_epochs",
}
#: verl 0.9.1 defaults (trainer/config/ppo_trainer.yaml) of the settings a recipe may leave out
SETTING_DEFAULTS = {"rollout_n": 1, "ppo_epochs": 1}
STEPS_KEY = "trainer.total_training_steps"


class StudyError(ValueError):
    """A study declaration or its budget is unusable; the message names what to change."""


class BudgetMismatch(StudyError):
    """A finished run spent a different budget than its study declares."""


@dataclass(frozen=True)
class Budget:
    unit: str
    amount: int
    tolerance: float = 0.0  # relative; only a response-token budget may have one

    def __post_init__(self):
        if self.unit not in UNITS:
            raise StudyError(f"budget unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise StudyError(f"budget amount must be a positive integer, got {self.amount!r}")
        if not 0.0 <= self.tolerance < 1.0 or (self.tolerance and self.unit != "response_tokens"):
            raise StudyError(
                f"budget tolerance {self.tolerance} is not allowed: prompts and optimizer steps are spent exactly, "
                "a response-token budget may allow a relative tolerance in [0, 1)"
            )

    def describe(self) -> str:
        return f"{self.amount:,} {UNITS[self.unit]}"


@dataclass(frozen=True)
class ArmSchedule:
    """One arm's share of the budget: verl steps, budget per step, and the settings they came from."""

    arm: str
    steps: int
    per_step: float
    settings: dict = field(default_factory=dict)

    @property
    def overrides(self) -> list[str]:
        return [f"{STEPS_KEY}={self.steps}"]


def _override_value(overrides: Sequence[str], key: str):
    value = None
    for item in overrides:
        name, sep, raw = item.lstrip("+").partition("=")
        if sep and name == key:
            value = raw
    return value


def _yaml_value(config: Mapping, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def arm_settings(arm, extra: Sequence[str] = (), config: Mapping | None = None) -> dict[str, int]:
    """The budget-relevant settings of ``arm``: its recipe YAML (``recipes/<recipe>/<config_name>.yaml``, or
    ``config`` when given), then its overrides, then the study-wide ``extra`` overrides (verl applies them in
    that order), else verl's defaults. A value that is missing or not an integer is an error."""
    if config is None:
        import yaml

        from verl_frontier.tinyworld.paths import repo_root

        path = repo_root() / "recipes" / arm.recipe / f"{arm.config_name}.yaml"
        config = yaml.safe_load(path.read_text()) if path.exists() else {}
    out = {}
    for name, key in SETTING_KEYS.items():
        raw = _override_value([*arm.overrides, *extra], key)
        raw = raw if raw is not None else _yaml_value(config, key)
        if raw is None:
            if name in SETTING_DEFAULTS:
                out[name] = SETTING_DEFAULTS[name]
                continue
            if name == "ppo_mini_batch_size":
                continue  # needed only for optimizer steps (checked there)
            raise StudyError(f"arm {arm.name!r}: {key} is not set in its recipe or overrides; set it explicitly")
        try:
            out[name] = int(str(raw))
        except ValueError:
            raise StudyError(f"arm {arm.name!r}: {key} = {raw!r} is not an integer; set it explicitly") from None
    return out


def _per_step(unit: str, arm_name: str, settings: dict, tokens_per_response: Mapping[str, float] | None) -> float:
    batch = settings["train_batch_size"]
    if unit == "prompts":
        return batch
    if unit == "optimizer_steps":
        mini = settings.get("ppo_mini_batch_size")
        if mini is None:
            raise StudyError(f"arm {arm_name!r}: an optimizer-step budget needs {SETTING_KEYS['ppo_mini_batch_size']}")
        if batch % mini:
            raise StudyError(
                f"arm {arm_name!r}: train_batch_size {batch} is not a multiple of ppo_mini_batch_size {mini}"
            )
        return settings["ppo_epochs"] * (batch // mini)
    if not tokens_per_response or arm_name not in tokens_per_response:
        raise StudyError(
            f"arm {arm_name!r}: a response-token budget needs its expected tokens per response "
            "(tokens_per_response, e.g. measured on the base student)"
        )
    return batch * settings["rollout_n"] * float(tokens_per_response[arm_name])


def schedule(
    study,
    extra: Sequence[str] = (),
    tokens_per_response: Mapping[str, float] | None = None,
    train_size: int | None = None,
    configs: Mapping[str, Mapping] | None = None,
) -> dict[str, ArmSchedule]:
    """Each arm's verl steps for ``study.budget`` (arm name -> :class:`ArmSchedule`).

    Refuses a budget that an arm cannot spend exactly (naming the arm and the nearest budgets every arm can),
    a prompt budget larger than ``train_size`` (prompts would repeat), and arms that set the step count
    themselves. ``configs``: recipe configs by arm name (else read from the recipe YAML)."""
    budget = study.budget
    if budget is None:
        raise StudyError(f"study {study.name!r} declares no budget")
    if budget.unit == "prompts" and train_size is not None and budget.amount > train_size:
        raise StudyError(
            f"a budget of {budget.describe()} exceeds the {train_size:,} training prompts: prompts would repeat"
        )
    per_steps = {}
    for arm in study.arms:
        if _override_value([*arm.overrides, *extra], STEPS_KEY) is not None:
            raise StudyError(f"arm {arm.name!r} sets {STEPS_KEY} itself; the study budget sets it")
        settings = arm_settings(arm, extra, (configs or {}).get(arm.name))
        per_steps[arm.name] = (_per_step(budget.unit, arm.name, settings, tokens_per_response), settings)
    plans = {}
    for name, (per_step, settings) in per_steps.items():
        if budget.unit == "response_tokens":
            steps = max(1, round(budget.amount / per_step))
        else:
            steps, left = divmod(budget.amount, int(per_step))
            if left or steps == 0:
                common = math.lcm(*(int(p) for p, _ in per_steps.values()))
                raise StudyError(
                    f"a budget of {budget.describe()} does not divide into whole steps of arm {name!r} "
                    f"({int(per_step)} {UNITS[budget.unit]} per step); every arm can spend a multiple of {common}"
                )
        plans[name] = ArmSchedule(name, steps, per_step, settings)
    return plans


def budget_overrides(study, extra: Sequence[str] = (), **kwargs) -> dict[str, list[str]]:
    """Each arm's verl overrides for the study budget (arm name -> overrides); ``kwargs`` as :func:`schedule`."""
    return {name: plan.overrides for name, plan in schedule(study, extra, **kwargs).items()}


def _logged_steps(metrics: Mapping) -> list[tuple[int, Mapping]]:
    """(step, data) of the training steps in verl's logged metrics (keys may be ints or strings)."""
    return sorted((int(s), d) for s, d in metrics.items() if "training/global_step" in d)


def spent(unit: str, settings: Mapping[str, int], metrics: Mapping) -> float:
    """The budget a run spent, from its logged metrics (step -> data, as ``read_metrics`` or ``kept_metrics``)."""
    steps = _logged_steps(metrics)
    batch = settings["train_batch_size"]
    if unit == "prompts":
        return len(steps) * batch
    if unit == "optimizer_steps":
        return len(steps) * settings["ppo_epochs"] * (batch // settings["ppo_mini_batch_size"])
    missing = [s for s, d in steps if "response_length/mean" not in d]
    if missing:
        raise BudgetMismatch(f"step {missing[0]} logged no response_length/mean: response tokens unknown")
    return sum(float(d["response_length/mean"]) * batch * settings["rollout_n"] for _, d in steps)


def check_spent(budget: Budget, plan: ArmSchedule, metrics: Mapping, seed: int | None = None) -> dict:
    """Refuse a run whose logged steps or spent budget differ from the study's; returns the record to keep:
    ``{"unit", "amount", "spent", "steps"}``."""
    where = f"arm {plan.arm!r}" + (f" seed {seed}" if seed is not None else "")
    steps = _logged_steps(metrics)
    if len(steps) != plan.steps or (steps and steps[-1][0] != plan.steps):
        last = steps[-1][0] if steps else None
        raise BudgetMismatch(f"{where} logged {len(steps)} training steps (last {last}), its budget needs {plan.steps}")
    amount = spent(budget.unit, plan.settings, metrics)
    if abs(amount - budget.amount) > budget.tolerance * budget.amount + 1e-9:
        raise BudgetMismatch(
            f"{where} spent {amount:,.0f} {UNITS[budget.unit]}, the study gives every arm {budget.amount:,}"
            + (f" (tolerance {budget.tolerance:.0%})" if budget.tolerance else "")
        )
    return {"unit": budget.unit, "amount": budget.amount, "spent": amount, "steps": plan.steps}
