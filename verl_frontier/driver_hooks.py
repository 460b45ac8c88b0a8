"""What verl's advantage-estimator call does not pass: the training step, and a way to log metrics.

verl calls a registered advantage estimator as ``fn(token_level_rewards, response_mask, index, config)``
(``verl.trainer.ppo.ray_trainer.compute_advantage``), on the driver, once per training step, in both the
legacy trainer and the v1 trainer. A method whose estimator depends on the step (Paced's two-stage
schedule) or wants its own metrics in verl's tracking needs two more things, which this module provides
by wrapping (lazily, verl 0.9.1 only) two trainer methods on the driver:

* :func:`current_step` -- ``trainer.global_steps`` of the step being computed. Recorded by
  ``RayPPOTrainer._get_gen_batch`` (legacy; called at the start of every training step) and
  ``PPOTrainer._compute_advantage`` (v1; called once per step right before the estimator).
* :func:`log_step_metrics` -- metrics an estimator records while it runs; they are merged into the step's
  metrics dict (v1: the ``metrics`` argument of ``_compute_advantage``; legacy: the actor output's
  ``meta_info["metrics"]`` returned by ``_update_actor``), so they reach every configured logger.
* :func:`log_metrics_for_step` -- the same for metrics recorded earlier in a step, tagged with the step they
  belong to (GKD's row assignment, when the rollouts are dispatched); merged at the same two places.

Both are process-local: they are only meaningful in the driver (TaskRunner) process, which is where
verl runs advantage estimators.
"""

from __future__ import annotations

import logging
import threading

from verl_frontier.verl_patches import wrap_methods

logger = logging.getLogger("verl_frontier")

_lock = threading.Lock()
_pending_metrics: dict[str, float] = {}
_step: list[int | None] = [None]
_step_metrics: dict[int, dict[str, float]] = {}


def current_step() -> int | None:
    """The global training step verl is computing (1-based), or ``None`` outside a trainer."""
    return _step[0]


def set_current_step(step: int | None) -> None:
    _step[0] = None if step is None else int(step)


def log_step_metrics(metrics: dict[str, float]) -> None:
    """Queue metrics for the current step's record (later values for a key replace earlier ones)."""
    with _lock:
        _pending_metrics.update({key: float(value) for key, value in metrics.items()})


def pop_step_metrics() -> dict[str, float]:
    with _lock:
        out = dict(_pending_metrics)
        _pending_metrics.clear()
    return out


def log_metrics_for_step(step: int, metrics: dict[str, float]) -> None:
    """Queue metrics for training step ``step``, recorded before that step's merge point (e.g. when its rollouts
    are dispatched: the v1 trainer's advantage hook drops untagged metrics queued before it); merged into that
    step's record only."""
    with _lock:
        _step_metrics.setdefault(int(step), {}).update({key: float(value) for key, value in metrics.items()})


def pop_metrics_for_step(step: int | None) -> dict[str, float]:
    """The metrics queued for ``step`` by :func:`log_metrics_for_step`; entries of earlier steps are dropped."""
    if step is None:
        return {}
    with _lock:
        out = _step_metrics.pop(int(step), {})
        for stale in [s for s in _step_metrics if s < int(step)]:
            del _step_metrics[stale]
    return out


_MARKER = "_verl_frontier_driver_hook"


def _hook_legacy(module) -> None:
    def make_gen_batch(original):
        def _get_gen_batch(self, batch):
            set_current_step(getattr(self, "global_steps", None))
            return original(self, batch)

        return _get_gen_batch

    def make_update_actor(original):
        def _update_actor(self, batch):
            output = original(self, batch)
            extra = pop_step_metrics()
            extra.update(pop_metrics_for_step(getattr(self, "global_steps", None)))
            if extra:
                output.meta_info.setdefault("metrics", {}).update(extra)
            return output

        return _update_actor

    wrap_methods(
        module.RayPPOTrainer, {"_get_gen_batch": make_gen_batch, "_update_actor": make_update_actor}, marker=_MARKER
    )


def _hook_v1(module) -> None:
    def make_compute_advantage(original):
        def _compute_advantage(self, batch, metrics):
            set_current_step(getattr(self, "global_steps", None))
            pop_step_metrics()  # nothing from an earlier, unfinished step leaks into this one
            out = original(self, batch, metrics=metrics)
            metrics.update(pop_step_metrics())
            metrics.update(pop_metrics_for_step(getattr(self, "global_steps", None)))
            return out

        return _compute_advantage

    wrap_methods(module.PPOTrainer, {"_compute_advantage": make_compute_advantage}, marker=_MARKER)


def install() -> None:
    """Install the driver hooks (idempotent; on another verl version, nothing: see verl_patches)."""
    from verl_frontier.verl_patches import verl_supported
    from verl_frontier_hooks import when_imported

    if not verl_supported("driver_hooks"):
        return
    when_imported("verl.trainer.ppo.ray_trainer", _hook_legacy)
    when_imported("verl.trainer.ppo.v1.trainer_base", _hook_v1)
