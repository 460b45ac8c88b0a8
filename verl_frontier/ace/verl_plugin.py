"""verl 0.9.1 glue for ACE. The math is in :mod:`verl_frontier.ace.advantage`; this module moves tensors.

Selecting ACE::

    algorithm.adv_estimator=ace  +algorithm.ace.base_estimator=grpo  +algorithm.ace.alpha=1.0

How the log-probs reach the estimator (the design choice)
---------------------------------------------------------
verl calls a registered estimator as ``fn(token_level_rewards, response_mask, index, config)``: no
``old_log_probs``, no ``ref_log_prob``. Both trainers, however, hold them in a ``DataProto`` right where the
advantage is computed, and both go through one module-level function of ``verl.trainer.ppo.ray_trainer``:

* legacy (``trainer.use_v1=false``): ``RayPPOTrainer.fit`` calls ``ray_trainer.compute_advantage(batch, ...)``
  with ``batch.batch`` holding ``old_log_probs`` and ``ref_log_prob``;
* v1: ``PPOTrainer._compute_advantage`` fetches ``old_log_probs``/``ref_log_prob`` from TransferQueue into a
  ``DataProto`` and calls ``v1.utils.compute_advantage_for_multi_trajectories`` (which, for non-``grpo``
  names, delegates to the ``compute_advantage`` it bound at import).

So ACE wraps those two functions (lazily, when verl imports them; the bound names in ``v1.utils`` and
``v1.trainer_base`` are re-pointed). For ``adv_estimator == "ace"`` the wrapper runs the *original* function
with the base estimator's name (so every base keeps verl's own code path: grpo's special case, v1's
multi-trajectory session broadcast for grpo, gdpo/OTB extra inputs, ...) and then modulates
``data.batch["advantages"]`` in place from ``old_log_probs``, ``ref_log_prob`` and ``response_mask``.
Any other estimator passes through untouched. One hook covers both trainers, needs no trainer subclass
(``register_trainer`` would cover v1 only), and α = 0 returns the base advantages bit for bit.
The advantages are scaled in place (no 65,536 x T copy); verl's outcome estimators return ``returns`` as the
same tensor, so it follows (only a critic reads ``returns``; ACE runs without one).

``ace`` is also registered in verl's ``ADV_ESTIMATOR_REGISTRY`` (the name must be known to verl, and the
function works when called with ``old_log_probs=``/``ref_log_prob=``); called without them it raises.

Metrics (``ace/*``, see :func:`verl_frontier.ace.advantage.ace_metrics`) go through
:mod:`verl_frontier.driver_hooks` into the step's ``metrics`` (v1: ``_compute_advantage``; legacy: the actor
output's metrics), hence into every configured logger.

Config checks (driver, before Ray): ``algorithm.ace`` schema; ACE needs the reference policy
(``actor_rollout_ref.actor.use_kl_loss=true`` or ``algorithm.use_kl_in_reward=true``); the base estimator
must be registered and be a group/outcome estimator.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os

import torch

from verl_frontier import driver_hooks
from verl_frontier.ace.advantage import AceConfig, ace_advantages, ace_metrics
from verl_frontier.validation import config_error, register_check, register_schema, select
from verl_frontier.verl_patches import verl_supported
from verl_frontier_hooks import when_imported, wrap_once

logger = logging.getLogger("verl_frontier")

ESTIMATOR_NAME = "ace"
#: base estimators ACE cannot wrap: gae needs a critic and is not a group estimator; remax/gdpo are
#: special-cased in verl's trainer on ``algorithm.adv_estimator`` itself (baseline generation, reward keys).
UNSUPPORTED_BASES = ("ace", "gae", "remax", "gdpo")
REF_POLICY_KEY = "actor_rollout_ref.actor.use_kl_loss"

EXPECTED_REGISTRATIONS = [("adv_est", ESTIMATOR_NAME)]

_MARK = "_verl_frontier_ace"
_step_counter = itertools.count(1)


def ace_settings(algorithm_config) -> AceConfig:
    """``algorithm.ace`` of verl's ``config.algorithm`` (a DictConfig in both trainers; a dataclass is
    tolerated too)."""
    if algorithm_config is None:
        return AceConfig()
    if hasattr(algorithm_config, "get"):
        section = algorithm_config.get("ace", None)
    else:
        section = getattr(algorithm_config, "ace", None)
    return AceConfig.from_mapping(section)


def _is_ace(name) -> bool:
    return str(getattr(name, "value", name)) == ESTIMATOR_NAME


# ---------------------------------------------------------------------------------------------------------
# the registered estimator (direct use: needs the log-probs passed explicitly)
# ---------------------------------------------------------------------------------------------------------


def compute_ace_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index=None,
    config=None,
    old_log_probs: torch.Tensor | None = None,
    ref_log_prob: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ACE through verl's estimator interface.

    Args:
        token_level_rewards, response_mask: (bs, response_length).
        index: (bs,) prompt ``uid`` of each rollout.
        config: verl's ``algorithm`` config (reads ``algorithm.ace`` and ``norm_adv_by_std_in_grpo``).
        old_log_probs, ref_log_prob: (bs, response_length); verl's trainers do not pass them, the
            ``compute_advantage`` hook of this module supplies them.
        kwargs: forwarded to the base estimator (e.g. ``reward_baselines``).

    Returns:
        (advantages, returns): ACE advantages; the base estimator's returns.
    """
    if old_log_probs is None or ref_log_prob is None:
        raise ValueError(
            "algorithm.adv_estimator=ace needs old_log_probs and ref_log_prob; verl's compute_advantage does not "
            "pass them to estimators: verl_frontier.ace.verl_plugin supplies them through its compute_advantage "
            "hook (import verl with the verl_frontier plugin loaded), or pass them explicitly"
        )
    from verl.trainer.ppo import core_algos

    settings = ace_settings(config)
    base_fn = core_algos.get_adv_estimator_fn(settings.base_estimator)
    base_kwargs = dict(kwargs, token_level_rewards=token_level_rewards, response_mask=response_mask, config=config)
    if index is not None:
        base_kwargs["index"] = index
    if settings.base_estimator in ("grpo", "grpo_vectorized"):  # ray_trainer passes it explicitly for grpo
        base_kwargs["norm_adv_by_std_in_grpo"] = bool(config.get("norm_adv_by_std_in_grpo", True)) if config else True
    base_advantages, returns = base_fn(**base_kwargs)
    result = ace_advantages(
        base_advantages, old_log_probs, ref_log_prob, response_mask, settings.alpha, settings.modulation,
        settings.reduction,
    )  # fmt: skip
    return result.advantages, returns


# ---------------------------------------------------------------------------------------------------------
# the hook: modulate the advantages of a DataProto after the base estimator ran
# ---------------------------------------------------------------------------------------------------------


def apply_ace(data, config, step: int | None = None):
    """Modulate ``data.batch["advantages"]`` (written by the base estimator) in place; log metrics; dump.

    ``data`` is verl's ``DataProto`` holding ``advantages``, ``response_mask``, ``old_log_probs``,
    ``ref_log_prob`` (all (bs, response_length)). Returns ``data``.
    """
    settings = ace_settings(config)
    batch = data.batch
    for key in ("old_log_probs", "ref_log_prob"):
        if key not in batch.keys():
            hint = (
                f"enable the reference policy: {REF_POLICY_KEY}=true (or algorithm.use_kl_in_reward=true)"
                if key == "ref_log_prob"
                else "verl did not compute the actor's log-probs of the rollouts"
            )
            raise RuntimeError(f"algorithm.adv_estimator=ace needs {key!r} in the batch: {hint}")
    base = batch["advantages"]
    dump = bool(settings.dump_dir)
    base_copy = base.clone() if dump else None  # the tensor itself is scaled in place below
    result = ace_advantages(
        base, batch["old_log_probs"], batch["ref_log_prob"], batch["response_mask"],
        settings.alpha, settings.modulation, settings.reduction, inplace=True,
    )  # fmt: skip
    batch["advantages"] = result.advantages
    metrics = ace_metrics(result)
    metrics["ace/alpha"] = settings.alpha
    driver_hooks.log_step_metrics(metrics)
    if dump:
        step = step if step is not None else driver_hooks.current_step()
        step = step if step is not None else next(_step_counter)
        _dump(settings.dump_dir, step, data, base_copy, result)
    return data


def _dump(dump_dir: str, step: int, data, base: torch.Tensor, result) -> None:
    os.makedirs(dump_dir, exist_ok=True)
    batch = data.batch
    record = {
        "step": int(step),
        "token_level_rewards": batch["token_level_rewards"].detach().cpu(),
        "response_mask": batch["response_mask"].detach().cpu(),
        "old_log_probs": batch["old_log_probs"].detach().cpu(),
        "ref_log_prob": batch["ref_log_prob"].detach().cpu(),
        "uid": [str(u) for u in data.non_tensor_batch.get("uid", [])],
        "base_advantages": base.detach().cpu(),
        "advantages": result.advantages.detach().cpu(),
        "c": result.c.detach().cpu(),
        "factor": result.factor.detach().cpu(),
        "wrong": result.wrong.detach().cpu(),
    }
    torch.save(record, os.path.join(dump_dir, f"step_{int(step)}.pt"))


def _bind(signature: inspect.Signature, args, kwargs) -> dict:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _make_ace_dispatch(original):
    """Wrap one of verl's advantage-computation functions (same keyword interface in both trainers): for
    ``adv_estimator=ace`` run it with the base estimator, then modulate the result."""
    signature = inspect.signature(original)

    def dispatch(*args, **kwargs):
        arguments = _bind(signature, args, kwargs)
        if not _is_ace(arguments["adv_estimator"]):
            return original(**arguments)
        config = arguments.get("config")
        arguments["adv_estimator"] = ace_settings(config).base_estimator
        return apply_ace(original(**arguments), config)

    dispatch.__name__ = original.__name__
    return dispatch


def _wrap(owner, name: str, make) -> object:
    return wrap_once(owner, name, make, marker=_MARK)


def _rebind(module, name: str, wrapped) -> None:
    """Point ``module.<name>`` (a ``from x import name`` binding) at ``wrapped`` if it holds the original."""
    current = getattr(module, name, None)
    if current is not None and current is not wrapped and not getattr(current, _MARK, False):
        if getattr(wrapped, "__wrapped__", None) is current:
            setattr(module, name, wrapped)


def _hook_ray_trainer(module) -> None:
    _wrap(module, "compute_advantage", _make_ace_dispatch)


def _hook_v1_utils(module) -> None:
    import verl.trainer.ppo.ray_trainer as ray_trainer  # already imported by v1.utils

    _hook_ray_trainer(ray_trainer)
    _rebind(module, "compute_advantage", ray_trainer.compute_advantage)
    _wrap(module, "compute_advantage_for_multi_trajectories", _make_ace_dispatch)


def _hook_v1_trainer_base(module) -> None:
    import verl.trainer.ppo.v1.utils as v1_utils

    _hook_v1_utils(v1_utils)
    _rebind(module, "compute_advantage_for_multi_trajectories", v1_utils.compute_advantage_for_multi_trajectories)


# ---------------------------------------------------------------------------------------------------------
# config checks (driver, before Ray)
# ---------------------------------------------------------------------------------------------------------

register_schema("algorithm.ace", AceConfig)


@register_check(name="ace")
def check_ace(config) -> None:
    """ACE needs the reference policy's log-probs and a registered group base estimator."""
    if not _is_ace(select(config, "algorithm.adv_estimator")):
        return
    use_kl_loss = bool(select(config, REF_POLICY_KEY, False))
    use_kl_in_reward = bool(select(config, "algorithm.use_kl_in_reward", False))
    if not (use_kl_loss or use_kl_in_reward):
        raise config_error(
            REF_POLICY_KEY,
            "algorithm.adv_estimator=ace needs the reference policy's log-probs (ref_log_prob): set "
            f"{REF_POLICY_KEY}=true (the paper: kl_loss_coef=0.001) or algorithm.use_kl_in_reward=true",
            use_kl_loss,
        )
    base = select(config, "algorithm.ace.base_estimator", AceConfig.base_estimator)
    if base in UNSUPPORTED_BASES:
        raise config_error(
            "algorithm.ace.base_estimator",
            f"ACE modulates a group/outcome estimator; {', '.join(UNSUPPORTED_BASES)} are not supported",
            base,
        )
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    if base not in ADV_ESTIMATOR_REGISTRY:
        known = ", ".join(sorted(k for k in ADV_ESTIMATOR_REGISTRY if k not in UNSUPPORTED_BASES))
        raise config_error("algorithm.ace.base_estimator", f"not a registered advantage estimator ({known})", base)


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------


def _register() -> None:
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not compute_ace_advantage:
        register_adv_est(ESTIMATOR_NAME)(compute_ace_advantage)


def install_hooks() -> None:
    """Wrap verl's advantage functions when verl imports them (now, if already imported). Idempotent.

    The wraps target verl 0.9.1's call sites; on another version they are skipped with a warning (the
    registered ``ace`` estimator then fails on first use, naming the missing log-probs). See verl_patches.
    """
    if not verl_supported("ace"):
        return
    when_imported("verl.trainer.ppo.ray_trainer", _hook_ray_trainer)
    when_imported("verl.trainer.ppo.v1.utils", _hook_v1_utils)
    when_imported("verl.trainer.ppo.v1.trainer_base", _hook_v1_trainer_base)


_register()
install_hooks()
driver_hooks.install()
