"""``frontier launch`` for real: a tiny recipe through a real SLURM (sbatch) and through a 2-node Ray cluster.

Three verl runs: a SLURM job to completion, a SLURM job cancelled mid-run (no Ray process of it may survive),
and a 2-node run (trainer.nnodes=2) submitted to a head + a second Ray node started separately on this machine.
Each holds the machine lock from submission to the end of the job. SLURM (munge, slurmctld, slurmd) is
installed with apt and started by the ``slurm`` fixture; without root or apt the SLURM tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import slurm_cluster
from verl_runner import _processes, machine_lock

from verl_frontier.launch.raynode import free_ports

pytestmark = pytest.mark.e2e

FRONTIER = str(Path(sys.executable).with_name("frontier"))
TINY = ["grpo_baseline", "--config-name", "grpo_baseline_tiny"]
FAST = ["trainer.total_training_steps=2", "trainer.val_before_train=false", "trainer.test_freq=-1"]
# 2 ranks get 16 of the 8 x 4 samples each: micro-batches of 8 (the tiny recipe's 32 fits one rank only)
MICRO_8 = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
]


@pytest.fixture(scope="module")
def slurm():
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM: {reason}")
    cluster = slurm_cluster.start_slurm()
    yield cluster
    cluster.stop()


def _launch(*args: str, env: dict, cwd: Path, timeout: int = 1200) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([FRONTIER, "launch", *args, "--json"], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no launch record (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, json.loads(lines[-1])


def _env(world: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["FRONTIER_WORLD_DIR"] = str(world)
    return env


def _train_steps(metrics_path: Path) -> list[int]:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return sorted({r["step"] for r in records if "training/global_step" in r["data"]})


def _job_processes(job_id: str) -> list[str]:
    """Processes of this SLURM job: its Ray temp dir on the command line, or SLURM_JOB_ID in the environment."""
    marker, env_marker = f"/tmp/ray-fl-{job_id}", f"SLURM_JOB_ID={job_id}\0".encode()
    found = []
    for pid, cmdline in _processes().items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            environ = b""
        if marker in cmdline or env_marker in environ:
            found.append(f"{pid}: {cmdline[:160]}")
    return found


def test_slurm_job_completes_with_two_steps(slurm, small_world_dir, tmp_path):
    """The README's SLURM command: sbatch through the launcher, wait, COMPLETED, 2 steps, checkpoint + metrics."""
    with machine_lock():
        proc, record = _launch(
            *TINY, "--mode", "slurm", "--partition", slurm.partition, "--run-dir", str(tmp_path / "run"), "--wait",
            "--timeout", "1100", "+platform=cpu", *FAST, "trainer.save_freq=2",
            env=_env(small_world_dir), cwd=tmp_path,
        )  # fmt: skip
    log = Path(record["log_path"]).read_text() if Path(record["log_path"]).exists() else ""
    assert proc.returncode == 0 and record["state"] == "COMPLETED", (record, log[-4000:])
    assert record["job_id"].isdigit() and Path(record["script_path"]).is_file()
    # the world dir reached the job (the tiny recipe's model/data paths resolve from it in the driver)
    assert f"export FRONTIER_WORLD_DIR={small_world_dir}" in Path(record["script_path"]).read_text()
    assert "registrations OK" in log, log[-3000:]  # the per-node check ran in a Ray worker before the trainer
    assert _train_steps(Path(record["metrics_path"])) == [1, 2], log[-3000:]
    checkpoint = Path(record["checkpoint_dir"])
    assert (checkpoint / "global_step_2" / "actor").is_dir()
    assert (checkpoint / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert not _job_processes(record["job_id"])


def test_scancel_leaves_no_ray_process(slurm, small_world_dir, tmp_path):
    """scancel mid-run: the job's Ray (head, raylet, workers) and trainer are gone; other clusters untouched."""
    with machine_lock():
        proc, record = _launch(
            *TINY, "--mode", "slurm", "--run-dir", str(tmp_path / "run"), "+platform=cpu", *FAST,
            "trainer.total_training_steps=50", env=_env(small_world_dir), cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        job_id, log_path = record["job_id"], Path(record["log_path"])
        deadline = time.monotonic() + 600
        # mid-run: the trainer has started on the job's Ray cluster
        while time.monotonic() < deadline:
            log = log_path.read_text() if log_path.exists() else ""
            if "registrations OK" in log and any("ray-fl-" + job_id in c for c in _processes().values()):
                break
            assert "COMPLETED" not in (subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                                                       text=True).stdout), log[-3000:]  # fmt: skip
            time.sleep(2)
        else:
            pytest.fail(f"job {job_id} did not get its Ray cluster up:\n{log[-3000:]}")
        time.sleep(15)  # let the trainer spread its Ray workers
        assert _job_processes(job_id), "expected the job's Ray processes before scancel"
        subprocess.run(["scancel", job_id], check=True)
        from verl_frontier.launch.core import wait_slurm

        state = wait_slurm(job_id, timeout=120, poll=1)
        left = _job_processes(job_id)
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            time.sleep(2)
            left = _job_processes(job_id)
    assert state == "CANCELLED", state
    assert not left, "processes of the cancelled job survived:\n" + "\n".join(left)


@pytest.fixture
def two_node_ray():
    """A Ray head (with the Jobs API) and a second Ray node, started separately: own ports and temp dirs."""
    ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
    port, dashboard = free_ports(2)
    temp = [Path(tempfile.mkdtemp(prefix=f"rfl{i}-")) for i in range(2)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "VERL_PLATFORM": "cpu"}
    node = [
        sys.executable,
        "-m",
        "verl_frontier.launch.raynode",
        "--node-ip",
        ip,
        "--num-cpus",
        "16",
        "--num-gpus",
        "1",
    ]
    procs = []
    try:
        with machine_lock():  # a Ray start beside a busy verl run can time out
            procs.append(subprocess.Popen([*node, "--head", "--port", str(port), "--temp-dir", str(temp[0]),
                                           "--dashboard-port", str(dashboard)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            _wait_for_port(ip, dashboard, 120)
            procs.append(subprocess.Popen([*node, "--address", f"{ip}:{port}", "--temp-dir", str(temp[1])], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        yield {"gcs": f"{ip}:{port}", "dashboard": f"http://{ip}:{dashboard}", "temp_dirs": temp}
    finally:
        for proc in reversed(procs):  # each is `ray start --block`: SIGTERM stops that node only
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        from verl_runner import _kill_tree

        _kill_tree([pid for pid, c in _processes().items() if any(str(t) in c for t in temp)])


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{host}:{port} did not open within {timeout} s")


def test_two_node_ray_cluster_runs_recipe_across_both_nodes(two_node_ray, small_world_dir, tmp_path, monkeypatch):
    """The README's Ray-cluster command: trainer.nnodes=2 on a head + a second node, 2 steps, both nodes used."""
    import ray
    from ray.util.state import list_actors

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")

    ray.init(address=two_node_ray["gcs"], logging_level="ERROR")
    try:
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(2)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    assert len(nodes) == 2
    with machine_lock():
        proc, record = _launch(
            *TINY, "--mode", "ray", "--ray-address", two_node_ray["dashboard"], "--nodes", "2",
            "--run-dir", str(tmp_path / "run"), "--wait", "--timeout", "1100", "+platform=cpu", *FAST, *MICRO_8,
            env=_env(small_world_dir), cwd=tmp_path,
        )  # fmt: skip
    log = Path(record["log_path"]).read_text() if Path(record["log_path"]).exists() else ""
    assert proc.returncode == 0 and record["state"] == "SUCCEEDED", (record, proc.stderr[-2000:], log[-4000:])
    assert record["nodes"] == 2 and log.count("registrations OK") == 2, log[-3000:]
    assert _train_steps(Path(record["metrics_path"])) == [1, 2], log[-3000:]
    # verl's actors (training ranks, rollout servers) were placed on both nodes
    actors = list_actors(address=two_node_ray["dashboard"], detail=True, limit=1000, raise_on_missing_output=False)
    used = {a.node_id for a in actors if a.node_id}
    assert used == nodes, (used, nodes, sorted({a.class_name for a in actors}))
