"""Method state saved with verl's checkpoints, so that a resumed run continues as if it had not stopped.

verl 0.9.1 checkpoints the actor (and critic) weights and optimizer, its RNG state, the dataloader and the
step number (the ``global_step_N`` folder name). A method's own state, e.g. OPSDC's teacher weights and
teacher-sync counter, is not in there. This module adds it with one mechanism and two registries:

* driver state (the TaskRunner process, where advantage estimators run):
  :func:`register_driver_state` ``(name, provider)``; ``provider`` has ``state_dict()`` /
  ``load_state_dict(state)``. All providers are saved together in ``global_step_N/frontier_state.pt``.
* worker state (inside ``ActorRolloutRefWorker``, e.g. state built in ``init_model``):
  :func:`register_worker_state` ``(name, getter)``; ``getter(worker)`` returns the worker's provider, or
  ``None`` when the method is off in that worker. Saved per rank in the actor's checkpoint folder,
  ``global_step_N/actor/frontier_state_rank{R}.pt``.

The files are written and read by wraps (lazy, verl 0.9.1 only) of

* driver: ``RayPPOTrainer._save_checkpoint`` / ``_load_checkpoint`` (legacy trainer) and
  ``PPOTrainer._save_checkpoint`` / ``_load_checkpoint`` (v1 trainer). The driver file is written before
  verl's own save, hence before ``latest_checkpointed_iteration.txt``, which ``resume_mode=auto`` uses;
* worker: ``ActorRolloutRefWorker.save_checkpoint`` (after verl's save) / ``load_checkpoint`` (before verl's
  load, which may delete the folder with ``trainer.del_local_ckpt_after_load``).

A checkpoint without the file (written without this package, or without the method) leaves the providers
as they are, with a warning; a saved name without a registered provider is ignored with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from verl_frontier.verl_patches import wrap_methods

logger = logging.getLogger("verl_frontier")

DRIVER_FILE = "frontier_state.pt"
WORKER_FILE = "frontier_state_rank{rank}.pt"
_MARKER = "_verl_frontier_method_state"


class StateProvider(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_driver: dict[str, StateProvider] = {}
_worker: dict[str, Callable[[Any], StateProvider | None]] = {}


def register_driver_state(name: str, provider: StateProvider) -> StateProvider:
    """Save ``provider``'s state under ``name`` with every driver checkpoint (re-registering replaces).
    The first registration installs the checkpoint wraps."""
    _driver[name] = provider
    install()
    return provider


def register_worker_state(name: str, getter: Callable[[Any], StateProvider | None]) -> None:
    """Save ``getter(worker)``'s state under ``name`` with every actor-worker checkpoint."""
    _worker[name] = getter
    install()


# ---------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------


def _save(states: dict[str, Any], path: str) -> None:
    import torch

    tmp = f"{path}.tmp"
    torch.save(states, tmp)
    os.replace(tmp, path)  # a preemption mid-write leaves no truncated file


def _load(path: str) -> dict[str, Any] | None:
    import torch

    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _restore(providers: dict[str, StateProvider], states: dict[str, Any] | None, where: str) -> list[str]:
    if states is None:
        if providers:
            logger.warning("verl-frontier: no method state in %s; %s start fresh", where, sorted(providers))
        return []
    for name in sorted(set(states) - set(providers)):
        logger.warning("verl-frontier: %s holds state of %r, which is not active here; ignored", where, name)
    for name in sorted(set(providers) - set(states)):
        logger.warning("verl-frontier: %s holds no state of %r; it starts fresh", where, name)
    restored = []
    for name, provider in providers.items():
        if name in states:
            provider.load_state_dict(states[name])
            restored.append(name)
    return restored


def save_driver_state(folder: str) -> str:
    """Write every registered driver provider's state to ``folder/frontier_state.pt``; returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, DRIVER_FILE)
    _save({name: provider.state_dict() for name, provider in _driver.items()}, path)
    return path


def load_driver_state(folder: str) -> list[str]:
    """Restore the registered driver providers from ``folder``; returns the names restored."""
    return _restore(dict(_driver), _load(os.path.join(folder, DRIVER_FILE)), folder)


def _worker_providers(worker) -> dict[str, StateProvider]:
    out = {}
    for name, getter in _worker.items():
        provider = getter(worker)
        if provider is not None:
            out[name] = provider
    return out


def _rank() -> int:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", 0))


def save_worker_state(worker, folder: str) -> str | None:
    """Write this rank's worker providers' state to ``folder`` (nothing when no method is active)."""
    providers = _worker_providers(worker)
    if not providers:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WORKER_FILE.format(rank=_rank()))
    _save({name: provider.state_dict() for name, provider in providers.items()}, path)
    return path


def load_worker_state(worker, folder: str) -> list[str]:
    """Restore this rank's worker providers from ``folder``; returns the names restored."""
    providers = _worker_providers(worker)
    if not providers:
        return []
    path = os.path.join(folder, WORKER_FILE.format(rank=_rank()))
    return _restore(providers, _load(path), path)


def resumed_folder(trainer) -> str | None:
    """The ``global_step_N`` folder verl's ``_load_checkpoint`` just resumed from (``None``: a fresh start).
    The same resolution as verl's: ``resume_from_path`` for ``resume_mode=resume_path``, else the folder of
    the step it set under ``default_local_dir``."""
    config = trainer.config.trainer
    mode = config.get("resume_mode", "auto")
    step = int(getattr(trainer, "global_steps", 0) or 0)
    if mode == "disable" or step <= 0:
        return None
    if mode == "resume_path":
        folder = str(config.resume_from_path)
    else:
        folder = os.path.join(str(config.default_local_dir), f"global_step_{step}")
    return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


# ---------------------------------------------------------------------------------------------------------
# verl wraps
# ---------------------------------------------------------------------------------------------------------


def _wrap_trainer(cls) -> None:
    def make_save(original):
        def _save_checkpoint(self, *args, **kwargs):
            folder = os.path.join(str(self.config.trainer.default_local_dir), f"global_step_{self.global_steps}")
            save_driver_state(folder)
            return original(self, *args, **kwargs)

        return _save_checkpoint

    def make_load(original):
        def _load_checkpoint(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            folder = resumed_folder(self)
            if folder is not None:
                restored = load_driver_state(folder)
                if restored:
                    logger.info("verl-frontier: restored driver state of %s from %s", restored, folder)
            return out

        return _load_checkpoint

    wrap_methods(cls, {"_save_checkpoint": make_save, "_load_checkpoint": make_load}, marker=_MARKER)


def _hook_workers(module) -> None:
    def make_save(original):
        def save_checkpoint(self, local_path, *args, **kwargs):
            out = original(self, local_path, *args, **kwargs)
            save_worker_state(self, local_path)
            return out

        return save_checkpoint

    def make_load(original):
        def load_checkpoint(self, local_path, *args, **kwargs):
            restored = load_worker_state(self, local_path)
            if restored:
                logger.info("verl-frontier: restored worker state of %s from %s", restored, local_path)
            return original(self, local_path, *args, **kwargs)

        return load_checkpoint

    wrap_methods(
        module.ActorRolloutRefWorker, {"save_checkpoint": make_save, "load_checkpoint": make_load}, marker=_MARKER
    )


_installed: list[bool] = []


def install() -> None:
    """Install the checkpoint wraps (idempotent; on another verl version, nothing: see verl_patches)."""
    from verl_frontier.verl_patches import verl_supported
    from verl_frontier_hooks import when_imported

    if _installed:
        return
    _installed.append(True)
    if not verl_supported("method_state"):
        return
    when_imported("verl.trainer.ppo.ray_trainer", lambda m: _wrap_trainer(m.RayPPOTrainer))
    when_imported("verl.trainer.ppo.v1.trainer_base", lambda m: _wrap_trainer(m.PPOTrainer))
    when_imported("verl.workers.engine_workers", _hook_workers)
