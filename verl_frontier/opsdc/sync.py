"""OPSDC teacher refresh: theta_bar <- theta every M steps (arXiv 2603.05433; the paper's code copies after the
step when ``global_steps % M == 0``); M = 0 keeps the initial teacher forever.

The copy is an in-place parameter copy between two live modules (no reload from disk). It works on plain
tensors and on FSDP2 DTensors with identical sharding (each rank copies its local shard). Pure torch.
"""

from __future__ import annotations

import torch


def should_sync(step: int, every: int) -> bool:
    """True after training step ``step`` (1-based) when the teacher must be refreshed."""
    if every < 0:
        raise ValueError(f"opsdc: teacher_update_freq must be >= 0 (got {every})")
    return every > 0 and step > 0 and step % every == 0


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def named_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters by name, with FSDP/compile wrapper prefixes removed."""
    out = {}
    for name, p in module.named_parameters():
        for prefix in ("_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module."):
            name = name.replace(prefix, "")
        out[name] = p
    return out


@torch.no_grad()
def copy_weights_(teacher: torch.nn.Module, student: torch.nn.Module) -> int:
    """Copy every student parameter into the teacher's parameter of the same name (cast to the teacher's
    dtype/device). Raises on a name or shape mismatch. Returns the number of tensors copied."""
    t_params, s_params = named_parameters(teacher), named_parameters(student)
    if set(t_params) != set(s_params):
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise RuntimeError(f"opsdc: teacher and student parameter names differ, e.g. {missing}")
    for name, t in t_params.items():
        src, dst = _local(s_params[name].detach()), _local(t.data)
        if src.shape != dst.shape:
            raise RuntimeError(f"opsdc: shard shape mismatch for {name}: {tuple(src.shape)} vs {tuple(dst.shape)}")
        dst.copy_(src.to(device=dst.device, dtype=dst.dtype))
    return len(t_params)


@torch.no_grad()
def weight_checksum(module: torch.nn.Module) -> float:
    """sum over (local) parameters of sum(p) + sum(|p|)/2 in float64: a cheap fingerprint of the weights."""
    total = torch.zeros((), dtype=torch.float64)
    for p in module.parameters():
        x = _local(p.detach()).double()
        total += (x.sum() + 0.5 * x.abs().sum()).cpu()
    return float(total)


@torch.no_grad()
def max_abs_diff(teacher: torch.nn.Module, student: torch.nn.Module) -> float:
    """max |theta_bar - theta| over (local) parameters, the student cast to the teacher's dtype."""
    t_params, s_params = named_parameters(teacher), named_parameters(student)
    worst = 0.0
    for name, t in t_params.items():
        dst = _local(t.detach())
        src = _local(s_params[name].detach()).to(device=dst.device, dtype=dst.dtype)
        if dst.numel():
            worst = max(worst, float((dst.float() - src.float()).abs().max()))
    return worst
