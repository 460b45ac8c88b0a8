"""Run ``python -m verl.trainer.main_ppo`` on CPU in a subprocess and read back what verl logged."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from verl_frontier.studies import machine_lock  # one real verl run at a time per machine (flock)

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"


@dataclass
class VerlRun:
    returncode: int
    log: str
    metrics: list[dict] = field(default_factory=list)
    out_dir: Path = None
    #: what launched it (:func:`run_recipe`'s arguments), so that a resume check can launch it again
    recipe: str = ""
    config_name: str = ""
    world_dir: Path = None
    ray: SharedRay | None = field(default=None, repr=False)

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


def assert_trained(run: VerlRun, steps: list[int], tail_lines: int = 60) -> None:
    """The run exited 0 and verl logged exactly these training steps (else: the log's tail)."""
    assert run.returncode == 0, run.tail(tail_lines)
    assert run.train_steps() == steps, (run.train_steps(), run.tail(tail_lines))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SharedRay:
    """One local Ray cluster for all e2e runs (saves a Ray start per run): ``ray start --head`` with fake GPU
    slots, each verl run joins it as a new job (``ray_kwargs.ray_init.address``) and stops it at teardown."""

    def __init__(self, temp_dir: Path, num_gpus: int = 2, num_cpus: int = 16):
        self.temp_dir = temp_dir
        self.address = None
        self.num_gpus, self.num_cpus = num_gpus, num_cpus

    def start(self, attempts: int = 3) -> str:
        """``ray start --head``; retried (after cleaning up) when the GCS times out on a busy machine."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> str:
        # Ray 2.60 turns token authentication on by default; a local test cluster runs without it
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "VERL_PLATFORM": "cpu", "RAY_AUTH_MODE": "disabled"}
        cmd = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={_free_port()}",
            f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}", f"--temp-dir={self.temp_dir}",
            "--include-dashboard=false", "--disable-usage-stats",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed: {proc.stdout}{proc.stderr}")
        match = re.search(r"--address='([^']+)'", proc.stdout)
        self.address = match.group(1) if match else None
        if not self.address:
            raise RuntimeError(f"ray start did not report an address: {proc.stdout}")
        return self.address

    def alive(self) -> bool:
        if not self.address:
            return False
        host, port = self.address.rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
            return True
        return False

    def ensure_alive(self) -> None:
        """Restart the cluster if it died (e.g. someone ran ``ray stop`` on this machine): a verl driver joining a
        dead address waits forever instead of failing."""
        if not self.alive():
            self.stop()
            self.start()

    def overrides(self) -> list[str]:
        # joining an existing cluster: ray.init must not be given resources
        return [
            "~ray_kwargs.ray_init.num_cpus",
            "~ray_kwargs.ray_init.num_gpus",
            f"+ray_kwargs.ray_init.address={self.address}",
        ]

    def stop(self) -> None:
        """Stop THIS cluster only (``ray stop`` would kill every Ray cluster on the machine, including those of
        concurrent test sessions): the processes whose command line names our temp dir, and their children."""
        roots = [pid for pid, cmdline in _processes().items() if str(self.temp_dir) in cmdline]
        _kill_tree(roots)


def _processes() -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _kill_tree(roots: list[int], grace_s: float = 10.0) -> None:
    tree = _children()
    pids, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid not in pids and pid != os.getpid():
            pids.add(pid)
            stack.extend(tree.get(pid, []))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)


def run_recipe(
    recipe: str,
    config_name: str,
    out_dir: Path,
    world_dir: Path,
    overrides: list[str] = (),
    steps: int = 2,
    timeout: int = 900,
    ray: SharedRay | None = None,
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
    if ray is not None:
        env["RAY_AUTH_MODE"] = "disabled"
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
        # Ray workers of an existing cluster do not inherit this process's environment
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics_path}",
        *(ray.overrides() if ray is not None else []),
        *overrides,
    ]
    with machine_lock():
        if ray is not None:
            ray.ensure_alive()
            cmd = [arg for arg in cmd if not arg.startswith("+ray_kwargs.ray_init.address=")] + [
                f"+ray_kwargs.ray_init.address={ray.address}"
            ]
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=out_dir, env=env, capture_output=True, text=True, timeout=timeout)
        wall_s = time.monotonic() - started
    if os.environ.get("FRONTIER_E2E_TIMINGS"):  # one JSON line per verl launch: where, how many steps, seconds
        with open(os.environ["FRONTIER_E2E_TIMINGS"], "a") as f:
            f.write(
                json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST"), "steps": steps, "wall_s": wall_s}) + "\n"
            )
    metrics = []
    if metrics_path.exists():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return VerlRun(proc.returncode, proc.stdout + proc.stderr, metrics, out_dir, recipe, config_name, world_dir, ray)


# ---------------------------------------------------------------------------------------------------------
# resume checks: a run that saved a checkpoint, resumed in a second launch, must log the straight run's metrics
# ---------------------------------------------------------------------------------------------------------

#: metrics that measure the machine, not the training (times, throughput, memory); matched anywhere in the key
MACHINE_METRICS = ("timing_s/", "timing_per_token_ms/", "perf/", "timing/")
#: rollout-vs-training log-prob mismatch metrics: float noise of the rollout engine's batching (~1e-6), compared
#: with an absolute tolerance
NOISE_METRICS = ("rollout_corr/", "training/rollout_probs_diff", "training/rollout_actor_probs")
NOISE_ABS_TOL = 1e-5


#: each resumed launch costs about 100 s of verl start-up on the 2-core CI machine, so the resume checks of the
#: methods without state of their own (their step-dependent behaviour reads verl's restored global step) run only
#: with FRONTIER_E2E_RESUME_ALL=1; the methods with state (OPSDC, ASGLD's optimizer) always run theirs
RESUME_ALL = os.environ.get("FRONTIER_E2E_RESUME_ALL", "") == "1"


def batch_overrides(batch: int, micro: int | None = None) -> list[str]:
    """Overrides for ``batch`` prompts a step, trained in one mini-batch of micro-batches of ``micro`` rows (default:
    the whole batch), log-probs recomputed ``batch`` rows at a time."""
    return [
        f"data.train_batch_size={batch}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro or batch}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={batch}",
    ]


#: kd_uniform's e2e sizes: 8 teacher-written rows a step (also GKD's, whose runs are compared with kd_uniform's)
KD_BATCH = 8
KD_SIZES = [*batch_overrides(KD_BATCH), "actor_rollout_ref.actor.optim.lr_warmup_steps=1", "data.val_max_samples=16"]


def reference_rows(world_dir: Path, out: Path, num: int, source: str = "train.parquet", **build_kwargs) -> Path:
    """The world's reference solutions (``data/<source>``) as ``num`` teacher-written rows, ``out/train.parquet``
    (:func:`verl_frontier.essence.data.build`, no model needed); every row is kept (the references are correct)."""
    from verl_frontier.essence.data import build

    stats = build(world_dir / "data" / source, out, from_field="extra_info.reference", num=num, **build_kwargs)
    assert stats["kept"] == num
    return out / "train.parquet"


def save_at(step: int) -> list[str]:
    """Overrides that make a run save a verl checkpoint every ``step`` steps."""
    return [f"trainer.save_freq={step}"]


def resume_from(run: VerlRun, step: int) -> list[str]:
    """Overrides that resume from ``run``'s checkpoint of ``step`` (the resumed launch writes none)."""
    folder = run.out_dir / "checkpoints" / f"global_step_{step}"
    assert folder.is_dir(), f"no checkpoint at {folder}"
    return ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={folder}", "trainer.save_freq=-1"]


def metric_differences(
    straight: VerlRun, resumed: VerlRun, steps: list[int], rel: float = 1e-5, abs_tol: float = 1e-7
) -> list[str]:
    """Every training metric of ``steps`` that differs between the two runs (beyond ``rel`` and ``abs_tol``: the
    two launches batch some forwards differently, ~1e-7 on log-probs, which differences of log-probs such as
    ACE's confidence shift keep), or is logged by one run only; machine measurements are skipped."""
    a, b = straight.steps(), resumed.steps()
    out = []
    for step in steps:
        da, db = a.get(step, {}), b.get(step, {})
        for key in sorted(set(da) | set(db)):
            if any(part in key for part in MACHINE_METRICS):
                continue
            if key not in da or key not in db:
                out.append(f"step {step} {key}: only in the {'straight' if key in da else 'resumed'} run")
                continue
            x, y = da[key], db[key]
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                tol = NOISE_ABS_TOL if key.startswith(NOISE_METRICS) else abs_tol
                if not math.isclose(x, y, rel_tol=rel, abs_tol=tol):
                    out.append(f"step {step} {key}: straight {x!r} resumed {y!r}")
            elif x != y:
                out.append(f"step {step} {key}: straight {x!r} resumed {y!r}")
    return out


def assert_resumed_like_straight(straight: VerlRun, resumed: VerlRun, steps: list[int], rel: float = 1e-5) -> None:
    """The resumed run trained exactly ``steps`` and logged the straight run's metrics for them."""
    assert_trained(resumed, steps, tail_lines=200)
    diffs = metric_differences(straight, resumed, steps, rel)
    assert not diffs, "\n".join(diffs)


def run_straight(
    recipe: str,
    config_name: str,
    out_dir: Path,
    world_dir: Path,
    overrides: list[str] = (),
    *,
    ray: SharedRay | None = None,
    resumable: bool = True,
    checkpoint: bool | None = None,
    tail_lines: int = 60,
) -> VerlRun:
    """The straight run of a resume check, asserted trained: 4 steps with a checkpoint at step 2 when ``resumable``,
    else 2 steps (with the step-2 checkpoint only when ``checkpoint``; by default when ``resumable``)."""
    steps = [1, 2, 3, 4] if resumable else [1, 2]
    save = resumable if checkpoint is None else checkpoint
    run = run_recipe(
        recipe, config_name, out_dir, world_dir, [*overrides, *(save_at(2) if save else [])], steps=max(steps), ray=ray
    )
    assert_trained(run, steps, tail_lines)
    return run


def assert_resumes(run: VerlRun, overrides: list[str] = (), at: int = 2) -> VerlRun:
    """Launch ``run``'s recipe again (in ``run.out_dir / "resumed"``) with ``overrides`` (the straight run's, without
    its checkpoint setting), resumed from its step-``at`` checkpoint, and assert that it trains the straight run's
    later steps and logs the same metrics for them."""
    last = max(run.train_steps())
    resumed = run_recipe(
        run.recipe, run.config_name, run.out_dir / "resumed", run.world_dir, [*overrides, *resume_from(run, at)],
        steps=last, ray=run.ray,
    )  # fmt: skip
    assert_resumed_like_straight(run, resumed, list(range(at + 1, last + 1)))
    return resumed
