"""Run ``python -m verl.trainer.main_ppo`` on CPU in a subprocess and read back what verl logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"


@dataclass
class VerlRun:
    returncode: int
    log: str
    metrics: list[dict] = field(default_factory=list)
    out_dir: Path = None

    def steps(self) -> dict[int, dict]:
        """Metrics logged per step (verl logs validation and training of a step in separate records)."""
        merged: dict[int, dict] = {}
        for record in self.metrics:
            merged.setdefault(record["step"], {}).update(record["data"])
        return merged

    def train_steps(self) -> list[int]:
        return sorted(s for s, data in self.steps().items() if "training/global_step" in data)

    def tail(self, n: int = 60) -> str:
        lines = [line for line in self.log.splitlines() if "repeated" not in line and "UserWarning" not in line]
        return "\n".join(lines[-n:])


def run_recipe(
    recipe: str,
    config_name: str,
    out_dir: Path,
    world_dir: Path,
    overrides: list[str] = (),
    steps: int = 2,
    timeout: int = 900,
) -> VerlRun:
    """Run one recipe config for ``steps`` training steps on the CPU platform; metrics go to a JSONL file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST",)}
    env.update(
        FRONTIER_WORLD_DIR=str(world_dir),
        VERL_FILE_LOGGER_PATH=str(metrics_path),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DEDUP_LOGS="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        "--config-path",
        str(RECIPES / recipe),
        "--config-name",
        config_name,
        "+platform=cpu",
        "trainer.logger=[console,file]",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={out_dir / 'checkpoints'}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=out_dir, env=env, capture_output=True, text=True, timeout=timeout)
    metrics = []
    if metrics_path.exists():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return VerlRun(proc.returncode, proc.stdout + proc.stderr, metrics, out_dir)
