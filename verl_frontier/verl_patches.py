"""Every change verl-frontier makes to verl's own functions, in one table, and the verl version they target.

The methods plug into verl through its registries (advantage estimators, distillation losses, agent loops:
see :mod:`verl_frontier.registration`) wherever verl has one. Where it has none, a method wraps a verl function
(lazily, when verl imports its module: ``verl_frontier_hooks.when_imported``); :data:`PATCHES` lists each wrap:
the verl symbol, the owner, why, and the function that installs it. The CPU port's own changes to verl are
in ``verl_cpu/patches.py``.

Order. Wraps of the same symbol are installed in :data:`PATCHES` order, so the first is the innermost and the
last the outermost (it runs first). The order follows from the import order of the plugin modules
(``verl_frontier.plugin.METHOD_PLUGINS``); ``tests/test_verl_patches.py`` checks that the installed chains
match this table and that stacked wraps all run.

Version policy (one for every wrap): the wraps are written against verl :data:`SUPPORTED_VERL_VERSION`. With
any other installed verl, :func:`verl_supported` returns False and the owner installs none of its wraps; it
logs one warning naming them. Registrations still happen; a method that needs a skipped wrap then fails on
first use or in its config check, and ``frontier check`` reports the mismatch (the config-validation hook is
one of the skipped wraps, so the registration check fails too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("verl_frontier")

#: the verl release every wrap below was written and tested against
SUPPORTED_VERL_VERSION = "0.9.1"


@dataclass(frozen=True)
class VerlPatch:
    """One wrap of a verl symbol ``module:qualname``."""

    module: str
    qualname: str
    owner: str
    why: str
    #: ``module:function`` that installs the wrap (called with the imported verl module or class)
    installed_by: str
    #: the verl version the wrap was checked against
    verl: str = SUPPORTED_VERL_VERSION

    @property
    def target(self) -> str:
        return f"{self.module}:{self.qualname}"


_RT = "verl.trainer.ppo.ray_trainer"  # the legacy trainer (trainer.use_v1=false)
_V1 = "verl.trainer.ppo.v1.trainer_base"  # the v1 trainer
_V1U = "verl.trainer.ppo.v1.utils"
_WORKERS = "verl.workers.engine_workers"
_LOOP = "verl.experimental.agent_loop.agent_loop"

#: every wrap, in installation order (per symbol: innermost first)
PATCHES: tuple[VerlPatch, ...] = (
    VerlPatch(_RT, "RayPPOTrainer._get_gen_batch", "driver_hooks",
              "record the training step (legacy) for step-dependent estimators (Paced's two-stage schedule)",
              "verl_frontier.driver_hooks:_hook_legacy"),
    VerlPatch(_RT, "RayPPOTrainer._update_actor", "driver_hooks",
              "merge the metrics estimators logged into the actor output's metrics (legacy)",
              "verl_frontier.driver_hooks:_hook_legacy"),
    VerlPatch(_V1, "PPOTrainer._compute_advantage", "driver_hooks",
              "record the step and merge estimator metrics into the step's metrics (v1)",
              "verl_frontier.driver_hooks:_hook_v1"),
    VerlPatch(_LOOP, "AgentLoopWorker.generate_sequences", "paced",
              "announce each complete uid group to the zero-weight gate (legacy agent-loop worker)",
              "verl_frontier.paced.verl_plugin:_hook_agent_loop"),
    VerlPatch(_LOOP, "AgentLoopWorker._compute_teacher_logprobs", "paced",
              "skip the teacher query for rollouts of zero-weight groups (both trainers)",
              "verl_frontier.paced.verl_plugin:_hook_agent_loop"),
    VerlPatch("verl.trainer.ppo.v1.agent_loop_tq", "AgentLoopWorkerTQ._run_prompt", "paced",
              "announce the prompt's uid group to the zero-weight gate (v1 agent-loop worker)",
              "verl_frontier.paced.verl_plugin:_hook_agent_loop_tq"),
    VerlPatch(_RT, "RayPPOTrainer._update_actor", "paced",
              "drop zero-weight groups before the actor's backward pass (legacy); outside driver_hooks' wrap, "
              "so the metrics it logs reach the step",
              "verl_frontier.paced.verl_plugin:_hook_ray_trainer"),
    VerlPatch("verl.trainer.distillation.losses", "compute_topk_loss", "paced",
              "route the paced_*_topk loss modes to forward KL, reverse KL and JSD on the teacher's top-k "
              "(verl's processor is forward KL only)",
              "verl_frontier.paced.verl_plugin:_register"),
    VerlPatch("verl.trainer.distillation.losses", "compute_topk_loss", "essence",
              "route essence_kd_topk to kd.topk's forward KL (0 where a teacher log-prob is -inf, where verl's "
              "gives NaN); outside Paced's wrap, each passes the other's loss modes through",
              "verl_frontier.essence.verl_plugin:_register"),
    VerlPatch(_RT, "compute_advantage", "ace",
              "run the base estimator, then modulate its advantages with the log-probs verl does not pass to "
              "estimators",
              "verl_frontier.ace.verl_plugin:_hook_ray_trainer"),
    VerlPatch(_V1U, "compute_advantage", "ace",
              "v1.utils' binding of ray_trainer.compute_advantage, re-pointed at the wrap above",
              "verl_frontier.ace.verl_plugin:_hook_v1_utils"),
    VerlPatch(_V1U, "compute_advantage_for_multi_trajectories", "ace",
              "the same ACE dispatch for the v1 trainer's advantage function",
              "verl_frontier.ace.verl_plugin:_hook_v1_utils"),
    VerlPatch(_V1, "compute_advantage_for_multi_trajectories", "ace",
              "trainer_base's binding of the v1 function, re-pointed at the wrap above",
              "verl_frontier.ace.verl_plugin:_hook_v1_trainer_base"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.init_model", "opsdc",
              "after verl builds the models: the colocated ref model becomes the teacher, the OPSDC loss is set",
              "verl_frontier.opsdc.verl_plugin:_hook_workers"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.update_actor", "opsdc",
              "set verl's top-k / distillation-only flags, refresh the teacher every M steps, add its metrics",
              "verl_frontier.opsdc.verl_plugin:_hook_workers"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.init_model", "essence",
              "read actor_rollout_ref.essence in each actor worker (the loss's CE weight); outside OPSDC's wrap",
              "verl_frontier.essence.verl_plugin:_hook_workers"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.update_actor", "essence",
              "clear distillation_only so the engine computes the CE term's log-probs; outside OPSDC's wrap, so "
              "OPSDC's flags win when both are on",
              "verl_frontier.essence.verl_plugin:_hook_workers"),
    VerlPatch(_LOOP, "AgentLoopManager.generate_sequences", "gkd",
              "assign each training row on-policy or teacher replay (GKD lambda, cold start) and log the share "
              "(legacy; driver)",
              "verl_frontier.gkd.verl_plugin:_hook_agent_loop"),
    VerlPatch("verl.trainer.ppo.v1.agent_loop_tq", "AgentLoopManagerTQ.generate_sequences", "gkd",
              "assign each training row on-policy or teacher replay (GKD lambda, cold start) and log the share "
              "(v1; driver)",
              "verl_frontier.gkd.verl_plugin:_hook_agent_loop_tq"),
    VerlPatch(_RT, "RayPPOTrainer._save_checkpoint", "method_state",
              "save the methods' driver state next to verl's checkpoint (legacy)",
              "verl_frontier.method_state:_wrap_trainer"),
    VerlPatch(_RT, "RayPPOTrainer._load_checkpoint", "method_state",
              "restore the methods' driver state on resume (legacy)",
              "verl_frontier.method_state:_wrap_trainer"),
    VerlPatch(_V1, "PPOTrainer._save_checkpoint", "method_state",
              "save the methods' driver state next to verl's checkpoint (v1)",
              "verl_frontier.method_state:_wrap_trainer"),
    VerlPatch(_V1, "PPOTrainer._load_checkpoint", "method_state",
              "restore the methods' driver state on resume (v1)",
              "verl_frontier.method_state:_wrap_trainer"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.save_checkpoint", "method_state",
              "save the methods' worker state (e.g. OPSDC's teacher) with the actor's checkpoint",
              "verl_frontier.method_state:_hook_workers"),
    VerlPatch(_WORKERS, "ActorRolloutRefWorker.load_checkpoint", "method_state",
              "restore the methods' worker state before verl's load (which may delete the folder)",
              "verl_frontier.method_state:_hook_workers"),
    VerlPatch("verl.utils.config", "validate_config", "validation",
              "run verl-frontier's config checks (driver, before Ray) first; also re-bound into the verl "
              "modules that imported it by name (verl.trainer.main_ppo)",
              "verl_frontier.validation:install_validation_hook"),
)  # fmt: skip


def installed_verl_version() -> str | None:
    """The installed verl distribution's version (without importing verl), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verl")
    except PackageNotFoundError:
        return None


_warned: set[str] = set()


def verl_supported(owner: str) -> bool:
    """The version policy: True when the installed verl is :data:`SUPPORTED_VERL_VERSION`; otherwise log (once
    per owner) which of ``owner``'s wraps are not installed and return False."""
    installed = installed_verl_version()
    if installed == SUPPORTED_VERL_VERSION:
        return True
    if owner not in _warned:
        _warned.add(owner)
        skipped = ", ".join(p.target for p in PATCHES if p.owner == owner) or "none"
        logger.warning(
            "verl-frontier: %s's changes to verl are written for verl %s, found %s; not installed: %s",
            owner,
            SUPPORTED_VERL_VERSION,
            installed,
            skipped,
        )
    return False


def wrap_methods(owner, makers: dict[str, Callable], *, marker: str) -> None:
    """Replace ``owner.<name>`` with ``make(original)`` for each ``name: make`` of ``makers``, in order, once per
    ``marker`` (:func:`verl_frontier_hooks.wrap_once`): one owner's wraps of one verl class or module."""
    from verl_frontier_hooks import wrap_once

    for name, make in makers.items():
        wrap_once(owner, name, make, marker=marker)


def patches_of(module: str, qualname: str) -> list[VerlPatch]:
    """The wraps of one symbol, innermost first."""
    return [p for p in PATCHES if p.module == module and p.qualname == qualname]


def format_table() -> str:
    """The table as text, one wrap per line (``frontier check``)."""
    installed = installed_verl_version()
    state = "installed" if installed == SUPPORTED_VERL_VERSION else "NOT installed (version policy)"
    lines = [f"verl wraps (checked against verl {SUPPORTED_VERL_VERSION}; verl {installed} here: {state}):"]
    width = max(len(p.target) for p in PATCHES)
    owners = max(len(p.owner) for p in PATCHES)
    for p in PATCHES:
        lines.append(f"  {p.target:<{width}}  {p.owner:<{owners}}  {p.why}")
    return "\n".join(lines)
