"""Where tiny worlds live."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "FRONTIER_WORLD_DIR"


def repo_root() -> Path:
    """The checkout root (the directory holding setup.py) when installed editable, else the cwd."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "setup.py").exists() and (parent / "verl_frontier").is_dir():
            return parent
    return Path.cwd()


def world_dir(size: str = "full", seed: int = 0) -> Path:
    """``$FRONTIER_WORLD_DIR`` if set, else ``<repo root>/.world/<size>-seed<seed>``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return repo_root() / ".world" / f"{size}-seed{seed}"


SIZE_ENV_VAR = "FRONTIER_WORLD_SIZE"


def world_path(relative: str = "") -> str:
    """Absolute path inside the active tiny world, for the ``${frontier_world:student}`` config resolver.

    The world is ``$FRONTIER_WORLD_DIR`` if set, else ``world_dir($FRONTIER_WORLD_SIZE or "full", seed 0)``.
    Raises a message saying how to build it when the world does not exist.
    """
    root = world_dir(os.environ.get(SIZE_ENV_VAR, "full"), 0)
    if not (root / "manifest.json").exists():
        raise FileNotFoundError(
            f"tiny world not found at {root}: build it with `frontier world build` "
            f"(or point {ENV_VAR} at a built world)"
        )
    return str(root / relative) if relative else str(root)
