"""Driver-side hooks for the ``+platform=cpu`` config group.

- OmegaConf resolver ``verl_cpu_fake_gpus``: how many Ray "GPU" placement slots this node needs
  (training ranks + teacher replicas), used by ``config/platform/cpu.yaml`` for ``ray_init.num_gpus``.
- OmegaConf resolver ``verl_cpu_physical_cores``: this machine's physical CPU cores, as a string (a Ray
  ``env_vars`` value), for TransferQueue's thread counts in ``config/platform/cpu.yaml``.
- A wrapper of ``verl.utils.device.auto_set_device`` (the first thing ``verl.trainer.main_ppo.main`` calls
  in the driver, before ``ray.init``; unwrapped it would reset ``trainer.device=cpu`` to ``cuda`` because
  the driver falls back to the nvidia platform): when ``trainer.device=cpu`` it validates the CPU settings
  (``validation.py``) and selects the CPU platform for this process and the Ray workers it starts.
  It is a pass-through for every other device.
"""

import os
import sys

from omegaconf import OmegaConf

from verl_cpu import PATCH_MARKER
from verl_frontier_hooks import exit_for_config_error, when_imported, wrap_once

RESOLVER = "verl_cpu_fake_gpus"
CORES_RESOLVER = "verl_cpu_physical_cores"


def fake_gpus(train_per_node, train_nodes, distillation_enabled, teacher_per_node, teacher_nodes) -> int:
    """Ray GPU slots on this (single) machine: one per training rank, plus the teacher pool with distillation.

    A local ``ray.init`` is one node, so every "node" of the recipe lands here.
    """
    total = int(train_per_node) * max(1, int(train_nodes))
    if str(distillation_enabled).lower() in ("true", "1"):
        total += int(teacher_per_node) * max(1, int(teacher_nodes))
    return total


def physical_cores() -> str:
    """Physical CPU cores of this machine (logical ones where psutil cannot tell), as a string.

    TransferQueue caps its torch thread count at ``psutil.cpu_count(logical=False)`` and warns on every put/get
    when asked for more (its default ``TQ_NUM_THREADS`` is 8), so the same count is used here.
    """
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return str(max(1, cores or os.cpu_count() or 1))


def resolve_runtime_env(config) -> None:
    """Resolve ``ray_kwargs.ray_init.runtime_env`` in place.

    verl hands that node to ``ray.init`` through ``OmegaConf.to_container`` without ``resolve=True``, so an
    interpolation there (the platform config's thread counts) would reach the Ray workers as the literal
    ``${...}`` text.
    """
    ray_init = (config.get("ray_kwargs") or {}).get("ray_init") if hasattr(config, "get") else None
    runtime_env = ray_init.get("runtime_env") if ray_init is not None else None
    if runtime_env is not None and OmegaConf.is_config(runtime_env):
        OmegaConf.resolve(runtime_env)


def _wrap_auto_set_device(module) -> None:
    def make(original):
        def auto_set_device(config, *args, **kwargs):
            trainer = config.get("trainer") if config is not None and hasattr(config, "get") else None
            if trainer is not None and str(trainer.get("device", "")) == "cpu":
                from verl_cpu.validation import prepare_cpu_driver

                try:
                    prepare_cpu_driver(config)
                except Exception as exc:  # noqa: BLE001 - a config error exits 2 under verl's main_ppo
                    exit_for_config_error(exc, sys._getframe(1).f_globals, "config error: ")
                    raise
            return original(config, *args, **kwargs)

        return auto_set_device

    wrap_once(module, "auto_set_device", make, marker=PATCH_MARKER)


def install() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, fake_gpus)
    if not OmegaConf.has_resolver(CORES_RESOLVER):
        OmegaConf.register_new_resolver(CORES_RESOLVER, physical_cores)
    when_imported("verl.utils.device", _wrap_auto_set_device)
