"""Checks for running verl on the CPU platform, raised in the driver before Ray starts."""

import os

import torch

from verl_cpu import PLATFORM_NAME, ROLLOUT_NAME


class CPUConfigError(ValueError):
    """A setting that cannot work on the CPU platform; the message names the key."""


def _get(config, dotted: str, default=None):
    node = config
    for part in dotted.split("."):
        if node is None or not hasattr(node, "get"):
            return default
        node = node.get(part)
    return default if node is None else node


def check_cpu_config(config) -> None:
    """Raise ``CPUConfigError`` naming the first key that the CPU platform cannot honour."""
    if torch.cuda.is_available() and os.environ.get("VERL_CPU_ALLOW_GPU", "0") != "1":
        raise CPUConfigError(
            f"trainer.device=cpu (+platform=cpu) was selected on a machine with {torch.cuda.device_count()} CUDA "
            "GPU(s); drop +platform=cpu to use them, or set VERL_CPU_ALLOW_GPU=1 to force the CPU platform"
        )
    for role in ("actor_rollout_ref.actor", "actor_rollout_ref.ref", "critic"):
        strategy = _get(config, f"{role}.strategy")
        if strategy is not None and strategy not in ("fsdp2",):
            raise CPUConfigError(f"{role}.strategy={strategy}: only fsdp2 runs on the CPU platform (FSDP1 needs a GPU)")
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
                raise CPUConfigError(
                    f"{prefix}.{key}={value}: the hf rollout backend serves one process per replica; set it to 1"
                )
        if prefix == "actor_rollout_ref.rollout":
            lora_rank = _get(config, "actor_rollout_ref.model.lora_rank", 0)
            if lora_rank and int(lora_rank) > 0:
                raise CPUConfigError(
                    f"actor_rollout_ref.model.lora_rank={lora_rank}: the hf rollout backend loads full weights only "
                    "(LoRA adapters are not synced to it); set it to 0"
                )
        if rollout.get("disaggregation", {}) and rollout.get("disaggregation", {}).get("enabled", False):
            raise CPUConfigError(f"{prefix}.disaggregation.enabled=True is not supported by the hf rollout backend")


def prepare_cpu_driver(config) -> None:
    """Validate, then select the CPU platform in this (driver) process and for the Ray workers it starts."""
    from verl_cpu import plugin

    if plugin.PLUGIN_ERRORS:
        raise RuntimeError("verl_cpu plugin failed to load: " + "; ".join(plugin.PLUGIN_ERRORS))
    check_cpu_config(config)
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    from verl.plugin.platform import platform_manager

    from verl_cpu.patches import apply_cpu_patches
    from verl_cpu.platform import PlatformCPU

    apply_cpu_patches()
    current = platform_manager._current_platform
    if current is None or current.device_name != "cpu":
        platform_manager._current_platform = PlatformCPU()
