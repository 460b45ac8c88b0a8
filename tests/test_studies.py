"""verl_frontier.studies: aggregation over seeds and the resumable study loop (verl runs replaced by a fake)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from verl_frontier import studies


def test_mean_std_by_key_hand_computed():
    curves = [{"1": 0.2, "2": 0.5, "8": 0.9}, {"1": 0.4, "2": 0.5, "8": 0.7}, {"1": 0.6, "2": 0.5}]
    got = studies.mean_std_by_key(curves)
    assert list(got) == ["1", "2"]  # "8" is missing from one curve
    assert got["1"][0] == pytest.approx(0.4)
    assert got["1"][1] == pytest.approx(0.2)  # sample sd of 0.2, 0.4, 0.6
    assert got["2"] == (pytest.approx(0.5), pytest.approx(0.0))
    assert studies.mean_std_by_key([{"a": 3.0}]) == {"a": (3.0, 0.0)}
    assert studies.mean_std_by_key([]) == {}


def test_run_study_resumes_and_records_after_run(tmp_path, monkeypatch):
    calls = []

    def fake_run_arm(arm, seed, out, steps, test_freq, world=None, extra=(), save_final=False):
        calls.append((arm.name, seed, save_final))
        return {"val_acc": {0: 0.1, steps: 0.1 + seed}, "wall_s": 1.0, "steps": steps, "metrics": {1: {"m": seed}}}

    monkeypatch.setattr(studies, "run_arm", fake_run_arm)
    study = studies.Study("s", [studies.Arm("a", "r", "c"), studies.Arm("b", "r", "c")], metric_keys=("m",))
    evaluated = []

    def after_run(arm, seed, run_dir, run):
        evaluated.append((arm.name, seed, run_dir))
        run["eval"] = {"score": seed * 10}

    results = studies.run_study(study, [0, 1], tmp_path, steps=4, after_run=after_run)
    assert calls == [("a", 0, True), ("b", 0, True), ("a", 1, True), ("b", 1, True)]
    assert evaluated[0] == ("a", 0, tmp_path / "a" / "seed0")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    assert saved["runs"]["b/seed1"]["eval"] == {"score": 10}
    assert saved["runs"]["a/seed1"]["kept_metrics"] == {"1": {"m": 1}}
    assert (
        studies.final_checkpoint(tmp_path / "a" / "seed0", 4)
        == tmp_path / "a" / "seed0" / "checkpoints" / "global_step_4"
    )

    # a second call skips finished pairs; without after_run nothing asks verl to save checkpoints
    calls.clear()
    studies.run_study(study, [0, 1, 2], tmp_path, steps=4)
    assert calls == [("a", 2, False), ("b", 2, False)]
    summary = studies.summarize(json.loads((tmp_path / "results.json").read_text()), ["a"])
    assert summary["a"]["final_mean"] == pytest.approx(statistics_mean([0.1, 1.1, 2.1]))
    assert not math.isnan(summary["a"]["final_std"])


def test_run_arm_passes_absolute_paths_to_verl(tmp_path, monkeypatch):
    """verl runs with cwd = the run dir: a relative ``--out`` must not become a path relative to it."""
    import contextlib
    import subprocess

    seen = {}

    def fake_subprocess_run(cmd, env, cwd, **kwargs):
        seen.update(cmd=cmd, env=env, cwd=cwd)
        Path(env["VERL_FILE_LOGGER_PATH"]).write_text(json.dumps({"step": 0, "data": {"val/acc/mean@1": 0.5}}) + "\n")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(studies.subprocess, "run", fake_subprocess_run)
    monkeypatch.setattr(studies, "machine_lock", contextlib.nullcontext)
    monkeypatch.chdir(tmp_path)
    run = studies.run_arm(studies.Arm("a", "grpo_baseline", "grpo_baseline_tiny"), 0, Path("rel/a"), 2, 1)
    out = tmp_path / "rel" / "a"
    assert Path(seen["cwd"]) == out and Path(seen["env"]["VERL_FILE_LOGGER_PATH"]) == out / "metrics.jsonl"
    assert f"trainer.default_local_dir={out / 'checkpoints'}" in seen["cmd"]
    assert run["steps"] == 2 and (out / "train.log").exists()


def statistics_mean(values):
    return sum(values) / len(values)


def test_publish_results_writes_summary_and_copies_runs(tmp_path):
    import json

    from verl_frontier.studies import publish_results

    study_out, recipe = tmp_path / "out", tmp_path / "recipe"
    study_out.mkdir()
    recipe.mkdir()
    (study_out / "results.json").write_text(json.dumps({"runs": {"a/seed0": {"wall_s": 1.0}}}))
    publish_results(recipe, study_out, {"summary": [1, 2]})
    assert json.loads((recipe / "results.json").read_text()) == {"summary": [1, 2]}
    assert json.loads((recipe / "results_runs.json").read_text())["runs"]["a/seed0"]["wall_s"] == 1.0
    assert sorted(p.name for p in recipe.iterdir()) == ["results.json", "results_runs.json"]  # no temp files left


def test_study_parser_defaults_and_passthrough_overrides():
    from verl_frontier.studies import study_parser
    from verl_frontier.tinyworld.paths import repo_root

    parser = study_parser("Title line.\nmore", "demo", seeds=[0, 1], steps=12, test_freq=4)
    args, extra = parser.parse_known_args(["--steps", "3", "actor_rollout_ref.actor.optim.lr=1e-3"])
    assert (args.seeds, args.steps, args.test_freq) == ([0, 1], 3, 4)
    assert args.out == repo_root() / "outputs" / "demo_study"
    assert extra == ["actor_rollout_ref.actor.optim.lr=1e-3"]  # Hydra overrides go through to verl
    assert parser.description == "Title line."


def test_grpo_reproduce_paired_table_reads_old_and_new_runs():
    """The GRPO study's table: runs from before the held-out set (``paired``/``eval``) and after (per eval set)."""
    import importlib.util

    from verl_frontier.tinyworld.paths import repo_root

    spec = importlib.util.spec_from_file_location("grpo_reproduce", repo_root() / "recipes/grpo_baseline/reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    greedy = {"n": 4, "before_acc": 0.25, "after_acc": 0.75, "only_before": 0, "only_after": 2, "p_value": 0.5}
    ev = {"pass_at_k": {"1": 0.5, "8": 0.9}}
    results = {
        "base": {"test": {"pass_at_k": {"1": 0.25, "8": 0.8}}, "heldout": {"pass_at_k": {"1": 0.2, "8": 0.7}}},
        "runs": {
            "old/seed0": {"paired": greedy, "eval": ev},
            "new/seed0": {
                **{f"paired_{name}": greedy for name in ("test", "heldout")},
                **{f"eval_{name}": ev for name in ("test", "heldout")},
                **{f"sign_flip_{name}": {"p_value": 0.03} for name in ("test", "heldout")},
            },
        },
    }
    rows = module.paired_table(results).splitlines()[2:]
    assert rows == [
        "| old/seed0 | test (4) | 0.250 | 0.750 | 0 / 2 | 0.5 | 0.250 | 0.500 | nan | 0.800 | 0.900 |",
        "| new/seed0 | test (4) | 0.250 | 0.750 | 0 / 2 | 0.5 | 0.250 | 0.500 | 0.03 | 0.800 | 0.900 |",
        "| new/seed0 | heldout (4) | 0.250 | 0.750 | 0 / 2 | 0.5 | 0.200 | 0.500 | 0.03 | 0.700 | 0.900 |",
    ]
    assert [arm.name for arm in module.arms()] == ["grpo_64x8_nokl", "grpo_64x8", "grpo_8x4"]
    assert "actor_rollout_ref.actor.use_kl_loss=false" in module.arms()[0].overrides
