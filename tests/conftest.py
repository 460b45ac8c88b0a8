"""Shared pytest fixtures.

The default suite (``make test``) includes tests marked ``e2e`` (real verl runs); ``make test-fast``
deselects them with ``-m "not e2e"``. The unit tests never start Ray.
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


def write_rl_parquet(path: Path, rows: int = 2, **extra_columns) -> Path:
    """A small parquet file with the columns verl's RL dataset and reward manager read (``prompt``,
    ``data_source``, ``reward_model.ground_truth``, ...); ``extra_columns``: column -> one value per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "data_source": ["test"] * rows,
        "prompt": [[{"role": "user", "content": f"1+{i}="}] for i in range(rows)],
        "ability": ["math"] * rows,
        "reward_model": [{"style": "rule", "ground_truth": str(1 + i)} for i in range(rows)],
        "extra_info": [{"index": i} for i in range(rows)],
        **{name: [value] * rows for name, value in extra_columns.items()},
    }
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def rl_parquet():
    """:func:`write_rl_parquet`: ``rl_parquet(path, rows=2, **extra_columns)`` writes a small valid data file."""
    return write_rl_parquet


@pytest.fixture
def data_overrides(tmp_path) -> list[str]:
    """Hydra overrides pointing ``data.train_files`` / ``data.val_files`` at small valid parquet files."""
    train = write_rl_parquet(tmp_path / "train.parquet")
    val = write_rl_parquet(tmp_path / "test.parquet")
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


#: the tiny Qwen2 the unit tests build; any ``Qwen2Config`` field can be overridden per model
TINY_QWEN2 = dict(
    vocab_size=40,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


def build_tiny_qwen2(vocab_size: int = 40, seed: int = 0, *, jitter: float = 0.0, attn_implementation=None, **config):
    """A randomly initialised tiny ``Qwen2ForCausalLM`` in eval mode, the same for the same arguments.

    ``config``: ``Qwen2Config`` fields over :data:`TINY_QWEN2`; ``jitter``: add ``jitter * N(0, 1)`` to every
    parameter (breaks the initialisation's symmetries: zero biases, ones in the norms);
    ``attn_implementation``: e.g. ``"eager"``, else transformers' default."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(**{**TINY_QWEN2, "vocab_size": vocab_size, **config})
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    model = Qwen2ForCausalLM(cfg).eval()
    if jitter:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(jitter * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def tiny_qwen2():
    """The tiny-model factory :func:`build_tiny_qwen2`: ``tiny_qwen2(60, seed=1)``."""
    return build_tiny_qwen2


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory) -> Path:
    """A small tiny world (random-ish tiny models + data), built once per session in about a second."""
    from verl_frontier.tinyworld import build

    out = tmp_path_factory.mktemp("world") / "small-seed0"
    build(out=out, seed=0, size="small", quiet=True, progress=False)
    return out
