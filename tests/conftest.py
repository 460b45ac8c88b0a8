"""Shared pytest fixtures.

The default suite (``make test``) includes tests marked ``e2e`` (real verl runs); ``make test-fast``
deselects them with ``-m "not e2e"``. Foundation tests never start Ray.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = REPO_ROOT / "recipes"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def recipes_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of ``recipes/``; ``FRONTIER_RECIPES_DIR`` points at it for the test."""
    dest = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    monkeypatch.setenv("FRONTIER_RECIPES_DIR", str(dest))
    return dest


@pytest.fixture
def data_overrides(tmp_path) -> list[str]:
    """Hydra overrides pointing ``data.train_files`` / ``data.val_files`` at existing (empty) files."""
    train, val = tmp_path / "train.parquet", tmp_path / "test.parquet"
    train.touch()
    val.touch()
    return [f"data.train_files={train}", f"data.val_files={val}"]


@pytest.fixture
def cli():
    """Invoke the ``frontier`` app in-process: ``cli("validate", "x")`` -> click Result (stderr separate)."""
    from typer.testing import CliRunner

    from verl_frontier.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), prog_name="frontier")

    return invoke


@pytest.fixture
def fake_plugin(monkeypatch):
    """Factory for a plugin module in ``sys.modules``: ``fake_plugin("name", [("adv_est", "x")])``.

    Pass ``expected=None`` for a module without EXPECTED_REGISTRATIONS.
    """

    def make(name: str, expected: list | None) -> types.ModuleType:
        module = types.ModuleType(name)
        if expected is not None:
            module.EXPECTED_REGISTRATIONS = expected
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return make


@dataclass
class FrontierTestSchema:
    """Schema of the test-only config section ``algorithm.frontier_test``."""

    weight_exponent: float = field(default=1.0, metadata={"ge": 0})
    mode: str = field(default="mean", metadata={"choices": ["mean", "sum"]})
    warmup_steps: int = 0


@pytest.fixture
def test_schema():
    """Registers :class:`FrontierTestSchema` for ``algorithm.frontier_test`` for one test."""
    from verl_frontier.validation import register_schema, unregister_schema

    register_schema("algorithm.frontier_test", FrontierTestSchema)
    yield "algorithm.frontier_test"
    unregister_schema("algorithm.frontier_test")


def run_python(code: str, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a fresh interpreter (as a Ray worker would start)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("VERL_USE_EXTERNAL_PLUGINS", "PYTEST_CURRENT_TEST")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO_ROOT
    )


@pytest.fixture
def python_subprocess():
    return run_python


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory) -> Path:
    """A small tiny world (random-ish tiny models + data), built once per session in about a second."""
    from verl_frontier.tinyworld import build

    out = tmp_path_factory.mktemp("world") / "small-seed0"
    build(out=out, seed=0, size="small", quiet=True, progress=False)
    return out
