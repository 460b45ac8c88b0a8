"""verl glue for the ASGLD optimizers: nothing to register, verl builds them itself.

verl 0.9.1's FSDP optimizer builder (``verl.workers.config.optimizer.build_optimizer``) imports
``<optim.optimizer_impl>.<optim.optimizer>`` and calls it with ``lr``, ``weight_decay`` and
``optim.override_optimizer_config``, so a recipe selects ASGLD with::

    actor_rollout_ref.actor.optim.optimizer_impl=verl_frontier.asgld.optimizers
    actor_rollout_ref.actor.optim.optimizer=ASGLD          # or ASG, AGLD
    +actor_rollout_ref.actor.optim.override_optimizer_config.noise_scale=1e-3

That call happens inside the actor worker after Ray and the models are up; this module only adds a driver-side
check that builds the chosen optimizer on a dummy parameter first, so a bad setting fails before Ray starts,
naming the key.
"""

from __future__ import annotations

from verl_frontier.validation import config_error, register_check, select

EXPECTED_REGISTRATIONS: list[tuple[str, str]] = []  # verl imports the classes by path; nothing to register
MODULE = "verl_frontier.asgld.optimizers"
ROLES = ("actor_rollout_ref.actor", "critic")


@register_check(name="asgld")
def check_asgld(config) -> None:
    for role in ROLES:
        optim = f"{role}.optim"
        if select(config, f"{optim}.optimizer_impl") != MODULE:
            continue
        import torch
        from omegaconf import OmegaConf

        from verl_frontier.asgld import optimizers

        name = select(config, f"{optim}.optimizer")
        cls = getattr(optimizers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, optimizers.AdaptiveLangevin)):
            raise config_error(f"{optim}.optimizer", f"not an optimizer of {MODULE}: use ASGLD, ASG or AGLD", name)
        extra = select(config, f"{optim}.override_optimizer_config") or {}
        extra = OmegaConf.to_container(extra) if OmegaConf.is_config(extra) else dict(extra)
        kwargs = {"lr": select(config, f"{optim}.lr"), "weight_decay": select(config, f"{optim}.weight_decay", 0.0)}
        try:
            cls([torch.zeros(1, requires_grad=True)], **kwargs, **extra)
        except (TypeError, ValueError) as exc:
            bad = str(exc).split(" ")[0]
            key = f"{optim}.{bad}" if bad in kwargs else f"{optim}.override_optimizer_config"
            key += f".{bad}" if bad in extra else ""
            raise config_error(key, f"{name}: {exc}") from None
