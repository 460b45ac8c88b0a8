"""ASG / AGLD / ASGLD: the update rule against a slow per-coordinate reference, saddle escape vs gradient
descent across dimensions, state-dict round trips, bad settings, and verl's own optimizer builder."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from verl_frontier.asgld import AGLD, ASG, ASGLD
from verl_frontier.asgld.saddle import escape_iterations, strict_saddle


def slow_reference(cls, x0, grads, lr, noise_scale, noise_threshold, rho, eps, weight_decay, seed):
    """Python-float loop over coordinates; the noise is drawn from the same seeded generator sequence."""
    x = [float(v) for v in x0]
    square = [0.0] * len(x)
    generator = torch.Generator().manual_seed(seed)
    inject = cls is not ASG
    for t, g in enumerate(grads, start=1):
        g = [float(v) for v in g]
        rms = math.sqrt(sum(v * v for v in g) / len(g))
        sigma = noise_scale * math.sqrt(lr) * min(1.0, noise_threshold / (rms + eps)) if inject else 0.0
        noise = torch.randn(len(x), generator=generator).tolist() if sigma > 0 else [0.0] * len(x)
        for i in range(len(x)):
            x[i] *= 1.0 - lr * weight_decay
            if cls is AGLD:
                x[i] -= lr * g[i]
            else:
                square[i] = rho * square[i] + (1 - rho) * g[i] * g[i]
                x[i] -= lr * g[i] / (math.sqrt(square[i] / (1 - rho**t)) + eps)
            x[i] += sigma * noise[i]
    return x


@pytest.mark.parametrize("cls", [ASG, AGLD, ASGLD])
def test_update_rule_matches_slow_reference(cls):
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(7, generator=gen, dtype=torch.float64)
    grads = [torch.randn(7, generator=gen, dtype=torch.float64) * scale for scale in (1e-4, 2.0, 1e-3, 0.5)]
    settings = dict(lr=0.05, noise_scale=0.3, noise_threshold=1e-2, rho=0.9, eps=1e-8, weight_decay=0.1, seed=11)
    param = x0.clone().requires_grad_(True)
    optimizer = cls([param], **settings)
    for g in grads:
        param.grad = g.clone()
        optimizer.step()
    expected = slow_reference(cls, x0, grads, **settings)
    torch.testing.assert_close(param.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_noise_adapts_to_the_gradient():
    opt = ASGLD([torch.zeros(4, requires_grad=True)], lr=0.04, noise_scale=0.5, noise_threshold=0.1)
    full = 0.5 * math.sqrt(0.04)
    assert opt.noise_std([torch.zeros(4)], 0.04, 0.5, 0.1, 1e-8) == pytest.approx(full)  # at a saddle: full noise
    assert opt.noise_std([torch.full((4,), 10.0)], 0.04, 0.5, 0.1, 1e-8) == pytest.approx(full * 0.01, rel=1e-6)
    asg = ASG([torch.zeros(4, requires_grad=True)], noise_scale=0.5)
    assert asg.param_groups[0]["noise_scale"] == 0.0  # ASG never injects noise


def test_saddle_escape_is_nearly_dimension_free_and_beats_gradient_descent():
    """From the exact saddle, gradient descent never moves (zero gradient); from a 1e-6 nudge along the escape
    direction it needs ~log(1e6)/(2·lr) steps. AGLD / ASGLD escape from the exact saddle in far fewer
    iterations, about the same for d = 10 and d = 10^4 (the paper's O(log d) claim)."""
    rows = {}
    for dim in (10, 100, 1000, 10000):
        rows[dim] = {
            "gd_exact": escape_iterations(lambda p: torch.optim.SGD(p, lr=0.05), dim, max_iterations=1000),
            "gd_nudged": escape_iterations(lambda p: torch.optim.SGD(p, lr=0.05), dim, start_offset=1e-6),
            "agld": escape_iterations(lambda p: AGLD(p, lr=0.05, noise_scale=0.01, noise_threshold=0.01), dim),
            "asgld": escape_iterations(lambda p: ASGLD(p, lr=0.01, noise_scale=0.01, noise_threshold=0.01), dim),
            "asg": escape_iterations(lambda p: ASG(p, lr=0.01), dim, gradient_noise=0.01),
        }
    print("\nd       GD(exact)  GD(nudged)  AGLD  ASGLD  ASG(stochastic g)")
    for dim, row in rows.items():
        print(
            f"{dim:<7} {row['gd_exact']!s:<10} {row['gd_nudged']!s:<11} {row['agld']:<5} {row['asgld']:<6} {row['asg']}"
        )
    for row in rows.values():
        assert row["gd_exact"] is None
        assert row["gd_nudged"] is not None
        for name in ("agld", "asgld", "asg"):
            assert row[name] is not None and row[name] < row["gd_nudged"] / 1.5, row
    for name in ("agld", "asgld", "asg"):
        assert rows[10000][name] <= 3 * rows[10][name], (name, rows)


@pytest.mark.parametrize("cls", [ASG, AGLD, ASGLD])
def test_state_dict_round_trip_continues_identically(cls):
    def run(optimizer, param, steps, start):
        for k in range(start, start + steps):
            optimizer.zero_grad()
            (strict_saddle(param) + 0.01 * k * param.sum()).backward()
            optimizer.step()

    param = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    optimizer = cls([param], lr=0.05, noise_scale=0.1, seed=4)
    run(optimizer, param, 3, 0)
    saved_param, saved_state = param.detach().clone(), copy.deepcopy(optimizer.state_dict())  # as torch.save
    run(optimizer, param, 3, 3)

    restored = saved_param.clone().requires_grad_(True)
    other = cls([restored], lr=0.05, noise_scale=0.1, seed=999)  # the seed comes back from the state dict
    other.load_state_dict(saved_state)
    run(other, restored, 3, 3)
    assert torch.equal(restored.detach(), param.detach())


@pytest.mark.parametrize(
    "kwargs, name",
    [({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"), ({"noise_scale": -0.1}, "noise_scale"), ({"rho": 1.0}, "rho"),
     ({"eps": 0.0}, "eps"), ({"weight_decay": -1.0}, "weight_decay"), ({"noise_threshold": 0.0}, "noise_threshold"),
     ({"lr": float("nan")}, "lr")],
)  # fmt: skip
def test_bad_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ASGLD([torch.zeros(2, requires_grad=True)], **kwargs)


def test_verl_builds_it_from_its_own_optimizer_config():
    from verl.workers.config.optimizer import FSDPOptimizerConfig, build_optimizer

    config = FSDPOptimizerConfig(
        lr=1e-3,
        optimizer="ASGLD",
        optimizer_impl="verl_frontier.asgld.optimizers",
        override_optimizer_config={"noise_scale": 0.02, "seed": 5},
    )
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), config)
    assert isinstance(optimizer, ASGLD)
    assert optimizer.param_groups[0]["noise_scale"] == 0.02 and optimizer.param_groups[0]["lr"] == 1e-3
    model(torch.ones(1, 3)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("actor_rollout_ref.actor.optim.override_optimizer_config.noise_scale=-1",
         r"^actor_rollout_ref\.actor\.optim\.override_optimizer_config\.noise_scale: ASGLD: noise_scale must be"),
        ("actor_rollout_ref.actor.optim.lr=0", r"^actor_rollout_ref\.actor\.optim\.lr: ASGLD: lr must be"),
        ("actor_rollout_ref.actor.optim.optimizer=Adam",
         r"^actor_rollout_ref\.actor\.optim\.optimizer: not an optimizer"),
        ("+actor_rollout_ref.actor.optim.override_optimizer_config.bogus=1",
         r"^actor_rollout_ref\.actor\.optim\.override_optimizer_config: .*unexpected keyword argument 'bogus'"),
    ],
)  # fmt: skip
def test_bad_recipe_settings_fail_before_ray_naming_the_key(data_overrides, override, pattern):
    from verl_frontier import recipes as rc
    from verl_frontier.validation import FrontierConfigError, validate_frontier_config

    good = rc.compose_recipe("asgld_grpo", list(data_overrides))
    validate_frontier_config(good, skip=("model_paths",))
    assert good.actor_rollout_ref.actor.optim.optimizer == "ASGLD"
    with pytest.raises(FrontierConfigError, match=pattern):
        validate_frontier_config(rc.compose_recipe("asgld_grpo", [*data_overrides, override]), skip=("model_paths",))


@pytest.mark.parametrize("cls", [AGLD, ASGLD])
def test_fsdp2_dtensor_parameters(cls, tmp_path):
    """verl's FSDP2 actor hands the optimizer DTensor parameters and gradients: noise goes to the local shard."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        param = torch.nn.Parameter(distribute_tensor(torch.zeros(6, 3), mesh, [Shard(0)]))
        param.grad = distribute_tensor(torch.zeros(6, 3), mesh, [Shard(0)])  # at a saddle: full noise
        optimizer = cls([param], lr=0.01, noise_scale=1.0, seed=3)
        optimizer.step()
        moved = param.detach().to_local()
        assert type(param.data).__name__ == "DTensor" and bool((moved != 0).all())
        plain = torch.zeros(6, 3, requires_grad=True)
        plain.grad = torch.zeros(6, 3)
        cls([plain], lr=0.01, noise_scale=1.0, seed=3).step()
        torch.testing.assert_close(moved, plain.detach())  # rank 0 draws the same stream as a plain tensor
    finally:
        dist.destroy_process_group()
