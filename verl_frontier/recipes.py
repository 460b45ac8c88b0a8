"""Recipe folders: discovery, description, copying (``frontier new-recipe``) and Hydra composition.

A recipe is a folder under the recipes directory (``$FRONTIER_RECIPES_DIR``, else ``recipes/`` at the
repository root next to the installed package) holding ``<name>.yaml``::

    hydra:
      searchpath:
        - pkg://verl.trainer.config
    defaults:
      - ppo_trainer
      - _self_
    ...

plus ``run.sh`` (single node), ``slurm.sh`` (multi-node) and ``README.md``. Composition uses Hydra's
compose API on the recipe folder, so Hydra search-path plugins (``+platform=cpu``) apply.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPES_ENV = "FRONTIER_RECIPES_DIR"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SKIP_DIRS = {"__pycache__", "outputs", "checkpoints", ".ipynb_checkpoints"}


class RecipeError(ValueError):
    """A user-facing recipe problem (one line)."""


class OverrideError(RecipeError):
    """A Hydra override that does not apply (misspelled key, bad syntax, ...)."""


# ---------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------


def recipes_dir(root: str | os.PathLike | None = None) -> Path:
    """The recipes directory: ``root``, else ``$FRONTIER_RECIPES_DIR``, else ``<repo>/recipes``."""
    if root is not None:
        path = Path(root)
    elif os.environ.get(RECIPES_ENV):
        path = Path(os.environ[RECIPES_ENV])
    else:
        path = Path(__file__).resolve().parent.parent / "recipes"
        if not path.is_dir():
            raise RecipeError(f"recipes directory not found at {path}; set {RECIPES_ENV}=/path/to/recipes")
    path = path.expanduser()
    if not path.is_dir():
        raise RecipeError(f"recipes directory {path} does not exist")
    return path


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path

    @property
    def configs(self) -> list[str]:
        """Config names (yaml stems) in the folder that compose on their own (have a ``defaults`` list)."""
        return [p.stem for p in sorted(self.path.glob("*.yaml")) if _is_primary_config(p)]

    @property
    def default_config(self) -> str | None:
        configs = self.configs
        if self.name in configs:
            return self.name
        return configs[0] if len(configs) == 1 else None

    @property
    def description(self) -> str:
        return describe(self.path)


def _is_primary_config(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"^defaults\s*:", text, flags=re.MULTILINE) is not None


def list_recipes(root: str | os.PathLike | None = None) -> list[Recipe]:
    base = recipes_dir(root)
    out = []
    for child in sorted(base.iterdir()):
        if not child.is_dir() or child.name.startswith((".", "_")) or child.name in _SKIP_DIRS:
            continue
        if any(child.glob("*.yaml")):
            out.append(Recipe(child.name, child))
    return out


def get_recipe(name: str, root: str | os.PathLike | None = None) -> Recipe:
    """Look a recipe up by folder name (a path to a recipe folder is accepted too)."""
    candidate = Path(name).expanduser()
    if os.sep in name and candidate.is_dir() and any(candidate.glob("*.yaml")):
        return Recipe(candidate.resolve().name, candidate.resolve())
    recipes = list_recipes(root)
    for recipe in recipes:
        if recipe.name == name:
            return recipe
    names = [r.name for r in recipes]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise RecipeError(f"unknown recipe '{name}'; {hint}available: {', '.join(names) or '(none)'}")


def describe(path: Path) -> str:
    """One-line description: a ``description:`` line in README.md, else its first paragraph after the title
    (lines joined, so a description wrapped over several lines is shown whole)."""
    readme = path / "README.md"
    if not readme.is_file():
        return ""
    lines = readme.read_text(encoding="utf-8").splitlines()
    for line in lines:
        match = re.match(r"^\s*description\s*:\s*(.+)$", line, flags=re.IGNORECASE)
        if match:
            return match.group(1).strip()
    seen_title = False
    paragraph: list[str] = []
    for line in lines:
        stripped = line.strip()
        if paragraph:
            if not stripped or stripped.startswith(("#", "<!--", "---", "|", "```")):
                break
            paragraph.append(stripped)
            continue
        if not stripped or stripped.startswith(("<!--", "---")):
            continue
        if stripped.startswith("#"):
            if seen_title:
                break
            seen_title = True
            continue
        paragraph.append(stripped)
    return " ".join(paragraph)


# ---------------------------------------------------------------------------
# new-recipe
# ---------------------------------------------------------------------------


def _name_pattern(name: str) -> re.Pattern:
    # the name as a token: not glued to a preceding identifier character or a following alphanumeric
    # (a following "_" is allowed, so "grpo_baseline_lr" becomes "<new>_lr").
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9])")


def _iter_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for filename in filenames:
            yield Path(dirpath) / filename


def new_recipe(name: str, source: str, root: str | os.PathLike | None = None) -> Path:
    """Copy recipe ``source`` to a new folder ``name`` in the recipes dir and rename it throughout.

    Files named ``<source>*`` are renamed to ``<name>*``; inside text files every token ``<source>``
    (experiment name, config name, folder references) becomes ``<name>``. Refuses to overwrite.
    """
    if not NAME_RE.match(name):
        raise RecipeError(f"invalid recipe name '{name}': use letters, digits, '_' or '-', starting with a letter")
    base = recipes_dir(root)
    src = get_recipe(source, base)
    dest = base / name
    if dest.exists():
        raise RecipeError(f"recipe '{name}' already exists at {dest}; refusing to overwrite")
    shutil.copytree(src.path, dest, ignore=shutil.ignore_patterns(*_SKIP_DIRS, "*.pyc"))
    pattern = _name_pattern(src.name)
    for path in sorted(_iter_files(dest), key=lambda p: len(p.parts), reverse=True):
        if path.name.startswith(src.name):
            target = path.with_name(name + path.name[len(src.name) :])
            path.rename(target)
            path = target
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        new_text = pattern.sub(name, text)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
    return dest


# ---------------------------------------------------------------------------
# composition
# ---------------------------------------------------------------------------


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _override_key(override: str) -> str | None:
    match = re.match(r"^\s*([~+]{0,2})([A-Za-z0-9_.@/\-\[\]]+)\s*=", override)
    return match.group(2) if match else None


def _suggest_key(config: Any, key: str) -> str | None:
    from omegaconf import DictConfig, OmegaConf

    parent_key, _, leaf = key.rpartition(".")
    try:
        parent = OmegaConf.select(config, parent_key) if parent_key else config
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(parent, DictConfig):
        return None
    close = difflib.get_close_matches(leaf, [str(k) for k in parent.keys()], n=1)
    if not close:
        return None
    return f"{parent_key}.{close[0]}" if parent_key else close[0]


def _compose(config_dir: Path, config_name: str, overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def compose_recipe(
    recipe: Recipe | str,
    overrides: Sequence[str] = (),
    config_name: str | None = None,
    root: str | os.PathLike | None = None,
):
    """Compose a recipe config against verl's real ``ppo_trainer`` config; returns a DictConfig.

    Raises :class:`OverrideError` (one line, naming the key) for overrides that do not apply, and
    :class:`RecipeError` for other composition problems.
    """
    from hydra.errors import ConfigCompositionException, HydraException, OverrideParseException

    if isinstance(recipe, str):
        recipe = get_recipe(recipe, root)
    if config_name is None:
        config_name = recipe.default_config
        if config_name is None:
            raise RecipeError(
                f"recipe '{recipe.name}' has several configs ({', '.join(recipe.configs) or 'none'}); "
                "pick one with --config-name"
            )
    config_name = config_name.removesuffix(".yaml")
    if not (recipe.path / f"{config_name}.yaml").is_file():
        available = ", ".join(p.stem for p in sorted(recipe.path.glob("*.yaml")))
        raise RecipeError(f"recipe '{recipe.name}' has no config '{config_name}'; available: {available}")
    try:
        return _compose(recipe.path, config_name, overrides)
    except OverrideParseException as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise OverrideError(f"bad override syntax: {_one_line(first)}") from None
    except ConfigCompositionException as exc:
        message = str(exc)
        match = re.search(r"Could not override '([^']+)'", message)
        if match:
            key = match.group(1)
            bad = next((o for o in overrides if _override_key(o) == key), key)
            hint = ""
            try:
                base = _compose(recipe.path, config_name, [])
                suggestion = _suggest_key(base, key)
                if suggestion:
                    hint = f"did you mean '{suggestion}'? "
            except Exception:  # noqa: BLE001
                pass
            raise OverrideError(
                f"unknown config key '{key}' in override '{bad}'; {hint}(prefix with '+' to add a new key)"
            ) from None
        cause = exc.__cause__
        detail = _one_line(message.split("Config search path:")[0])
        if cause is not None and _one_line(cause) not in detail:
            detail = f"{detail}: {_one_line(cause)}"
        raise OverrideError(detail) from None
    except HydraException as exc:
        raise RecipeError(_one_line(exc)) from None


def resolve_all(config: Any) -> None:
    """Resolve every interpolation, raising RecipeError naming the key that fails."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = getattr(exc, "msg", None) or str(exc)
        raise RecipeError(f"{key}: cannot resolve value: {_one_line(msg)}") from None


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                yield from _leaf_keys(value, path)
            else:
                yield path


def unknown_recipe_keys(recipe: Recipe, config_name: str | None = None) -> list[str]:
    """Keys set in the recipe yaml that verl's ``ppo_trainer`` does not define.

    Sections covered by a registered schema (:func:`verl_frontier.validation.register_schema`) are
    not reported: the schema validates them.
    """
    import yaml

    from verl_frontier.validation import registered_schemas

    config_name = config_name or recipe.default_config
    data = yaml.safe_load((recipe.path / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    data = {k: v for k, v in data.items() if k not in ("hydra", "defaults")}
    base = _base_ppo_trainer()
    sections = tuple(registered_schemas())
    unknown = []
    for key in _leaf_keys(data):
        if any(key == s or key.startswith(s + ".") for s in sections):
            continue
        node: Any = base
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
                # free-form places in verl's config (`{}` or null defaults) accept any sub-key
                if node is None or node == {}:
                    break
                continue
            unknown.append(key)
            break
    return unknown


_BASE_CACHE: dict[str, Any] = {}


def _base_ppo_trainer():
    if "ppo_trainer" not in _BASE_CACHE:
        import importlib.resources

        config_dir = importlib.resources.files("verl.trainer.config")
        from omegaconf import OmegaConf

        config = _compose(Path(str(config_dir)), "ppo_trainer", [])
        _BASE_CACHE["ppo_trainer"] = OmegaConf.to_container(config, resolve=False)
    return _BASE_CACHE["ppo_trainer"]
