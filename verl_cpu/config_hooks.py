"""Driver-side hooks for the ``+platform=cpu`` config group.

- OmegaConf resolver ``verl_cpu_fake_gpus``: how many Ray "GPU" placement slots this node needs
  (training ranks + teacher replicas), used by ``config/platform/cpu.yaml`` for ``ray_init.num_gpus``.
- A wrapper of ``verl.utils.config.validate_config`` (called by ``verl.trainer.main_ppo`` in the driver
  before ``ray.init``): when ``trainer.device=cpu`` it validates the CPU settings (``validation.py``),
  selects the CPU platform for this process and its Ray workers, then calls verl's own validation.
  It is a pass-through for every other device.
"""

import functools

from omegaconf import OmegaConf

RESOLVER = "verl_cpu_fake_gpus"


def fake_gpus(train_ranks, distillation_enabled, teacher_ranks) -> int:
    """Ray GPU slots on this node: one per training rank, plus the teacher pool when distillation is on."""
    total = int(train_ranks)
    if str(distillation_enabled).lower() in ("true", "1"):
        total += int(teacher_ranks)
    return total


def _wrap_validate_config(module) -> None:
    original = module.validate_config
    if getattr(original, "_verl_cpu", False):
        return

    @functools.wraps(original)
    def validate_config(config, *args, **kwargs):
        if str(config.trainer.get("device", "")) == "cpu":
            from verl_cpu.validation import prepare_cpu_driver

            prepare_cpu_driver(config)
        return original(config, *args, **kwargs)

    validate_config._verl_cpu = True
    module.validate_config = validate_config


def install() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, fake_gpus)
    from verl_cpu.import_hooks import when_imported

    when_imported("verl.utils.config", _wrap_validate_config)
