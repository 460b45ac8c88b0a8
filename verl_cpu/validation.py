"""Checks for running verl on the CPU platform, raised in the driver before Ray starts."""

import os

import torch

from verl_cpu import PLATFORM_NAME, ROLLOUT_NAME
from verl_frontier_hooks import REPORTED


class CPUConfigError(ValueError):
    """A setting that cannot work on the CPU platform; the message names the key (``errors``: one line each)."""

    def __init__(self, message: str, errors=None):
        super().__init__(message)
        self.errors = list(errors) if errors else [message]


#: advantage estimators that train a critic (verl builds one for them unless critic.enable says otherwise)
CRITIC_ESTIMATORS = ("gae",)


def _get(config, dotted: str, default=None):
    node = config
    for part in dotted.split("."):
        if node is None or not hasattr(node, "get"):
            return default
        node = node.get(part)
    return default if node is None else node


def builds_critic(config) -> bool:
    """Whether verl builds a critic for this run (verl's ``need_critic``: ``critic.enable`` when set, else a
    critic-based estimator)."""
    enable = _get(config, "critic.enable")
    if enable is not None:
        return bool(enable)
    return str(_get(config, "algorithm.adv_estimator", "")) in CRITIC_ESTIMATORS


def builds_reference(config) -> bool:
    """Whether verl builds the reference policy (verl's ``need_reference_policy``: a KL loss or a KL penalty in
    the reward; the methods that read the reference, ACE and OPSDC, require one of them)."""
    return bool(_get(config, "actor_rollout_ref.actor.use_kl_loss", False)) or bool(
        _get(config, "algorithm.use_kl_in_reward", False)
    )


def used_roles(config) -> list[str]:
    """The config sections of the roles this run builds (the actor always)."""
    roles = ["actor_rollout_ref.actor"]
    if builds_reference(config):
        roles.append("actor_rollout_ref.ref")
    if builds_critic(config):
        roles.append("critic")
    return roles


def cpu_config_problems(config) -> list[str]:
    """Every setting of this run that the CPU platform cannot honour, one line each naming the key.

    Only the roles the run builds are checked: a GRPO run keeps verl's default ``critic`` section unused.
    """
    problems = []
    for role in used_roles(config):
        strategy = _get(config, f"{role}.strategy")
        if strategy is not None and strategy not in ("fsdp2",):
            problems.append(f"{role}.strategy={strategy}: only fsdp2 runs on the CPU platform (FSDP1 needs a GPU)")
    rollouts = [("actor_rollout_ref.rollout", _get(config, "actor_rollout_ref.rollout"))]
    if _get(config, "distillation.enabled", False):
        for name, teacher in (_get(config, "distillation.teacher_models", {}) or {}).items():
            rollouts.append((f"distillation.teacher_models.{name}.inference", teacher.get("inference")))
    for prefix, rollout in rollouts:
        if rollout is None or rollout.get("name") != ROLLOUT_NAME:
            continue
        for key in (
            "tensor_model_parallel_size",
            "pipeline_model_parallel_size",
            "data_parallel_size",
            "expert_parallel_size",
        ):
            value = rollout.get(key, 1)
            if value is not None and int(value) != 1:
                problems.append(
                    f"{prefix}.{key}={value}: the hf rollout backend serves one process per replica; set it to 1"
                )
        if prefix == "actor_rollout_ref.rollout":
            lora_rank = _get(config, "actor_rollout_ref.model.lora_rank", 0)
            if lora_rank and int(lora_rank) > 0:
                problems.append(
                    f"actor_rollout_ref.model.lora_rank={lora_rank}: the hf rollout backend loads full weights only "
                    "(LoRA adapters are not synced to it); set it to 0"
                )
        if rollout.get("disaggregation", {}) and rollout.get("disaggregation", {}).get("enabled", False):
            problems.append(f"{prefix}.disaggregation.enabled=True is not supported by the hf rollout backend")
    return problems


def check_cpu_config(config) -> None:
    """Raise ``CPUConfigError`` listing every setting (of the roles the run builds) that the CPU platform
    cannot honour; ``errors`` holds one line each."""
    if torch.cuda.is_available() and os.environ.get("VERL_CPU_ALLOW_GPU", "0") != "1":
        raise CPUConfigError(
            f"trainer.device=cpu (+platform=cpu) was selected on a machine with {torch.cuda.device_count()} CUDA "
            "GPU(s); drop +platform=cpu to use them, or set VERL_CPU_ALLOW_GPU=1 to force the CPU platform"
        )
    problems = cpu_config_problems(config)
    if problems:
        raise CPUConfigError("; ".join(problems), problems)


#: checks other packages run in the driver before the CPU platform's own, ``fn(config) -> None`` raising an
#: exception with ``errors`` (one line each): verl-frontier's config validation registers itself here, so the
#: driver reports every problem of a config at once instead of the CPU ones first
DRIVER_CHECKS: list = []


def _run_driver_checks(config) -> None:
    for check in list(DRIVER_CHECKS):
        try:
            check(config)
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            if not errors or not cpu_config_problems(config):
                raise
            combined = CPUConfigError(str(exc), errors)
            setattr(combined, REPORTED, getattr(exc, REPORTED, False))  # its lines were printed already
            raise combined from None


def prepare_cpu_driver(config) -> None:
    """Validate, then select the CPU platform in this (driver) process and for the Ray workers it starts."""
    from verl_cpu import plugin

    if plugin.PLUGIN_ERRORS:
        raise RuntimeError("verl_cpu plugin failed to load: " + "; ".join(plugin.PLUGIN_ERRORS))
    _run_driver_checks(config)
    check_cpu_config(config)
    from verl_cpu.config_hooks import resolve_runtime_env

    resolve_runtime_env(config)  # the platform config's thread counts are interpolations
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    from verl.plugin.platform import platform_manager

    from verl_cpu.patches import apply_cpu_patches
    from verl_cpu.platform import PlatformCPU

    apply_cpu_patches()
    current = platform_manager._current_platform
    if current is None or current.device_name != "cpu":
        platform_manager._current_platform = PlatformCPU()
