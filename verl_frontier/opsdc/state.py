"""OPSDC's training state, saved with verl's checkpoints (through :mod:`verl_frontier.method_state`).

* worker (per actor rank): the step counter that drives the teacher-sync schedule and, once the teacher has
  been refreshed at least once (M > 0 and step >= M), the teacher's parameters (this rank's local shards;
  the resumed run has the same sharding). Before the first refresh the teacher is the initial model, which
  verl rebuilds on resume, so nothing is written for it.
* driver: the reference response length of ``opsdc/compression_ratio`` (the first step's mean length).

Pure torch; the verl glue registers these in :mod:`verl_frontier.opsdc.verl_plugin`.
"""

from __future__ import annotations

from typing import Any

import torch

from verl_frontier.opsdc.sync import _local, named_parameters


@torch.no_grad()
def local_shards(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """This rank's parameter shards by name, copied to CPU."""
    return {name: _local(p.detach()).to("cpu", copy=True) for name, p in named_parameters(module).items()}


@torch.no_grad()
def load_local_shards_(module: torch.nn.Module, shards: dict[str, torch.Tensor]) -> None:
    """Copy saved shards into ``module``'s parameters in place; raises on a name or shape mismatch."""
    params = named_parameters(module)
    if set(params) != set(shards):
        diff = sorted(set(params) ^ set(shards))[:5]
        raise RuntimeError(f"opsdc: saved teacher parameters do not match the model, e.g. {diff}")
    for name, p in params.items():
        dst = _local(p.data)
        src = shards[name]
        if tuple(src.shape) != tuple(dst.shape):
            raise RuntimeError(
                f"opsdc: saved teacher shard {name} has shape {tuple(src.shape)}, the model {tuple(dst.shape)} "
                "(resume with the same number of actor ranks)"
            )
        dst.copy_(src.to(device=dst.device, dtype=dst.dtype))


def worker_state_dict(step: int, teacher_update_freq: int, teacher: torch.nn.Module) -> dict[str, Any]:
    refreshed = teacher_update_freq > 0 and step >= teacher_update_freq
    return {"step": int(step), "teacher": local_shards(teacher) if refreshed else None}


def load_worker_state(state: dict[str, Any], teacher: torch.nn.Module) -> int:
    """Restore the teacher (when saved) and return the step counter."""
    if state.get("teacher") is not None:
        load_local_shards_(teacher, state["teacher"])
    return int(state["step"])


class DriverState:
    """A mapping-held driver state (e.g. ``{"baseline_length": 123.0}``) as a state provider."""

    def __init__(self, values: dict):
        self.values = values

    def state_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.clear()
        self.values.update(state)
