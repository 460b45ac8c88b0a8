"""``verl.plugins`` entry point of verl_cpu, imported by ``import verl`` in every process.

Always registers (cheap, harmless on a GPU machine): the platform ``cpu``, the rollout backend ``hf``, the
OmegaConf resolver the ``+platform=cpu`` config group uses, and a pass-through wrapper of verl's driver-side
``auto_set_device`` that checks CPU settings before Ray starts when ``trainer.device=cpu``.
Only when the CPU platform is selected (``VERL_PLATFORM=cpu``) are verl modules patched (``patches.py``).

verl swallows exceptions raised by entry points, so errors are logged loudly and kept in ``PLUGIN_ERRORS``;
``verl_cpu.validation.prepare_cpu_driver`` re-raises them in the driver, before Ray starts.
"""

import logging
import os

from verl_cpu import PLATFORM_NAME, ROLLOUT_NAME, cpu_selected
from verl_frontier_hooks import when_imported

logger = logging.getLogger(__name__)

EXPECTED_REGISTRATIONS = [("platform", PLATFORM_NAME), ("rollout", ROLLOUT_NAME)]
if cpu_selected():  # the FSDP engines are registered for device cpu only on the CPU platform
    EXPECTED_REGISTRATIONS += [("engine", "language_model/fsdp2/cpu"), ("engine", "value_model/fsdp2/cpu")]

PLUGIN_ERRORS: list[str] = []


def _register_platform() -> None:
    from verl.plugin.platform.platform_manager import PlatformRegistry

    from verl_cpu.platform import PlatformCPU

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


def _load_hf_replica():
    from verl_cpu.hf_rollout import HFReplica

    return HFReplica


def _register_rollout_replica(module) -> None:
    module.RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_hf_replica)


def _register_rollout_adapter(module) -> None:
    module._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = "verl_cpu.hf_rollout.HFServerAdapter"


def register() -> None:
    _register_platform()
    when_imported("verl.workers.rollout.replica", _register_rollout_replica)
    when_imported("verl.workers.rollout.base", _register_rollout_adapter)
    from verl_cpu import config_hooks

    config_hooks.install()
    if cpu_selected():
        from verl_cpu.patches import apply_cpu_patches

        apply_cpu_patches()
        # Engine registration for device cpu is one of the lazily applied patches.


try:
    register()
except Exception as exc:  # verl would swallow it silently: make it loud and keep it for the checks
    PLUGIN_ERRORS.append(f"{type(exc).__name__}: {exc}")
    logger.error("verl_cpu plugin failed to register (pid %s): %s", os.getpid(), exc)
