"""Config validation for verl-frontier recipes.

Two mechanisms, both run by :func:`validate_frontier_config`, which runs every check and reports every
problem at once (``FrontierConfigError.errors``: one line each, ``"key.path: message (got value)"``):

* **Checks**: plain functions ``fn(config) -> None`` registered with :func:`register_check`, raising
  :class:`FrontierConfigError`. Built-in checks concern what the run uses: data files (exist; readable,
  non-empty parquet with the columns the run reads; registered per-row ``agent_name``), local model paths,
  world size, names that select a registered piece (estimator, policy / distillation loss, agent loop,
  rollout; with a did-you-mean), the types of verl's own options (from verl's defaults and config
  dataclasses), the rollout temperature of distillation runs, and, with ``trainer.device=cpu``, the CPU
  platform's settings of the roles the run builds.
* **Schemas**: a method package keeps the dataclass of its config section in ``<method>/config.py`` and
  registers it with :func:`register_schema` (for example ``algorithm.paced``). Every reader of a method's
  settings, here and in the workers, goes through :func:`read_settings`: a mapping is required; unknown keys
  (with a did-you-mean), missing required fields, types, non-finite numbers (unless the field's metadata has
  ``allow_nonfinite``) and the ranges of the field metadata (``ge``, ``gt``, ``le``, ``lt``, ``choices``)
  are checked the same way for every method.

:func:`install_validation_hook` wraps ``verl.utils.config.validate_config`` so that verl's own
driver (``python -m verl.trainer.main_ppo``) runs these checks before ``ray.init``, printing each problem
on its own line. The ``verl_frontier.plugin`` entry point installs it.

This module must stay cheap to import: it is loaded while ``import verl`` runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from verl_frontier.verl_patches import SUPPORTED_VERL_VERSION
from verl_frontier_hooks import REPORTED, exit_for_config_error

logger = logging.getLogger("verl_frontier")

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


def _uses_custom_dataset(config: Any) -> bool:
    return bool(select(config, "data.custom_cls.path"))


@register_check(name="data_files")
def check_data_files(config: Any) -> None:
    """``data.train_files`` / ``data.val_files`` (string or list) must exist unless they are remote URLs, and
    (with verl's own dataset class) be readable, non-empty parquet files with the columns the run reads
    (:func:`data_file_problems`). A file named under both keys is reported once."""
    problems: list[str] = []
    present: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key in DATA_FILE_KEYS:
        value = _to_plain(select(config, key))
        if value is None:
            continue
        paths = value if isinstance(value, list | tuple) else [value]
        if not paths:
            problems.append(f"{key}: empty list of data files (got {_short(value)})")
            continue
        for item in paths:
            if not isinstance(item, str) or not item:
                problems.append(f"{key}: expected a file path (got {_short(item)})")
                continue
            if looks_remote(item) or item in seen:
                continue
            seen.add(item)
            if not os.path.exists(_local_path(item)):
                problems.append(f"{key}: data file not found: {item} (got {_short(value)})")
            else:
                present.append((key, item))
    if not _uses_custom_dataset(config):
        for key, item in present:
            problems += data_file_problems(config, key, item)
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)


def parquet_schema(path: str):
    """``(num_rows, pyarrow schema)`` of a parquet file, read from its footer only (no row data)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(_local_path(path))
    return meta.num_rows, meta.schema.to_arrow_schema()


def required_columns(config: Any) -> list[tuple[str, str | None, str]]:
    """``(column, struct field or None, why)`` that verl reads from every row of a data file in this run."""
    prompt_key = select(config, "data.prompt_key", "prompt") or "prompt"
    required = [(str(prompt_key), None, "the prompt column (data.prompt_key)")]
    if not select(config, "reward.reward_model.enable", False):
        required.append(("reward_model", "ground_truth", "the reward manager scores against reward_model.ground_truth"))
        required.append(("data_source", None, "the reward manager reads each row's data_source"))
    return required


def data_file_problems(config: Any, key: str, path: str) -> list[str]:
    """Problems of one existing local data file: format, readability, rows, the columns the run reads, and
    registered ``agent_name`` values (per-row agent loops). Reads the parquet footer and the ``agent_name``
    column only."""
    local = _local_path(path)
    if os.path.isdir(local):
        return []
    if path.endswith((".json", ".jsonl")):
        return [] if os.path.getsize(local) else [f"{key}: data file is empty: {path}"]
    if not path.endswith(".parquet"):
        return [f"{key}: unsupported data file format (verl reads .parquet, .json, .jsonl): {path}"]
    try:
        num_rows, schema = parquet_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for truncated / non-parquet files vary
        return [f"{key}: not a readable parquet file: {path} ({_one_line(exc)})"]
    if num_rows == 0:
        return [f"{key}: data file has no rows: {path}"]
    problems: list[str] = []
    names = schema.names
    for column, sub, why in required_columns(config):
        if column not in names:
            problems.append(f"{key}: {path} has no column '{column}' ({why}); columns: {', '.join(names)}")
            continue
        tp = schema.field(column).type
        if sub is not None and hasattr(tp, "get_field_index") and tp.get_field_index(sub) < 0:
            problems.append(f"{key}: {path}: column '{column}' has no field '{sub}' ({why})")
    if "agent_name" in names and not select(config, "actor_rollout_ref.rollout.agent.agent_loop_config_path"):
        problems += _agent_name_problems(key, path)
    return problems


def _agent_name_problems(key: str, path: str) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        names = registered_names_of("agent_loop")
    except Exception:  # noqa: BLE001 - the registry is unavailable: nothing to compare with
        return []
    column = pq.read_table(_local_path(path), columns=["agent_name"]).column("agent_name")
    used = sorted(str(v) for v in pc.unique(column).to_pylist() if v is not None)
    return [
        f"{key}: {path}: agent_name {value!r} is not a registered agent loop{_did_you_mean(value, names)}"
        for value in used
        if value not in names
    ]


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
# schema validation: the one reader of method settings
# ---------------------------------------------------------------------------

#: field metadata key: the option accepts NaN / +-inf (numbers are otherwise required to be finite)
ALLOW_NONFINITE = "allow_nonfinite"


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wants_float(tp: Any) -> bool:
    """``float`` or an optional float: an int given for it is stored as a float."""
    if tp is float:
        return True
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    return float in args and int not in args


_RANGE_CHECKS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "ge": (lambda v, lim: v >= lim, ">="),
    "gt": (lambda v, lim: v > lim, ">"),
    "le": (lambda v, lim: v <= lim, "<="),
    "lt": (lambda v, lim: v < lim, "<"),
}


def field_problems(key: str, value: Any, tp: Any, meta: Mapping) -> list[str]:
    """Problems of one option: its type, ``choices``, finiteness and range limits (field metadata)."""
    if not _matches(value, tp):
        return [f"{key}: expected {_type_name(tp)} (got {_short(value)})"]
    if "choices" in meta and value not in meta["choices"]:
        return [f"{key}: must be one of {list(meta['choices'])} (got {_short(value)})"]
    if not _is_number(value):
        return []
    if not math.isfinite(value):
        if meta.get(ALLOW_NONFINITE):
            return []
        return [f"{key}: must be a finite number (got {_short(value)})"]
    for bound, (ok, symbol) in _RANGE_CHECKS.items():
        if bound in meta and not ok(value, meta[bound]):
            return [f"{key}: must be {symbol} {meta[bound]} (got {_short(value)})"]
    return []


def instance_problems(obj: Any, section: str | None = None) -> list[str]:
    """:func:`field_problems` of every field of the dataclass instance ``obj``.

    A schema's ``__post_init__`` can call :func:`check_fields` so that instances built in code obey the
    same metadata limits as settings read from a config.
    """
    hints = typing.get_type_hints(type(obj))
    prefix = f"{section}." if section else ""
    problems: list[str] = []
    for fld in dataclasses.fields(obj):
        if fld.init:
            problems += field_problems(
                prefix + fld.name, getattr(obj, fld.name), hints.get(fld.name, Any), fld.metadata
            )
    return problems


def check_fields(obj: Any) -> None:
    """Raise ``ValueError`` listing the fields of ``obj`` that break their type / metadata limits."""
    problems = instance_problems(obj)
    if problems:
        raise ValueError("; ".join(problems))


def read_settings(schema: type, mapping: Any, section: str) -> Any:
    """Build ``schema`` from the config section ``section`` (a DictConfig, a dict or None).

    The one reader of method settings (the driver-side validation and the workers both use it), so every
    method treats its section the same way: ``None`` gives the defaults; anything but a mapping, an unknown
    key (with a did-you-mean), a missing required field, a wrong type, a non-finite number (unless the
    field's metadata has ``allow_nonfinite``), a value outside the field metadata's ``choices`` / ``ge`` /
    ``gt`` / ``le`` / ``lt`` are reported together in one :class:`FrontierConfigError` naming each key.
    Ints given for float fields are stored as floats.
    """
    if mapping is None:
        return schema()
    if isinstance(mapping, DictConfig):
        try:
            mapping = OmegaConf.to_container(mapping, resolve=True)
        except Exception as exc:  # noqa: BLE001 - InterpolationResolutionError and friends
            raise config_error(section, f"cannot resolve value: {_one_line(exc)}") from None
    if not isinstance(mapping, Mapping):
        raise config_error(
            section, f"expected a mapping of {schema.__name__} settings (key: value)", _to_plain(mapping)
        )
    values = dict(mapping)
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    problems: list[str] = []
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{section}.{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            problems.append(f"{section}.{key}: unknown key for {schema.__name__}{hint}")
    for name, fld in fields.items():
        key = f"{section}.{name}"
        if name not in values:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                problems.append(f"{key}: required value is missing")
            continue
        tp = hints.get(name, Any)
        found = field_problems(key, values[name], tp, fld.metadata or {})
        problems += found
        if not found and _wants_float(tp) and _is_number(values[name]):
            values[name] = float(values[name])
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)
    values = {k: v for k, v in values.items() if k in fields}
    try:
        return schema(**values)
    except (ValueError, TypeError, AssertionError) as exc:
        raise config_error(section, f"invalid {schema.__name__}: {_one_line(exc)}") from None


def section_settings(config: Any, section: str, schema: type | None = None) -> Any:
    """The settings of ``section`` in ``config`` read by :func:`read_settings` (the registered schema by
    default); ``None`` when the section is absent."""
    schema = schema or _SCHEMAS[section]
    node = select(config, section)
    if node is None:
        return None
    return read_settings(schema, node, section)


def validate_section(config: Any, section: str, schema: type) -> None:
    """Check one config section against a dataclass schema (no-op when the section is absent)."""
    section_settings(config, section, schema)


@register_check(name="schemas")
def check_schemas(config: Any) -> None:
    errors: list[str] = []
    for section, schema in list(_SCHEMAS.items()):
        try:
            validate_section(config, section, schema)
        except FrontierConfigError as exc:
            errors += exc.errors
    if errors:
        raise FrontierConfigError("; ".join(errors), errors)


# ---------------------------------------------------------------------------
# names that select a registered piece
# ---------------------------------------------------------------------------


def registered_names_of(kind: str) -> list[str]:
    """Names registered in verl for ``kind`` (see :mod:`verl_frontier.registration`)."""
    from verl_frontier.registration import registered_names

    return registered_names(kind)


def _did_you_mean(value: Any, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; registered: {', '.join(sorted(map(str, names)))}"


def selected_names(config: Any) -> list[tuple[str, str]]:
    """``(key, registry kind)`` of every option of this run that names a registered piece."""
    keys = [
        ("algorithm.adv_estimator", "adv_est"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode", "policy_loss"),
        ("actor_rollout_ref.rollout.name", "rollout"),
    ]
    if not select(config, "actor_rollout_ref.rollout.agent.agent_loop_config_path"):
        keys.append(("actor_rollout_ref.rollout.agent.default_agent_loop", "agent_loop"))
    if select(config, "distillation.enabled", False):
        keys.append(("distillation.distillation_loss.loss_mode", "distillation_loss"))
        teachers = select(config, "distillation.teacher_models")
        if isinstance(teachers, DictConfig):
            keys += [(f"distillation.teacher_models.{name}.inference.name", "rollout") for name in teachers]
    return keys


@register_check(name="registered_names")
def check_registered_names(config: Any) -> None:
    """Estimator, policy / distillation loss, agent loop and rollout names must be registered in verl."""
    problems: list[str] = []
    for key, kind in selected_names(config):
        try:
            value = select(config, key)
        except FrontierConfigError:
            continue  # unresolvable values are reported by the checks that read them
        if value is None or not isinstance(value, str):
            continue
        try:
            names = registered_names_of(kind)
        except Exception as exc:  # noqa: BLE001 - the registry module itself failed to import
            logger.debug("cannot read the %s registry: %s", kind, exc)
            continue
        if value not in names:
            problems.append(f"{key}: {value!r} is not a registered {kind} name{_did_you_mean(value, names)}")
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)


# ---------------------------------------------------------------------------
# types of verl's own options
# ---------------------------------------------------------------------------

_VERL_DEFAULTS: dict[str, Any] = {}


def verl_defaults() -> dict:
    """verl's full ``ppo_trainer`` defaults (the generated, flattened yaml it ships), unresolved."""
    if "ppo_trainer" not in _VERL_DEFAULTS:
        import importlib.resources

        path = importlib.resources.files("verl.trainer.config") / "_generated_ppo_trainer.yaml"
        _VERL_DEFAULTS["ppo_trainer"] = OmegaConf.to_container(OmegaConf.load(str(path)), resolve=False)
    return _VERL_DEFAULTS["ppo_trainer"]


@functools.cache
def _target_hints(target: str) -> dict[str, Any]:
    """Field annotations of the config dataclass ``target`` (verl.workers.config.*, verl.trainer.config.*)."""
    import importlib

    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        return typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    except Exception:  # noqa: BLE001 - an optional dependency of that module is missing: no hints
        return {}


_SCALAR_KINDS = (bool, int, float)


def _expected_kind(default: Any, hint: Any) -> Any:
    """The type a value must have (bool, int, float or ``int | float``), or None when not checked."""
    if hint is not None:
        origin = typing.get_origin(hint)
        args = set(typing.get_args(hint)) - {type(None)} if origin in (typing.Union, types.UnionType) else {hint}
        if args == {bool}:
            return bool
        if args == {int}:
            return int
        if args <= {int, float} and args:
            return float
        return None
    if isinstance(default, str) or default is None:
        return None
    return type(default) if type(default) in _SCALAR_KINDS else None


def _kind_ok(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return _is_number(value)


def _leaf_kinds(defaults: Mapping, index: dict[str, set]) -> None:
    target = defaults.get("_target_")
    hints = _target_hints(target) if isinstance(target, str) else {}
    for name, default in defaults.items():
        if isinstance(default, dict):
            _leaf_kinds(default, index)
        elif name != "_target_":
            if isinstance(default, str) and default.startswith("${"):
                default = None
            kind = _expected_kind(default, hints.get(name))
            if kind is not None:
                index.setdefault(str(name), set()).add(kind)


def kinds_by_name() -> dict[str, Any]:
    """Option name -> type, for the names verl types the same way wherever they appear (bool, int or number).

    An option whose own default is null (``trainer.total_training_steps``) takes the type verl gives the same
    name elsewhere (``actor_rollout_ref.actor.optim.total_training_steps: int``)."""
    if "kinds" not in _VERL_DEFAULTS:
        index: dict[str, set] = {}
        _leaf_kinds(verl_defaults(), index)
        _VERL_DEFAULTS["kinds"] = {name: kinds.pop() for name, kinds in index.items() if len(kinds) == 1}
    return _VERL_DEFAULTS["kinds"]


def _type_problems(values: Mapping, defaults: Mapping, prefix: str) -> list[str]:
    problems: list[str] = []
    target = defaults.get("_target_")
    hints = _target_hints(target) if isinstance(target, str) else {}
    for name, default in defaults.items():
        if name == "_target_" or name not in values:
            continue
        key = f"{prefix}{name}"
        value = values[name]
        if value is None or value == "???":
            continue
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                if default:  # a `{}` default is free-form
                    problems.append(f"{key}: expected a mapping (a config section) (got {_short(value)})")
                continue
            problems += _type_problems(value, default, key + ".")
            continue
        if isinstance(default, str) and default.startswith("${"):
            default = None  # an interpolation: only the dataclass annotation tells the type
        kind = _expected_kind(default, hints.get(name))
        if kind is None and default is None and name not in hints:
            kind = kinds_by_name().get(str(name))
        if kind is not None and not _kind_ok(value, kind):
            problems.append(f"{key}: expected {'a number' if kind is float else kind.__name__} (got {_short(value)})")
    return problems


def _plain_sections(config: Any) -> dict:
    """``config`` as plain containers, resolved; sections that fail to resolve are left out (the checks
    that read them report the failure)."""
    out: dict = {}
    for name in config:
        try:
            out[name] = (
                OmegaConf.to_container(config[name], resolve=True)
                if OmegaConf.is_config(config[name])
                else config[name]
            )
        except Exception:  # noqa: BLE001
            try:
                node = config._get_node(name)
                out[name] = OmegaConf.to_container(node, resolve=False)
            except Exception:  # noqa: BLE001
                continue
    return out


@register_check(name="verl_types")
def check_verl_types(config: Any) -> None:
    """verl's own options must have the type of verl's default / config dataclass field (bool, int, number),
    and sections of verl's config must stay mappings."""
    if not isinstance(config, DictConfig):
        return
    try:
        defaults = verl_defaults()
    except Exception as exc:  # noqa: BLE001 - verl not installed: nothing to compare with
        logger.debug("verl defaults unavailable: %s", exc)
        return
    problems = _type_problems(_plain_sections(config), defaults, "")
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)


# ---------------------------------------------------------------------------
# distillation and the rollout temperature
# ---------------------------------------------------------------------------


def uses_distillation(config: Any) -> bool:
    """Whether the run trains against a teacher (verl's ``distillation`` section, which every distillation
    method of this package uses)."""
    return bool(select(config, "distillation.enabled", False))


@register_check(name="distillation_temperature")
def check_distillation_temperature(config: Any) -> None:
    """verl divides the student's logits by ``actor_rollout_ref.rollout.temperature`` in the actor (the
    engine scales them before the distillation loss sees them) while the teacher's log-probs are computed at
    temperature 1, so a distillation loss would compare two temperatures."""
    if not uses_distillation(config):
        return
    temperature = select(config, "actor_rollout_ref.rollout.temperature", 1.0)
    if _is_number(temperature) and float(temperature) != 1.0:
        raise config_error(
            "actor_rollout_ref.rollout.temperature",
            "distillation needs temperature 1: verl divides the student's logits by the rollout temperature in "
            "the actor while the teacher's log-probs are computed at temperature 1, so the loss would compare "
            "the student at this temperature with the teacher at 1",
            temperature,
        )


# ---------------------------------------------------------------------------
# the CPU platform
# ---------------------------------------------------------------------------


@register_check(name="cpu_platform")
def check_cpu_platform(config: Any) -> None:
    """With ``trainer.device=cpu``: the settings of the roles this run builds must work on the CPU platform
    (``verl_cpu.validation.cpu_config_problems``)."""
    if str(select(config, "trainer.device", "") or "") != "cpu":
        return
    try:
        from verl_cpu.validation import cpu_config_problems
    except ImportError:
        return
    problems = cpu_config_problems(config)
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------


def validate_frontier_config(config: Any, skip: Sequence[str] = ()) -> list[str]:
    """Run every registered check (except those named in ``skip``) and report every problem at once.

    Raises one :class:`FrontierConfigError`; with several problems its message joins them with ``"; "``
    (still one line) and ``errors`` lists them, each once. A check that crashes on a config another check
    already rejected (a value of the wrong type, say) adds nothing; one that crashes on its own is reported as
    a problem of that check. Returns the names of the checks that ran.
    """
    if isinstance(config, Mapping) and not isinstance(config, DictConfig):
        config = OmegaConf.create(dict(config))
    errors: list[str] = []
    crashes: list[str] = []
    ran: list[str] = []
    for name, check in list(_CHECKS.items()):
        if name in skip:
            continue
        ran.append(name)
        try:
            check(config)
        except FrontierConfigError as exc:
            errors.extend(e for e in exc.errors if e not in errors)
        except Exception as exc:  # noqa: BLE001 - reported as one line, not a traceback
            crashes.append(f"{name} check failed: {type(exc).__name__}: {_one_line(exc)}")
    if not errors:
        errors = crashes
    if errors:
        raise FrontierConfigError("; ".join(errors), errors)
    return ran


def report_lines(errors: Sequence[str], prefix: str = "error: ") -> str:
    """The problems, one line each (what ``frontier validate`` and the driver hook print)."""
    return "\n".join(f"{prefix}{_one_line(e)}" for e in errors)


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


def hook_enabled() -> bool:
    """False inside :func:`hook_disabled`."""
    return not _HOOK_STATE["disabled"]


def _cpu_driver_check(config: Any) -> None:
    if hook_enabled():
        run_driver_validation(config)


def run_driver_validation(config: Any) -> None:
    """What verl's driver runs before ``ray.init``: pin the world paths, then every frontier check. On failure
    every problem is printed to stderr on its own line before :class:`FrontierConfigError` is raised."""
    try:
        pin_driver_paths(config)
        validate_frontier_config(config)
    except FrontierConfigError as exc:
        print(report_lines(exc.errors, "frontier config error: "), file=sys.stderr, flush=True)
        setattr(exc, REPORTED, True)
        raise


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
    from omegaconf.errors import InterpolationResolutionError

    pinned, problems, seen = 0, [], set()

    def visit(node, path: str) -> None:
        nonlocal pinned
        keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
        for key in keys:
            child = node._get_node(key)
            where = f"{path}.{key}" if path else str(key)
            if OmegaConf.is_interpolation(node, key):
                raw = str(child._value())
                if any(prefix in raw for prefix in DRIVER_RESOLVERS):
                    try:
                        node[key] = node[key]
                    except InterpolationResolutionError as exc:  # e.g. the tiny world is not built
                        message = str(exc).split("\n")[0].split(" raised while resolving interpolation: ")[-1]
                        if message not in seen:  # a missing world: one line, not one per key
                            seen.add(message)
                            problems.append(f"{where}: {message}")
                        continue
                    pinned += 1
            elif isinstance(child, (DictConfig, ListConfig)):
                visit(child, where)

    with open_dict(config):
        visit(config, "")
    if problems:
        raise FrontierConfigError("; ".join(problems), problems)
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
                try:
                    run_driver_validation(config)
                except FrontierConfigError as exc:  # printed already; exit 2 under verl's main_ppo
                    exit_for_config_error(exc, sys._getframe(1).f_globals, "frontier config error: ")
                    raise
            return original(config, *args, **kwargs)

        setattr(wrapper, _HOOK_MARKER, original)
        vuc.validate_config = wrapper
    try:  # with trainer.device=cpu the CPU platform's driver hook runs first: report everything from there
        import verl_cpu.validation as cpu_validation
    except ImportError:
        pass
    else:
        if _cpu_driver_check not in cpu_validation.DRIVER_CHECKS:
            cpu_validation.DRIVER_CHECKS.append(_cpu_driver_check)
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
