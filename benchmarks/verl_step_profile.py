"""Where a verl step's time goes on CPU, per process: CPU seconds of every process of the run between two
training steps, verl's own step timings, and optionally a py-spy profile of one process.

Runs ``python -m verl.trainer.main_ppo`` (default: the demo's uniform on-policy distillation,
``paced_distill_tiny`` with alpha = beta = 0: 16 prompts x 4 samples, teacher on the ``hf`` server), follows its
metrics file, and snapshots the CPU time (user + system) of the driver and every descendant (Ray workers
included) when step ``--from`` and step ``--to`` are logged. Prints, per process kind (``ray::AgentLoopWorkerTQ``,
``ray::WorkerDict``, ...), CPU seconds per step and the share of the machine's cores it used, and the median of
verl's ``timing_s/*`` over the window. ``--py-spy KIND`` records that process (e.g. ``AgentLoopWorker``) over the
window at 100 Hz and prints its heaviest frames (inclusive share of samples).

    python benchmarks/verl_step_profile.py [--from 4] [--to 10] [--py-spy AgentLoopWorker]
        [--recipe paced_distill --config-name paced_distill_tiny] [--out benchmarks/results/verl_step_profile.json]
        [Hydra overrides ...]

Run it alone on the machine: other load changes every figure.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_file, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OVERRIDES = ["algorithm.paced.alpha=0", "algorithm.paced.beta=0"]


def process_kind(proc: psutil.Process) -> str:
    """``ray::Name`` for a Ray worker (its process title), else the program or script name."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if not cmdline:
        return proc.name()
    first = cmdline[0]
    if first.startswith("ray::"):
        return first.split()[0].split(".")[0]  # ray::HFRolloutServer.generate -> ray::HFRolloutServer
    if "main_ppo" in " ".join(cmdline):
        return "driver (main_ppo)"
    script = next((Path(a).name for a in cmdline[1:] if a.endswith(".py")), None)
    return script or Path(first).name


def cpu_snapshot(root: psutil.Process) -> dict[int, tuple[str, float]]:
    """pid -> (kind, user + system CPU seconds) of ``root`` and all its descendants."""
    out = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            out[proc.pid] = (process_kind(proc), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def logged_steps(path: Path) -> dict[int, dict]:
    steps = {}
    if not path.exists():
        return steps
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        data = record.get("data", record)
        step = record.get("step", data.get("training/global_step"))
        if step is not None:
            steps.setdefault(int(step), {}).update(data)
    return steps


def heaviest_frames(raw: Path, top: int = 25) -> list[tuple[float, str]]:
    """Inclusive share of samples per frame of a py-spy ``raw`` (collapsed stacks) file."""
    inclusive, total = collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(round(count / total, 3), frame) for frame, count in inclusive.most_common(top)] if total else []


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", type=POSITIVE_INT, default=4, help="first step of the window")
    parser.add_argument("--to", dest="end", type=POSITIVE_INT, default=10, help="last step of the window")
    parser.add_argument("--recipe", default="paced_distill")
    parser.add_argument("--config-name", default="paced_distill_tiny")
    parser.add_argument("--py-spy", default=None, help="record the process whose kind contains this name")
    parser.add_argument("--out", type=output_file, default=REPO / "benchmarks" / "results" / "verl_step_profile.json")
    args, overrides = parser.parse_with_overrides(argv)
    if args.end <= args.start:
        parser.error(f"argument --to: must be after --from ({args.start}), got {args.end}")
    if not (REPO / "recipes" / args.recipe / f"{args.config_name}.yaml").exists():
        parser.error(f"argument --config-name: recipes/{args.recipe}/{args.config_name}.yaml does not exist")
    if args.py_spy and shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        parser.error("argument --py-spy: py-spy is not installed next to this Python")
    if args.recipe == "paced_distill" and args.config_name == "paced_distill_tiny":
        overrides = [*DEFAULT_OVERRIDES, *overrides]

    from verl_frontier.studies import full_world

    world = full_world()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics.jsonl"
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics), "RAY_USAGE_STATS_ENABLED": "0",
               "FRONTIER_WORLD_DIR": str(world)}  # fmt: skip
        cmd = [
            sys.executable, "-m", "verl.trainer.main_ppo",
            "--config-path", str(REPO / "recipes" / args.recipe), "--config-name", args.config_name, "+platform=cpu",
            "trainer.logger=[console,file]", f"trainer.total_training_steps={args.end + 1}",
            "trainer.val_before_train=false", f"trainer.test_freq={args.end + 1}", "trainer.save_freq=-1",
            *overrides,
        ]  # fmt: skip
        print("$ " + " ".join(cmd), flush=True)
        log = open(Path(tmp) / "train.log", "w")
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        snapshots, spy, spy_raw = {}, None, Path(tmp) / "spy.raw"
        try:
            for step in (args.start, args.end):
                while step not in logged_steps(metrics):
                    if proc.poll() is not None:
                        tail = (Path(tmp) / "train.log").read_text().splitlines()[-20:]
                        raise SystemExit(f"verl exited ({proc.returncode}) before step {step}:\n" + "\n".join(tail))
                    time.sleep(0.2)
                snapshots[step] = (time.perf_counter(), cpu_snapshot(root))
                print(f"step {step} logged", flush=True)
                if step == args.start and args.py_spy:
                    target = next((pid for pid, (kind, _) in snapshots[step][1].items() if args.py_spy in kind), None)
                    if target is None:
                        kinds = sorted({kind for kind, _ in snapshots[step][1].values()})
                        raise SystemExit(f"--py-spy: no process kind contains {args.py_spy!r}; kinds: {kinds}")
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(target), "-r", "100",
                         "-f", "raw", "-o", str(spy_raw)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(timeout=60)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.terminate()
            log.close()
        steps = logged_steps(metrics)
        frames = heaviest_frames(spy_raw) if spy is not None and spy_raw.exists() else []

    (t0, first), (t1, last) = snapshots[args.start], snapshots[args.end]
    n_steps, wall = args.end - args.start, t1 - t0
    per_kind = collections.Counter()
    for pid, (kind, seconds) in last.items():
        per_kind[kind] += seconds - (first[pid][1] if pid in first else 0.0)
    window = [steps[s] for s in range(args.start + 1, args.end + 1) if s in steps]
    timing_keys = sorted({k for d in window for k in d if k.startswith("timing_s/")})
    timings = {k: round(statistics.median(d[k] for d in window if k in d), 3) for k in timing_keys}
    cores = psutil.cpu_count(logical=True)
    rows = [
        {"process": kind, "cpu_s_per_step": round(sec / n_steps, 3), "share_of_cores": round(sec / (wall * cores), 3)}
        for kind, sec in per_kind.most_common()
        if sec > 0.005 * n_steps
    ]
    command = [part.replace(f"{REPO}/", "") for part in cmd]  # repository-relative, as committed
    result = {
        "command": command, "window_steps": [args.start, args.end], "wall_s_per_step": round(wall / n_steps, 3),
        "cpu_s_per_step": round(sum(per_kind.values()) / n_steps, 3), "cores": cores,
        "verl_timing_median": timings, "processes": rows, "py_spy": {"process": args.py_spy, "frames": frames},
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    print(f"\nsteps {args.start}..{args.end}: {result['wall_s_per_step']} s wall per step, "
          f"{result['cpu_s_per_step']} CPU s per step on {cores} cores")  # fmt: skip
    print("verl timing_s (median):", json.dumps(timings))
    print("\n| process | CPU s / step | share of the cores |\n|---|---|---|")
    for row in rows:
        print(f"| {row['process']} | {row['cpu_s_per_step']} | {row['share_of_cores']:.0%} |")
    if frames:
        print(f"\npy-spy of {args.py_spy}: heaviest frames (inclusive share of samples)")
        for share, frame in frames:
            print(f"  {share:6.1%}  {frame[:140]}")
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
