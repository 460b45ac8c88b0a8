"""Registration protocol: check that every plugin's names really are in verl's registries.

Every plugin module (``verl_cpu.plugin``, and each module in ``verl_frontier.plugin.METHOD_PLUGINS``)
declares what its import registers::

    EXPECTED_REGISTRATIONS: list[tuple[str, str]] = [("platform", "cpu"), ("rollout", "hf"), ...]

Kinds and the verl 0.9.1 registry each is looked up in (:data:`KINDS`):

================== ==================================================================================
``adv_est``        ``verl.trainer.ppo.core_algos.ADV_ESTIMATOR_REGISTRY``
``policy_loss``    ``verl.trainer.ppo.core_algos.POLICY_LOSS_REGISTRY``
``distillation_loss`` ``verl.trainer.distillation.losses.DISTILLATION_LOSS_REGISTRY``
``agent_loop``     ``verl.experimental.agent_loop.agent_loop._agent_loop_registry``
``rollout``        ``verl.workers.rollout.replica.RolloutReplicaRegistry`` **and**
                   ``verl.workers.rollout.base._ROLLOUT_REGISTRY[(name, "async")]``
``platform``       ``verl.plugin.platform.platform_manager.PlatformRegistry``
``engine``         ``verl.workers.engine.base.EngineRegistry``; the name is a device (``"cpu"``: any
                   model type/backend registered for that device) or ``"model_type/backend/device"``
                   (``":"`` works as a separator too), e.g. ``"language_model/fsdp2/cpu"``
``trainer``        ``verl.trainer.ppo.v1.trainer_base.TRAINER_REGISTRY`` (``register_trainer``)
================== ==================================================================================

:func:`assert_registered` imports verl (which loads the ``verl.plugins`` entry points), then checks
every expected (kind, name) and raises one :class:`RegistrationError` listing everything missing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

CPU_PLUGIN = "verl_cpu.plugin"
FRONTIER_PLUGIN = "verl_frontier.plugin"


class RegistrationError(RuntimeError):
    """One or more expected registrations are missing; ``problems`` lists them."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("verl-frontier registration check failed: " + "; ".join(self.problems))


# ---------------------------------------------------------------------------
# registry lookups (each imports only the verl module that owns the registry)
# ---------------------------------------------------------------------------


def _adv_est() -> list[str]:
    from verl.trainer.ppo import core_algos

    return list(core_algos.ADV_ESTIMATOR_REGISTRY)


def _policy_loss() -> list[str]:
    from verl.trainer.ppo import core_algos

    return list(core_algos.POLICY_LOSS_REGISTRY)


def _distillation_loss() -> list[str]:
    from verl.trainer.distillation import losses

    return list(losses.DISTILLATION_LOSS_REGISTRY)


def _agent_loop() -> list[str]:
    from verl.experimental.agent_loop import agent_loop

    return list(agent_loop._agent_loop_registry)


def _rollout() -> list[str]:
    from verl.workers.rollout import base, replica

    replicas = set(replica.RolloutReplicaRegistry._registry)
    adapters = {name for (name, mode) in base._ROLLOUT_REGISTRY if mode == "async"}
    # only names present in both registries are usable as actor_rollout_ref.rollout.name
    return sorted(replicas & adapters)


def _rollout_partial() -> tuple[set[str], set[str]]:
    from verl.workers.rollout import base, replica

    return set(replica.RolloutReplicaRegistry._registry), {n for (n, m) in base._ROLLOUT_REGISTRY if m == "async"}


def _platform() -> list[str]:
    from verl.plugin.platform.platform_manager import PlatformRegistry

    return list(PlatformRegistry.registered_names())


def _engine() -> list[str]:
    import warnings

    with warnings.catch_warnings():  # verl warns about every optional engine it cannot import
        warnings.simplefilter("ignore")
        import verl.workers.engine  # noqa: F401 - importing the engines fills the registry
    from verl.workers.engine.base import EngineRegistry

    names = []
    for model_type, backends in EngineRegistry._engines.items():
        for backend, devices in backends.items():
            for key in devices:
                device, vendor = key if isinstance(key, tuple) else (key, None)
                names.append(f"{model_type}/{backend}/{device}" + (f"/{vendor}" if vendor else ""))
    return names


def _trainer() -> list[str]:
    from verl.trainer.ppo.v1 import trainer_base

    return list(trainer_base.TRAINER_REGISTRY)


@dataclass(frozen=True)
class Kind:
    name: str
    where: str
    names: Callable[[], list[str]] = field(repr=False)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("adv_est", "verl.trainer.ppo.core_algos.ADV_ESTIMATOR_REGISTRY", _adv_est),
        Kind("policy_loss", "verl.trainer.ppo.core_algos.POLICY_LOSS_REGISTRY", _policy_loss),
        Kind(
            "distillation_loss",
            "verl.trainer.distillation.losses.DISTILLATION_LOSS_REGISTRY",
            _distillation_loss,
        ),
        Kind("agent_loop", "verl.experimental.agent_loop.agent_loop._agent_loop_registry", _agent_loop),
        Kind("rollout", "RolloutReplicaRegistry + rollout.base._ROLLOUT_REGISTRY[(name,'async')]", _rollout),
        Kind("platform", "verl.plugin.platform.platform_manager.PlatformRegistry", _platform),
        Kind("engine", "verl.workers.engine.base.EngineRegistry", _engine),
        Kind("trainer", "verl.trainer.ppo.v1.trainer_base.TRAINER_REGISTRY", _trainer),
    )
}


def registered_names(kind: str) -> list[str]:
    """Names currently registered in verl for ``kind`` (see :data:`KINDS`)."""
    if kind not in KINDS:
        raise KeyError(f"unknown registry kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[kind].names()


def is_registered(kind: str, name: str) -> bool:
    """Whether ``name`` is registered for ``kind``. Does not import any plugin module."""
    names = registered_names(kind)
    if kind == "engine":
        parts = name.replace(":", "/").split("/")
        for entry in names:
            model_type, backend, device, *vendor = entry.split("/")
            if len(parts) == 1 and parts[0] == device:
                return True
            if len(parts) >= 3 and parts == [model_type, backend, device, *vendor][: len(parts)]:
                return True
        return False
    return name in names


def _missing_detail(kind: str, name: str) -> str:
    if kind == "rollout":
        try:
            replicas, adapters = _rollout_partial()
        except Exception:  # noqa: BLE001
            return ""
        if name in replicas and name not in adapters:
            return " (in RolloutReplicaRegistry but not in _ROLLOUT_REGISTRY[(name,'async')])"
        if name in adapters and name not in replicas:
            return " (in _ROLLOUT_REGISTRY but not in RolloutReplicaRegistry)"
    return ""


# ---------------------------------------------------------------------------
# the assertion
# ---------------------------------------------------------------------------


def plugin_modules() -> list[str]:
    """``verl_cpu.plugin`` followed by every METHOD_PLUGINS module."""
    from verl_frontier.plugin import METHOD_PLUGINS

    return [CPU_PLUGIN, *METHOD_PLUGINS]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def check_expected(module_name: str, expected: Iterable) -> tuple[list[tuple[str, str]], list[str]]:
    """Check one module's EXPECTED_REGISTRATIONS; return (found, problems)."""
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        items = list(expected)
    except TypeError:
        return found, [f"{module_name}.EXPECTED_REGISTRATIONS is not a list of (kind, name) pairs"]
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            problems.append(f"{module_name}: bad EXPECTED_REGISTRATIONS entry {item!r} (want (kind, name))")
            continue
        kind, name = item
        if kind not in KINDS:
            problems.append(f"{module_name}: unknown registry kind {kind!r} (known: {', '.join(KINDS)})")
            continue
        try:
            ok = is_registered(kind, name)
        except Exception as exc:  # noqa: BLE001 - the registry module itself failed to import
            problems.append(f"{module_name}: cannot read the {kind} registry: {_describe(exc)}")
            continue
        if ok:
            found.append((kind, name))
        else:
            problems.append(
                f"{module_name}: {kind} {name!r} not registered in {KINDS[kind].where}{_missing_detail(kind, name)}"
            )
    return found, problems


def assert_registered(modules: Sequence[str] | None = None, *, check_hook: bool = True) -> dict[str, list]:
    """Import verl (loading the ``verl.plugins`` entry points) and check every expected registration.

    ``modules`` defaults to :func:`plugin_modules`. A module that fails to import, or lacks
    ``EXPECTED_REGISTRATIONS``, is an error. With ``check_hook`` the frontier config validation hook
    must be installed around ``verl.utils.config.validate_config``.
    Returns ``{module: [(kind, name), ...]}`` on success; raises one :class:`RegistrationError`.
    """
    import verl  # noqa: F401 - loads the verl.plugins entry points

    entry_point_loaded = FRONTIER_PLUGIN in sys.modules
    problems: list[str] = []
    found: dict[str, list] = {}
    if modules is None:
        modules = plugin_modules()
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"cannot import plugin module {module_name}: {_describe(exc)}")
            continue
        expected = getattr(module, "EXPECTED_REGISTRATIONS", None)
        if expected is None:
            problems.append(f"{module_name} does not define EXPECTED_REGISTRATIONS")
            continue
        ok, module_problems = check_expected(module_name, expected)
        found[module_name] = ok
        problems.extend(module_problems)
    if check_hook:
        from verl_frontier.plugin import LOAD_ERRORS
        from verl_frontier.validation import hook_installed

        if not hook_installed():
            reason = LOAD_ERRORS.get("validation_hook")
            if reason is None and not entry_point_loaded:
                reason = "the verl.plugins entry point verl_frontier was not loaded by `import verl`"
            problems.append(f"frontier config validation hook is not installed ({reason or 'unknown reason'})")
    if problems:
        raise RegistrationError(problems)
    return found
