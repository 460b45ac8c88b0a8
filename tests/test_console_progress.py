"""A console a person can follow: the demo's progress lines, and what ``+platform=cpu`` keeps off the console
(TransferQueue thread warnings, optional-engine warnings, verl's full metric dicts). No verl run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import psutil
import pytest
from omegaconf import OmegaConf

from verl_frontier.studies.progress import (
    MetricsTail,
    RunProgress,
    follow_metrics,
    format_duration,
    held_out_accuracy,
)

ACC = "val-core/tinyworld/acc/mean@1"


def _record(step: int, **data) -> str:
    return json.dumps({"step": step, "data": data}) + "\n"


def _train(step: int, seconds: float, **extra) -> str:
    return _record(step, **{"training/global_step": step, "timing_s/step": seconds, **extra})


# ---------------------------------------------------------------------------------------------- progress lines


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.4, "42s"), (60, "1m00s"), (185, "3m05s"), (3720, "1h02m"), (-3, "0s")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_held_out_accuracy_is_the_mean_over_sources():
    assert held_out_accuracy({"val-core/a/acc/mean@1": 0.25, "val-core/b/acc/mean@1": 0.75, "x": 9}) == 0.5
    assert held_out_accuracy({"val-aux/a/acc/mean@1": 0.25, "actor/loss": 1.0}) is None


def test_progress_lines_from_a_fake_metrics_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    progress = RunProgress(2, 3, "Paced two-stage", total_steps=10)

    def lines():
        return [line for step, data in tail.poll() if (line := progress.update(step, data))]

    assert lines() == []  # no file yet
    with open(path, "w") as f:
        f.write(_record(0, **{ACC: 0.25}))
        f.write(_train(1, 4.0)[:20])  # verl is still writing the line
        f.flush()
        assert lines() == ["run 2/3 Paced two-stage | step 0/10 | held-out acc 0.250 (before training)"]
        f.write(_train(1, 4.0)[20:])
        f.flush()
        assert lines() == ["run 2/3 Paced two-stage | step 1/10 | held-out acc 0.250 (step 0) | 4.0 s/step | ETA 36s"]
        f.write(_train(2, 2.0))
        f.write(_train(3, 1.0, **{"timing_s/testing": 1.0, ACC: 0.5}))  # validation after step 3
        f.write(_record(3, **{"actor/extra": 1.0}))  # neither training nor validation: no line
        f.flush()
        # from three steps on the first (warm-up) step is left out: (2 + 2) / 2 = 2 s/step, 7 steps left
        assert lines() == [
            "run 2/3 Paced two-stage | step 2/10 | held-out acc 0.250 (step 0) | 3.0 s/step | ETA 24s",
            "run 2/3 Paced two-stage | step 3/10 | held-out acc 0.500 (step 3) | 2.0 s/step | ETA 14s",
        ]
    assert progress.eta_seconds(10) == 0


def test_progress_without_validation_or_timings():
    progress = RunProgress(1, 1, "kd", total_steps=150)
    assert progress.update(7, {"training/global_step": 7}) == "run 1/1 kd | step 7/150 | held-out acc - | ETA -"
    assert progress.update(0, {"actor/x": 1.0}) is None


def test_metrics_tail_starts_again_when_a_new_run_replaces_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_train(1, 1.0) + _train(2, 1.0) + "not json\n")
    tail = MetricsTail(path)
    assert [step for step, _ in tail.poll()] == [1, 2]
    path.unlink()
    path.write_text(_train(1, 1.0))  # a new run: a new, shorter file
    assert [step for step, _ in tail.poll()] == [1]
    assert tail.poll() == []


def test_follow_metrics_prints_while_the_file_grows_and_at_the_end(tmp_path):
    path, seen = tmp_path / "metrics.jsonl", []
    progress = RunProgress(1, 2, "uniform", total_steps=2)
    with follow_metrics(path, progress, interval_s=0.02, emit=seen.append):
        with open(path, "w") as f:
            f.write(_train(1, 1.0))
            f.flush()
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:  # printed by the thread, during the run
                time.sleep(0.01)
            assert seen == ["run 1/2 uniform | step 1/2 | held-out acc - | 1.0 s/step | ETA 1s"]
            f.write(_train(2, 1.0, **{ACC: 0.75}))
    assert seen[1:] == ["run 1/2 uniform | step 2/2 | held-out acc 0.750 (step 2) | 1.0 s/step | ETA 0s"]


def test_demo_follows_each_run_and_keeps_its_table(tmp_path, monkeypatch, capsys):
    """The demo prints the log paths first, one line per step of each run, and the same table as before."""
    from verl_frontier import demo

    out = tmp_path / "out"
    calls = []

    def fake_run_arm(arm, seed, run_dir, steps, test_freq, world, save_final=False, console=False):
        calls.append((arm.recipe, steps, console))
        records = [_record(0, **{ACC: 0.1})] + [_train(s, 1.0) for s in range(1, steps + 1)]
        (run_dir / "metrics.jsonl").write_text("".join(records))
        return {"metrics": {0: {ACC: 0.1}}, "wall_s": 3.0, "val_acc": {0: 0.1}, "steps": steps}

    monkeypatch.setattr(demo, "run_arm", fake_run_arm)
    monkeypatch.setattr(demo, "plot", lambda curves, table, path, per_step: None)
    monkeypatch.setattr(demo, "machine_lock", contextlib.nullcontext)
    monkeypatch.setattr("verl_frontier.tinyworld.build", lambda **kwargs: None)
    monkeypatch.setattr("verl_frontier.essence.data.ensure_world_teacher_data", lambda *a, **k: None)
    monkeypatch.setattr("verl_frontier.evaluation.evaluate", lambda *a, **k: {"greedy_accuracy": 0.5})
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(tmp_path / "world"))
    demo.main(["--prompts", "128", "--out", str(out)])  # 16 x 4 per step: 8 steps; 64 x 1: 2 steps
    text = capsys.readouterr().out
    assert calls == [("paced_distill", 8, False), ("paced_two_stage", 8, False), ("kd_uniform", 2, False)]
    first_run = text.index("run 1/3")
    for recipe in ("paced_distill", "paced_two_stage", "kd_uniform"):
        assert text.index(str(out / recipe / "train.log")) < first_run
    assert "run 1/3 uniform on-policy distillation | step 8/8 | held-out acc 0.100 (step 0)" in text
    assert "run 3/3 uniform KD on teacher responses | step 2/2 |" in text
    assert sum("| step " in line for line in text.splitlines()) == 3 * 1 + 8 + 8 + 2  # step 0 + training steps
    assert "held-out greedy accuracy (tiny world test set), seed 0; what each run spent" in text
    # every trained row states the same distinct prompts, and its own steps and sequences
    assert f"  {'student + Paced two-stage':<48} 0.500      8      128        512  3s" in text
    assert f"  {'student + uniform KD on teacher responses':<48} 0.500      2      128        128  3s" in text
    spent = json.loads((out / "demo.json").read_text())["spent"]
    assert {row["prompts"] for row in spent.values()} == {128}


# ----------------------------------------------------------------------------------- +platform=cpu's console


def test_transfer_queue_threads_resolve_to_the_physical_cores(monkeypatch):
    from verl_cpu.config_hooks import install, physical_cores, resolve_runtime_env
    from verl_frontier import recipes as rc

    install()
    cores = str(psutil.cpu_count(logical=False) or os.cpu_count())
    assert physical_cores() == cores
    for name in ("TQ_NUM_THREADS", "TQ_CLIENT_ZMQ_IO_THREADS"):
        monkeypatch.delenv(name, raising=False)
    config = rc.compose_recipe("grpo_baseline", ["+platform=cpu"], config_name="grpo_baseline_tiny")
    env_vars = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env_vars.TQ_NUM_THREADS == cores and env_vars.TQ_CLIENT_ZMQ_IO_THREADS == cores
    monkeypatch.setenv("TQ_NUM_THREADS", "1")  # an exported value is kept
    assert env_vars.TQ_NUM_THREADS == "1"
    # verl hands runtime_env to ray.init unresolved: the driver resolves it first, into strings for Ray
    resolve_runtime_env(config)
    raw = OmegaConf.to_container(config.ray_kwargs.ray_init.runtime_env)["env_vars"]
    assert raw["TQ_NUM_THREADS"] == "1" and raw["TQ_CLIENT_ZMQ_IO_THREADS"] == cores


def test_optional_engine_warnings_are_ignored_and_others_kept():
    from verl_cpu.patches import _ignore_optional_engine_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_optional_engine_warnings(warnings)
        for engine in ("megatron", "mindspeed", "torchtitan", "veomni", "automodel"):
            warnings.warn_explicit(
                f"{engine} engine is not available: X", UserWarning, "e.py", 1, "verl.workers.engine"
            )
        warnings.warn_explicit("megatron engine is not available", UserWarning, "m.py", 1, "mypackage")
        warnings.warn_explicit("something else", UserWarning, "e.py", 2, "verl.workers.engine")
    assert sorted(str(w.message) for w in caught) == ["megatron engine is not available", "something else"]


def test_cpu_worker_imports_verl_engines_without_engine_warnings():
    """A worker of the CPU platform (VERL_PLATFORM=cpu) imports verl's engines; warnings shown by default."""
    code = "import verl, verl.workers.engine"
    env = {**os.environ, "VERL_PLATFORM": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-W", "always::UserWarning", "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "engine is not available" not in proc.stderr, proc.stderr
    env["VERL_PLATFORM"] = ""  # the filter belongs to the CPU platform only
    proc = subprocess.run(
        [sys.executable, "-W", "always::UserWarning", "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert "megatron engine is not available" in proc.stderr


def _tracking(tmp_path, monkeypatch, backends, mode=None):
    from verl.utils import tracking

    from verl_cpu.patches import _brief_console_metrics

    module = types.SimpleNamespace(Tracking=type("Tracking", (tracking.Tracking,), {}))  # verl's class untouched
    _brief_console_metrics(module)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "m.jsonl"))
    if mode:
        monkeypatch.setenv("VERL_CPU_CONSOLE_METRICS", mode)
    return module.Tracking("project", "experiment", backends)


def test_console_gets_one_short_line_when_the_file_logger_has_the_metrics(tmp_path, monkeypatch, capsys):
    logger = _tracking(tmp_path, monkeypatch, ["console", "file"])
    data = {f"actor/m{i}": float(i) for i in range(50)} | {ACC: 0.25, "timing_s/step": 1.23456}
    logger.log(data, step=4)
    logger.finish()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step:")]
    assert printed == [f"step:4 - 52 metrics in {tmp_path / 'm.jsonl'} - {ACC}:0.25 - timing_s/step:1.235"]
    records = [json.loads(line) for line in Path(tmp_path / "m.jsonl").read_text().splitlines()]
    assert records == [{"step": 4, "data": data}]  # every value still in the file


@pytest.mark.parametrize(("backends", "mode"), [(["console"], None), (["console", "file"], "full")])
def test_console_keeps_verls_full_line_without_a_file_logger_or_when_asked(
    tmp_path, monkeypatch, capsys, backends, mode
):
    logger = _tracking(tmp_path, monkeypatch, backends, mode)
    logger.log({"actor/a": 1.0, "actor/b": 2.0}, step=1)
    logger.finish()
    assert "step:1 - actor/a:1.0 - actor/b:2.0" in capsys.readouterr().out
