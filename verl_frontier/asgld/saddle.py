"""A strict-saddle test function and the iterations an optimizer needs to leave its saddle point. Pure torch.

    f(x) = Σ_i λ_i x_i² + ¼ Σ_i x_i⁴,   λ = (−1, 1, 1, ..., 1)

x = 0 is a strict saddle (Hessian diag(2λ): one negative eigenvalue); the minima are x = (±√2, 0, ..., 0) with
f = −1. "Escaped" means f(x) ≤ −½, i.e. at least half-way down from the saddle to the minimum.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ESCAPE_LEVEL = -0.5


def strict_saddle(x: torch.Tensor) -> torch.Tensor:
    """f(x) above, x: (d,) -> scalar."""
    curvature = torch.ones_like(x)
    curvature[0] = -1.0
    return (curvature * x * x).sum() + 0.25 * (x**4).sum()


def escape_iterations(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    dim: int,
    max_iterations: int = 5000,
    gradient_noise: float = 0.0,
    start_offset: float = 0.0,
    seed: int = 0,
) -> int | None:
    """Iterations until f(x) <= ESCAPE_LEVEL starting at the saddle x = 0 (+ ``start_offset`` on the escape
    direction), or None if not within ``max_iterations``. ``gradient_noise`` adds N(0, s²) to every gradient
    coordinate (a stochastic-gradient oracle, for ASG). float64 throughout."""
    x = torch.zeros(dim, dtype=torch.float64)
    x[0] = start_offset
    x.requires_grad_(True)
    optimizer = make_optimizer([x])
    generator = torch.Generator().manual_seed(seed)
    for iteration in range(1, max_iterations + 1):
        optimizer.zero_grad()
        strict_saddle(x).backward()
        if gradient_noise:
            x.grad.add_(torch.randn(dim, generator=generator, dtype=torch.float64), alpha=gradient_noise)
        optimizer.step()
        with torch.no_grad():
            if strict_saddle(x).item() <= ESCAPE_LEVEL:
                return iteration
    return None
