"""ASG, AGLD and ASGLD (Sang & Liu, arXiv 1805.09416) as ``torch.optim.Optimizer`` classes. Pure torch.

The update rule below is written from the paper's abstract: the defensible reading of "adaptive stochastic
gradient Langevin dynamics", not a transcription of the paper's equations:

    v_t     = ρ v_{t-1} + (1 − ρ) g_t²                                  (per-coordinate second moment)
    θ_{t+1} = θ_t − η · g_t / (√v̂_t + ε) + σ_t · ξ_t,   ξ_t ~ N(0, I)     (v̂_t = v_t / (1 − ρ^t))
    σ_t     = σ · √η · min(1, γ / (‖g_t‖ / √d + ε))                      (adaptive Langevin noise)

* the step is adaptively preconditioned (RMSProp-style) so a coordinate with a tiny gradient still moves at
  about η once its gradient has a consistent sign, which is what makes escape along a negative-curvature
  direction fast;
* the injected noise is scaled by the gradient: full strength σ√η where the RMS gradient is below γ (flat
  regions and saddle points, where gradient descent stalls) and shrinking as 1/‖g‖ where the landscape is
  steep, so it does not disturb descent. Per-coordinate noise of fixed size makes the escape time depend on
  log(1/σ), not on the dimension d: the paper's O(log d) escape.

The three variants of the paper's framework:

* :class:`ASG`   adaptive step, **no injected noise** (σ = 0); relies on the noise of stochastic gradients;
* :class:`AGLD`  adaptive Langevin noise on a **plain** (non-preconditioned) gradient step (meant for full
  gradients): θ_{t+1} = θ_t − η g_t + σ_t ξ_t;
* :class:`ASGLD` both: the adaptive step and the adaptive noise (the general case).

All accept ``weight_decay`` (decoupled, as AdamW) so verl's optimizer builder can construct them:
``actor_rollout_ref.actor.optim.optimizer_impl=verl_frontier.asgld.optimizers``, ``optim.optimizer=ASGLD``.
Noise uses a ``torch.Generator`` seeded by ``seed`` (state saved in ``state_dict``), so runs are reproducible.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (FSDP2 parameters and gradients), the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _global(value: torch.Tensor) -> torch.Tensor:
    """A reduction over a DTensor, gathered to every rank (``full_tensor``); plain tensors unchanged."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def _check(name: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> float:
    value = float(value)
    bad = (value <= low if low_open else value < low) or value > high or math.isnan(value)
    if bad:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return value


class AdaptiveLangevin(Optimizer):
    """The ASGLD framework (module docstring); ASG, AGLD and ASGLD fix ``precondition`` and the noise."""

    precondition: bool = True
    inject_noise: bool = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        noise_scale: float = 1e-2,
        noise_threshold: float = 1e-3,
        rho: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        seed: int = 0,
    ):
        defaults = {
            "lr": _check("lr", lr, 0.0, low_open=True),
            "noise_scale": _check("noise_scale", noise_scale, 0.0) if self.inject_noise else 0.0,
            "noise_threshold": _check("noise_threshold", noise_threshold, 0.0, low_open=True),
            "rho": _check("rho", rho, 0.0, 1.0 - 1e-12),
            "eps": _check("eps", eps, 0.0, low_open=True),
            "weight_decay": _check("weight_decay", weight_decay, 0.0),
        }
        super().__init__(params, defaults)
        self._seed = int(seed)
        self._generator: torch.Generator | None = None
        self._restored_generator_state: torch.Tensor | None = None

    def _noise_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            # one stream per rank: FSDP shards are disjoint coordinates, whose noise must be independent
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            self._generator = torch.Generator(device=device).manual_seed(self._seed + 1_000_003 * rank)
            if self._restored_generator_state is not None:
                self._generator.set_state(self._restored_generator_state)
                self._restored_generator_state = None
        return self._generator

    def noise_std(self, grads: list[torch.Tensor], lr: float, noise_scale: float, threshold: float, eps: float):
        """σ_t = σ √η min(1, γ / (‖g‖/√d + ε)) for one parameter group's gradients."""
        if noise_scale == 0.0 or not grads:
            return 0.0
        squares = sum(float(_global(g.double().pow(2).sum())) for g in grads)
        count = sum(g.numel() for g in grads)
        rms = math.sqrt(squares / max(count, 1))
        return noise_scale * math.sqrt(lr) * min(1.0, threshold / (rms + eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            sigma = self.noise_std(grads, lr, group["noise_scale"], group["noise_threshold"], eps)
            for p, g in zip(params, grads):
                if g.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if group["weight_decay"]:
                    p.mul_(1.0 - lr * group["weight_decay"])
                state = self.state[p]
                if self.precondition:
                    if not state:
                        state["step"] = 0
                        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] += 1
                    square_avg = state["square_avg"]
                    square_avg.mul_(rho).addcmul_(g, g, value=1.0 - rho)
                    denom = (square_avg / (1.0 - rho ** state["step"])).sqrt_().add_(eps)
                    p.addcdiv_(g, denom, value=-lr)
                else:
                    state["step"] = state.get("step", 0) + 1
                    p.add_(g, alpha=-lr)
                if sigma > 0.0:
                    local = _local(p)
                    noise = torch.randn(local.shape, generator=self._noise_generator(local.device), device=local.device)
                    local.add_(noise.to(local.dtype), alpha=sigma)
        return loss

    def state_dict(self):
        state = super().state_dict()
        state["noise_generator"] = None if self._generator is None else self._generator.get_state()
        state["noise_seed"] = self._seed
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        generator_state = state_dict.pop("noise_generator", None)
        self._seed = int(state_dict.pop("noise_seed", self._seed))
        super().load_state_dict(state_dict)
        self._generator = None  # rebuilt on the parameters' device at the next step, from the saved state
        self._restored_generator_state = generator_state


class ASGLD(AdaptiveLangevin):
    """Adaptive step and adaptive Langevin noise (the general case)."""


class ASG(AdaptiveLangevin):
    """Adaptive step, no injected noise (σ = 0): escapes saddles only through stochastic-gradient noise."""

    inject_noise = False


class AGLD(AdaptiveLangevin):
    """Plain gradient step plus adaptive Langevin noise (the full-gradient special case)."""

    precondition = False
