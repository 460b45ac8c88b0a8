"""Config validation for verl-frontier recipes.

Two mechanisms, both run by :func:`validate_frontier_config`:

* **Checks**: plain functions ``fn(config) -> None`` registered with :func:`register_check`.
  A failing check raises :class:`FrontierConfigError` whose message is one line of the form
  ``"key.path: message (got value)"``. Built-in checks: data files exist, local model paths exist.
* **Schemas**: a method package registers a dataclass for a config section with
  :func:`register_schema` (for example ``algorithm.paced``). When the section is present in the
  config, its keys are checked against the dataclass: unknown keys, missing required fields,
  types, and ranges given in field metadata (``ge``, ``gt``, ``le``, ``lt``, ``choices``).

:func:`install_validation_hook` wraps ``verl.utils.config.validate_config`` so that verl's own
driver (``python -m verl.trainer.main_ppo``) runs these checks before ``ray.init``. The
``verl_frontier.plugin`` entry point installs it.

This module must stay cheap to import: it is loaded while ``import verl`` runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

logger = logging.getLogger("verl_frontier")

SUPPORTED_VERL_VERSION = "0.9.1"

CheckFn = Callable[[Any], None]


class FrontierConfigError(ValueError):
    """A config problem, described in one line that names the offending key.

    ``errors`` holds the individual one-line messages when several checks failed.
    """

    def __init__(self, message: str, errors: Sequence[str] | None = None):
        message = _one_line(message)
        super().__init__(message)
        self.errors: list[str] = list(errors) if errors else [message]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_error(key: str, message: str, value: Any = dataclasses.MISSING) -> FrontierConfigError:
    """Build the standard ``"key: message (got value)"`` error."""
    if value is dataclasses.MISSING:
        return FrontierConfigError(f"{key}: {message}")
    return FrontierConfigError(f"{key}: {message} (got {_short(value)})")


# ---------------------------------------------------------------------------
# check registry
# ---------------------------------------------------------------------------

_CHECKS: dict[str, CheckFn] = {}


def register_check(fn: CheckFn | None = None, *, name: str | None = None):
    """Register a config check. Usable as ``@register_check`` or ``@register_check(name="x")``.

    A check receives the composed (DictConfig) config and raises :class:`FrontierConfigError`.
    Registering the same name again replaces the earlier check (idempotent re-imports).
    """

    def decorator(func: CheckFn) -> CheckFn:
        _CHECKS[name or func.__name__] = func
        return func

    if fn is not None:
        return decorator(fn)
    return decorator


def unregister_check(name: str) -> None:
    _CHECKS.pop(name, None)


def registered_checks() -> list[str]:
    return list(_CHECKS)


# ---------------------------------------------------------------------------
# schema registry
# ---------------------------------------------------------------------------

_SCHEMAS: dict[str, type] = {}


def register_schema(section: str, schema: type | None = None):
    """Register a dataclass schema for the config section ``section`` (e.g. ``"algorithm.paced"``).

    Usable as a decorator (``@register_schema("algorithm.paced")``) or a call. Range limits go into
    field metadata, for example ``alpha: float = field(default=1.0, metadata={"ge": 0})``. A
    ``__post_init__`` that raises ``ValueError`` is reported against the section.
    """

    def decorator(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"register_schema({section!r}): {cls!r} is not a dataclass")
        _SCHEMAS[section] = cls
        return cls

    if schema is not None:
        return decorator(schema)
    return decorator


def unregister_schema(section: str) -> None:
    _SCHEMAS.pop(section, None)


def registered_schemas() -> dict[str, type]:
    return dict(_SCHEMAS)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_MISSING = object()


def select(config: Any, key: str, default: Any = None) -> Any:
    """``OmegaConf.select`` that turns interpolation failures into a FrontierConfigError naming the key."""
    try:
        value = OmegaConf.select(config, key, default=_MISSING)
    except Exception as exc:  # InterpolationResolutionError and friends
        raise config_error(key, f"cannot resolve value: {_one_line(exc)}") from None
    return default if value is _MISSING else value


def _to_plain(value: Any) -> Any:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


REMOTE_PREFIXES = ("hdfs://", "s3://", "gs://", "gcs://", "http://", "https://", "oss://", "az://", "abfs://")


def looks_remote(path: str) -> bool:
    return path.startswith(REMOTE_PREFIXES)


def looks_local(path: str) -> bool:
    """True for paths that are clearly on the local disk (absolute, ``~``, ``./``, ``../``, ``file://``).

    Hugging Face ids such as ``Qwen/Qwen2.5-0.5B-Instruct`` are not local.
    """
    return path.startswith(("/", "~", "./", "../", "file://")) or path in (".", "..")


def _local_path(path: str) -> str:
    if path.startswith("file://"):
        path = path[len("file://") :]
    return os.path.expanduser(os.path.expandvars(path))


# ---------------------------------------------------------------------------
# built-in checks
# ---------------------------------------------------------------------------

DATA_FILE_KEYS = ("data.train_files", "data.val_files")


@register_check(name="data_files")
def check_data_files(config: Any) -> None:
    """``data.train_files`` / ``data.val_files`` (string or list) must exist unless they are remote URLs."""
    for key in DATA_FILE_KEYS:
        value = _to_plain(select(config, key))
        if value is None:
            continue
        paths = value if isinstance(value, list | tuple) else [value]
        if not paths:
            raise config_error(key, "empty list of data files", value)
        for item in paths:
            if not isinstance(item, str) or not item:
                raise config_error(key, "expected a file path", item)
            if looks_remote(item):
                continue
            if not os.path.exists(_local_path(item)):
                raise config_error(key, f"data file not found: {item}", value)


def _model_path_keys(config: Any) -> list[str]:
    keys = ["actor_rollout_ref.model.path", "actor_rollout_ref.model.tokenizer_path"]
    critic_enable = select(config, "critic.enable")
    if critic_enable or (critic_enable is None and select(config, "algorithm.adv_estimator") == "gae"):
        keys += ["critic.model.path", "critic.model.tokenizer_path"]
    if select(config, "distillation.enabled"):
        teachers = select(config, "distillation.teacher_models")
        if isinstance(teachers, DictConfig):
            keys += [f"distillation.teacher_models.{name}.model_path" for name in teachers]
    return keys


@register_check(name="model_paths")
def check_model_paths(config: Any) -> None:
    """Model paths that look local (``/``, ``~``, ``./``) must exist; hub ids are not checked."""
    for key in _model_path_keys(config):
        value = select(config, key)
        if not isinstance(value, str) or not value or not looks_local(value):
            continue
        if not os.path.exists(_local_path(value)):
            raise config_error(key, f"local model path not found: {value}", value)


@register_check(name="world_size")
def check_world_size(config: Any) -> None:
    """Batch sizes must split over ``trainer.nnodes * trainer.n_gpus_per_node`` ranks (see verl_frontier.launch)."""
    from verl_frontier.launch.core import check_world_size as check

    check(config)


# ---------------------------------------------------------------------------
# schema validation
# ---------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Lenient runtime type check for the annotation kinds used in config schemas."""
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


_RANGE_CHECKS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "ge": (lambda v, lim: v >= lim, ">="),
    "gt": (lambda v, lim: v > lim, ">"),
    "le": (lambda v, lim: v <= lim, "<="),
    "lt": (lambda v, lim: v < lim, "<"),
}


def validate_section(config: Any, section: str, schema: type) -> None:
    """Check one config section against a dataclass schema (no-op when the section is absent)."""
    node = select(config, section)
    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise config_error(section, f"expected a mapping for {schema.__name__}", _to_plain(node))
    values = _to_plain(node)
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{section}.{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            raise FrontierConfigError(f"{section}.{key}: unknown key for {schema.__name__}{hint}")
    for name, fld in fields.items():
        key = f"{section}.{name}"
        if name not in values:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise config_error(key, "required value is missing")
            continue
        value = values[name]
        tp = hints.get(name, Any)
        if not _matches(value, tp):
            raise config_error(key, f"expected {_type_name(tp)}", value)
        meta = fld.metadata or {}
        if "choices" in meta and value not in meta["choices"]:
            raise config_error(key, f"must be one of {list(meta['choices'])}", value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            for bound, (ok, symbol) in _RANGE_CHECKS.items():
                if bound in meta and not ok(value, meta[bound]):
                    raise config_error(key, f"must be {symbol} {meta[bound]}", value)
    try:
        schema(**values)
    except (ValueError, TypeError, AssertionError) as exc:
        raise config_error(section, f"invalid {schema.__name__}: {_one_line(exc)}") from None


@register_check(name="schemas")
def check_schemas(config: Any) -> None:
    for section, schema in list(_SCHEMAS.items()):
        validate_section(config, section, schema)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------


def validate_frontier_config(config: Any, skip: Sequence[str] = ()) -> list[str]:
    """Run every registered check (except those named in ``skip``).

    Raises one :class:`FrontierConfigError`; with several failures its message joins them with
    ``"; "`` (still one line) and ``errors`` lists them. Returns the names of the checks that ran.
    """
    if isinstance(config, Mapping) and not isinstance(config, DictConfig):
        config = OmegaConf.create(dict(config))
    errors: list[str] = []
    ran: list[str] = []
    for name, check in list(_CHECKS.items()):
        if name in skip:
            continue
        ran.append(name)
        try:
            check(config)
        except FrontierConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise FrontierConfigError("; ".join(errors), errors)
    return ran


# ---------------------------------------------------------------------------
# hook into verl's driver
# ---------------------------------------------------------------------------

_HOOK_MARKER = "__frontier_wrapped__"
_HOOK_STATE = {"disabled": 0}


@contextlib.contextmanager
def hook_disabled():
    """Within this block the installed hook passes straight through to verl's validate_config chain.

    ``frontier validate`` uses it to run verl's (and other plugins') checks after running the
    frontier checks itself with its own options.
    """
    _HOOK_STATE["disabled"] += 1
    try:
        yield
    finally:
        _HOOK_STATE["disabled"] -= 1


class VerlVersionError(RuntimeError):
    pass


def _verl_version() -> str | None:
    verl = sys.modules.get("verl")
    version = getattr(verl, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("verl")
        except Exception:
            return None
    return version


def hook_installed() -> bool:
    try:
        import verl.utils.config as vuc
    except Exception:
        return False
    return hasattr(vuc.validate_config, _HOOK_MARKER)


DRIVER_RESOLVERS = ("${frontier_world:",)


def pin_driver_paths(config) -> int:
    """Resolve ``${frontier_world:...}`` interpolations in the driver and store the results in ``config``.

    verl resolves the config again inside its TaskRunner, a Ray worker whose environment (on an existing
    Ray cluster or another node) need not have the driver's ``FRONTIER_WORLD_DIR``; pinning the paths in the
    driver makes every process use the world the user selected. Returns how many values were pinned.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

    pinned = 0

    def visit(node) -> None:
        nonlocal pinned
        keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
        for key in keys:
            child = node._get_node(key)
            if OmegaConf.is_interpolation(node, key):
                raw = str(child._value())
                if any(prefix in raw for prefix in DRIVER_RESOLVERS):
                    node[key] = node[key]
                    pinned += 1
            elif isinstance(child, (DictConfig, ListConfig)):
                visit(child)

    with open_dict(config):
        visit(config)
    return pinned


def install_validation_hook() -> bool:
    """Wrap ``verl.utils.config.validate_config`` so it runs :func:`validate_frontier_config` first.

    The wrapper is also bound into every loaded ``verl.*`` module (and ``__main__``) that imported the
    original by name, e.g. ``verl.trainer.main_ppo``. Idempotent; returns True when newly installed.
    Raises :class:`VerlVersionError` for a verl other than 0.9.1 (the hook targets its call sites).
    """
    version = _verl_version()
    if version != SUPPORTED_VERL_VERSION:
        raise VerlVersionError(
            f"verl-frontier's validation hook supports verl=={SUPPORTED_VERL_VERSION} only, found verl {version}; "
            "install verl==0.9.1 or update verl_frontier.validation.install_validation_hook"
        )
    import verl.utils.config as vuc

    current = vuc.validate_config
    if hasattr(current, _HOOK_MARKER):
        original, wrapper, newly = getattr(current, _HOOK_MARKER), current, False
    else:
        original, newly = current, True

        @functools.wraps(original)
        def wrapper(config, *args, **kwargs):
            if not _HOOK_STATE["disabled"]:
                pin_driver_paths(config)
                validate_frontier_config(config)
            return original(config, *args, **kwargs)

        setattr(wrapper, _HOOK_MARKER, original)
        vuc.validate_config = wrapper
    # every function of the wrapping chain (verl's original, other plugins' wrappers) that some loaded
    # module bound by name, e.g. `from verl.utils.config import validate_config` in verl.trainer.main_ppo
    chain, fn = set(), original
    while fn is not None and id(fn) not in chain:
        chain.add(id(fn))
        fn = getattr(fn, "__wrapped__", None)
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name in ("__main__", "verl") or mod_name.startswith("verl.")):
            continue
        if id(getattr(module, "validate_config", None)) in chain:
            try:
                module.validate_config = wrapper
            except Exception:  # noqa: BLE001 - exotic modules that refuse attribute assignment
                pass
    return newly


def original_validate_config() -> Callable[..., None]:
    """verl's own ``validate_config`` (unwrapped)."""
    import verl.utils.config as vuc

    return getattr(vuc.validate_config, _HOOK_MARKER, vuc.validate_config)
