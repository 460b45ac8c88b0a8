"""``verl.plugins`` entry point for verl-frontier.

verl imports this module in every process that runs ``import verl`` (driver, TaskRunner, every Ray
worker). It

1. imports each method plugin module in :data:`METHOD_PLUGINS` (their import registers advantage
   estimators, losses, agent loops, ... with verl), and
2. installs the config validation hook (see :mod:`verl_frontier.validation`), and
3. registers the OmegaConf resolver ``${frontier_world:<relative path>}`` that tiny-world recipe variants
   use for model and data paths (see :func:`verl_frontier.tinyworld.paths.world_path`).

verl swallows exceptions raised by entry points (it logs them at DEBUG), so this module never raises:
problems are logged at WARNING and recorded in :data:`LOAD_ERRORS`.
:func:`verl_frontier.registration.assert_registered` re-imports the modules so import errors surface
there with their real exception, and fails when the hook is missing.
"""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger("verl_frontier")

#: Method plugin modules imported on ``import verl``. Each defines
#: ``EXPECTED_REGISTRATIONS: list[tuple[str, str]]`` (see verl_frontier.registration); a new method adds
#: its ``verl_plugin`` module here.
METHOD_PLUGINS: tuple[str, ...] = (
    "verl_frontier.kd.replay",
    "verl_frontier.paced.verl_plugin",
    "verl_frontier.ace.verl_plugin",
    "verl_frontier.opsdc.verl_plugin",
    "verl_frontier.orbit.verl_plugin",
    "verl_frontier.asgld.verl_plugin",
    "verl_frontier.essence.verl_plugin",
    "verl_frontier.gkd.verl_plugin",
)

#: module name (or "validation_hook") -> one-line error message, for whatever failed on load.
LOAD_ERRORS: dict[str, str] = {}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _load() -> None:
    for module_name in METHOD_PLUGINS:
        try:
            importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - must not raise inside verl's entry-point loop
            LOAD_ERRORS[module_name] = _describe(exc)
            logger.warning("verl-frontier: failed to import method plugin %s: %s", module_name, _describe(exc))
    try:
        from omegaconf import OmegaConf

        from verl_frontier.tinyworld.paths import world_path

        if not OmegaConf.has_resolver("frontier_world"):
            OmegaConf.register_new_resolver("frontier_world", world_path)
    except Exception as exc:  # noqa: BLE001
        LOAD_ERRORS["frontier_world_resolver"] = _describe(exc)
        logger.warning("verl-frontier: frontier_world resolver not registered: %s", _describe(exc))
    try:
        from verl_frontier.validation import install_validation_hook

        install_validation_hook()
    except Exception as exc:  # noqa: BLE001
        LOAD_ERRORS["validation_hook"] = _describe(exc)
        logger.warning("verl-frontier: config validation hook not installed: %s", _describe(exc))


_load()
