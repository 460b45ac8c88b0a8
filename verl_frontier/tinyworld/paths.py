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
