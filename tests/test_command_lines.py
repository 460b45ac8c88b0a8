"""Every command line rejects a bad argument before doing any work: exit code 2, one stderr line naming the
argument, no traceback, nothing written. ORBIT environments and the multi-episode wrapper reject bad
constructor arguments with one line naming the argument and the value.

Commands and the arguments checked here (one representative bad value each):

* ``frontier`` (typer): ``check``/``recipes`` (unknown option), ``new-recipe`` (missing --from),
  ``launch`` (--mode, --nodes, --gpus-per-node, --cpus-per-node, --time, --timeout, --run-dir, --env),
  ``world build`` (--size, --seed, --threads, --out), ``world info`` (PATH, --size, --seed),
  ``world heldout`` (PATH, --rows-per-cell), ``eval`` (CHECKPOINT, DATA file/parquet/columns/rows, --n,
  --k-max, --temperature, --max-new-tokens, --seed, --limit, --batch-size, --reward, --out);
* ``python -m verl_frontier.slm_compress`` prune (--src, --dst, --mlp-sparsity, --attn-sparsity,
  --importance, --calib, --calib-n), quantize (--src, --dst, --scheme, --group-size, --device),
  measure (PATH, --data, --limit);
* ``python -m verl_frontier.demo`` (--prompts, --val-every, --size, --out, --eval-limit, a stray
  argument that is not a Hydra override);
* ``recipes/*/reproduce.py`` (--seeds, --steps, --test-freq, --out, stray argument; --eval-limit, --arms,
  --num-prompts, --warm-steps; slm_compress: --seed, --mlp-sparsity, --attn-sparsity, --importance,
  --calib, --limit), ``recipes/asgld_grpo/tiny_kd_compare.py`` (--steps, --optimizer, --lr, --out),
  ``recipes/tinyworld/sweep_sft.py`` (ROLE, STEPS, LR, --world, --threads, --batch, --warmup-frac,
  --weight-decay, --verbose-frac, --verbose-batch-div);
* ``benchmarks/*.py``: ace_advantage (--groups, --n, --length, --repeats, --out), asgld_saddle_escape
  (--dims, --seeds, --png, --out), chunked_kd_loss (--tokens, --vocab, --chunk-size, --repeats, --seed,
  --beta, --threads, --kinds, --reference-rows, --json), orbit_env_throughput (--seconds, --out),
  paced_frontier_drop (--steps, --seed, --trainer, --work, --out), verl_cpu_startup (--steps, --out).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent


def assert_one_line(code, err: str, needle: str) -> str:
    assert code == 2, (code, err)
    err = err.strip()
    assert "Traceback" not in err, err
    assert err.count("\n") == 0, err
    assert err.startswith("error: "), err
    assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def paths(tmp_path_factory, small_world_dir) -> dict[str, str]:
    """Placeholders of the cases: a plain file, a directory that is no world, a parquet with the wrong
    columns, an empty parquet (right columns, no rows), and the small world's checkpoint and data."""
    import pandas as pd

    base = tmp_path_factory.mktemp("cmdline")
    (base / "file.txt").write_text("not a parquet, not a directory\n")
    (base / "plain_dir").mkdir()
    pd.DataFrame({"question": ["1+1"], "answer": ["2"]}).to_parquet(base / "wrong_columns.parquet")
    full = pd.read_parquet(small_world_dir / "data" / "test.parquet")
    full.iloc[:0].to_parquet(base / "no_rows.parquet")
    return {
        "file": str(base / "file.txt"),
        "plain_dir": str(base / "plain_dir"),
        "wrong_columns": str(base / "wrong_columns.parquet"),
        "no_rows": str(base / "no_rows.parquet"),
        "world": str(small_world_dir),
        "ckpt": str(small_world_dir / "teacher"),
        "data": str(small_world_dir / "data" / "test.parquet"),
        "missing": str(base / "missing"),
    }


def fill(argv: list[str], paths: dict[str, str], out: Path) -> list[str]:
    return [a.format(out=out, **paths) for a in argv]


# --------------------------------------------------------------------------- frontier (typer)

FRONTIER_CASES = [
    (["check", "--bogus"], "--bogus"),
    (["recipes", "--bogus"], "--bogus"),
    (["new-recipe", "x"], "--from"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--mode", "k8s"], "--mode"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--nodes", "0"], "--nodes"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--gpus-per-node", "-1"], "--gpus-per-node"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--cpus-per-node", "x"], "--cpus-per-node"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--time", "soon"], "--time"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--time", "0"], "--time"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--timeout", "0"], "--timeout"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{file}"], "--run-dir"),
    (["launch", "grpo_baseline", "--dry-run", "--run-dir", "{out}", "--env", "1X=2"], "--env"),
    (["world", "build", "--out", "{out}", "--size", "medium"], "--size"),
    (["world", "build", "--out", "{out}", "--seed", "-1"], "--seed"),
    (["world", "build", "--out", "{out}", "--threads", "0"], "--threads"),
    (["world", "build", "--out", "{file}"], "--out"),
    (["world", "info", "{plain_dir}"], "path"),
    (["world", "info", "{missing}"], "path"),
    (["world", "info", "--size", "huge"], "--size"),
    (["world", "info", "--seed", "x"], "--seed"),
    (["world", "heldout", "{plain_dir}"], "path"),
    (["world", "heldout", "{world}", "--rows-per-cell", "0"], "--rows-per-cell"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--batch-size", "0"], "--batch-size"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--n", "-1"], "--n"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--n", "two"], "--n"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--n", "0", "--no-greedy"], "--n"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--k-max", "0"], "--k-max"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--n", "4", "--k-max", "5"], "--k-max"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--temperature", "0"], "--temperature"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--temperature", "nan"], "--temperature"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--seed", "-3"], "--seed"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--limit", "0"], "--limit"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--reward", "no_such_module_xyz:score"], "--reward"),
    (["eval", "{ckpt}", "{data}", "--out", "{out}", "--reward", "json:no_such_function"], "--reward"),
    (["eval", "{ckpt}", "{data}", "--out", "{file}"], "--out"),
    (["eval", "{ckpt}", "{wrong_columns}", "--out", "{out}"], "data"),
    (["eval", "{ckpt}", "{no_rows}", "--out", "{out}"], "data"),
    (["eval", "{ckpt}", "{file}", "--out", "{out}"], "data"),
    (["eval", "{ckpt}", "{missing}", "--out", "{out}"], "data"),
    (["eval", "{missing}", "{data}", "--out", "{out}"], "checkpoint"),
    (["eval", "{plain_dir}", "{data}", "--out", "{out}"], "checkpoint"),
]


@pytest.mark.parametrize("argv, needle", FRONTIER_CASES, ids=[" ".join(c[0][:3]) + f" {c[1]}" for c in FRONTIER_CASES])
def test_frontier_rejects_bad_argument(cli, paths, tmp_path, argv, needle):
    out = tmp_path / "out"
    result = cli(*fill(argv, paths, out))
    assert_one_line(result.exit_code, result.stderr, needle)
    assert "Traceback" not in result.output
    assert not out.exists()


def test_frontier_eval_bad_value_message(cli, paths, tmp_path):
    result = cli("eval", paths["ckpt"], paths["data"], "--batch-size", "0")
    assert result.stderr.strip() == "error: --batch-size: must be an integer >= 1, got 0"
    result = cli("eval", paths["ckpt"], paths["wrong_columns"])
    err = assert_one_line(result.exit_code, result.stderr, "wrong_columns.parquet")
    assert "has no column 'prompt'" in err and "answer, question" in err


def test_frontier_eval_checks_rows_before_loading_the_model(paths, tmp_path, monkeypatch):
    """A parquet with the right columns but a malformed row is reported by ``evaluate`` without loading."""
    import pandas as pd
    import transformers

    from verl_frontier.arguments import InputError
    from verl_frontier.evaluation import evaluate

    def not_reached(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", not_reached)
    rows = pd.read_parquet(paths["data"]).iloc[:3].copy()
    rows["prompt"] = ["just a string"] * 3
    bad = tmp_path / "bad_prompt.parquet"
    rows.to_parquet(bad)
    with pytest.raises(InputError, match=r"data_parquet: row 0: prompt must be a non-empty list"):
        evaluate(paths["ckpt"], bad, n=0)
    for kwargs, name in (({"batch_size": 0}, "batch_size"), ({"n": 2, "k_max": 3}, "k_max"), ({"limit": -1}, "limit")):
        with pytest.raises(InputError, match=rf"^{name}: "):
            evaluate(paths["ckpt"], paths["data"], **kwargs)
    with pytest.raises(InputError, match=r"^out_dir: "):
        evaluate(paths["ckpt"], paths["data"], out_dir=paths["file"])
    from dataclasses import replace

    from verl_frontier.orbit.data import PRESETS, write

    orbit = write(replace(PRESETS["tiny"], train_size=2, val_seeds_per_env=1), tmp_path / "orbit")["test"]
    with pytest.raises(InputError, match=r"^n: ORBIT rows are evaluated by sampled trials"):
        evaluate(paths["ckpt"], orbit, n=0)


def test_eval_writes_its_outputs_atomically(tmp_path, monkeypatch):
    """``write_outputs`` fails as a whole: a plotting error leaves no half-written directory."""
    from verl_frontier.evaluation import core

    result = {"n": 2, "temperature": 1.0, "pass_at_k": {"1": 0.5, "2": 0.75}, "greedy_accuracy": 0.5}

    def broken_plot(result, path):
        Path(path).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(core, "plot_pass_at_k", broken_plot)
    with pytest.raises(OSError):
        core.write_outputs(result, tmp_path / "eval_out")
    assert not (tmp_path / "eval_out").exists()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    paths = core.write_outputs(result, tmp_path / "eval_out")
    assert sorted(p.name for p in (tmp_path / "eval_out").iterdir()) == ["eval.json", "pass_at_k.png"]
    assert json.loads(paths["json"].read_text())["n"] == 2


# --------------------------------------------------------------------------- argparse scripts


@contextlib.contextmanager
def deadline(seconds: int):
    """A script that wrongly accepted its arguments would start real work: fail instead of hanging."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s: the bad argument was accepted")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_MODULES: dict[str, object] = {}


def load_script(relative: str):
    if relative not in _MODULES:
        spec = importlib.util.spec_from_file_location(
            f"_cmdline_{Path(relative).stem}_{len(_MODULES)}", REPO / relative
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[relative] = module
    return _MODULES[relative]


#: names a script calls once its arguments are accepted (building worlds, training, evaluating)
WORK = ("full_world", "run_study", "run_arm", "base_evaluation", "ensure_world_teacher_data", "build", "train",
        "make_model", "prepare", "measure", "make_world", "run_once", "worker")  # fmt: skip


def run_script_main(main, argv, capsys, monkeypatch, module=None):
    import verl_frontier.tinyworld

    def not_reached(*args, **kwargs):
        raise AssertionError("the script went past its argument checks")

    monkeypatch.setattr(verl_frontier.tinyworld, "build", not_reached)
    for name in WORK:
        if module is not None and callable(getattr(module, name, None)):
            monkeypatch.setattr(module, name, not_reached)
    with deadline(60):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, capsys.readouterr().err


STUDY_COMMON = [
    (["--steps", "0"], "--steps"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "1", "1"], "--seeds"),
    (["--test-freq", "x"], "--test-freq"),
    (["--out", "{file}"], "--out"),
    (["--stpes", "3"], "--stpes"),
    (["trainer.total_epochs"], "trainer.total_epochs"),
]
SCRIPT_CASES = [
    *[
        (f"recipes/{r}/reproduce.py", argv, needle)
        for r in ("ace_grpo", "essence", "gkd_mix", "grpo_baseline", "kd_uniform", "opsdc", "orbit", "paced_distill")
        for argv, needle in STUDY_COMMON
    ],  # fmt: skip
    ("recipes/ace_grpo/reproduce.py", ["--eval-limit", "0"], "--eval-limit"),
    ("recipes/essence/reproduce.py", ["--num-prompts", "0"], "--num-prompts"),
    ("recipes/kd_uniform/reproduce.py", ["--num-prompts", "-5"], "--num-prompts"),
    ("recipes/kd_uniform/reproduce.py", ["--arms", "nope"], "--arms"),
    ("recipes/grpo_baseline/reproduce.py", ["--arms", "grpo_8x4", "nope"], "--arms"),
    ("recipes/paced_distill/reproduce.py", ["--arms", "nope"], "--arms"),
    ("recipes/orbit/reproduce.py", ["--warm-steps", "0"], "--warm-steps"),
    ("recipes/gkd_mix/reproduce.py", ["--prompts", "0"], "--prompts"),
    ("recipes/gkd_mix/reproduce.py", ["--lrs", "2"], "--lrs"),
    ("recipes/gkd_mix/reproduce.py", ["--arms", "on_policy_64x1"], "--arms"),
    ("recipes/gkd_mix/reproduce.py", ["--cold-start", "0"], "--cold-start"),
    ("recipes/gkd_mix/reproduce.py", ["--sweep-prompts", "-1"], "--sweep-prompts"),
    ("recipes/gkd_mix/reproduce.py", ["--tune", "on_policy_64x1"], "--tune"),
    ("recipes/gkd_mix/reproduce.py", ["--tune", "nope"], "--tune"),
    ("recipes/gkd_mix/trl_compare.py", ["--lmbdas", "0.3"], "--lmbdas"),
    ("recipes/gkd_mix/trl_compare.py", ["--lmbdas", "1.5"], "--lmbdas"),
    ("recipes/gkd_mix/trl_compare.py", ["--seeds", "0"], "--seeds"),
    ("recipes/gkd_mix/trl_compare.py", ["--study", "{plain_dir}"], "--study"),
    ("recipes/slm_compress/reproduce.py", ["--steps", "0"], "--steps"),
    ("recipes/slm_compress/reproduce.py", ["--test-freq", "-1"], "--test-freq"),
    ("recipes/slm_compress/reproduce.py", ["--seed", "x"], "--seed"),
    ("recipes/slm_compress/reproduce.py", ["--mlp-sparsity", "1.0"], "--mlp-sparsity"),
    ("recipes/slm_compress/reproduce.py", ["--attn-sparsity", "-0.1"], "--attn-sparsity"),
    ("recipes/slm_compress/reproduce.py", ["--importance", "random"], "--importance"),
    ("recipes/slm_compress/reproduce.py", ["--calib", "0"], "--calib"),
    ("recipes/slm_compress/reproduce.py", ["--limit", "0"], "--limit"),
    ("recipes/slm_compress/reproduce.py", ["--out", "{file}"], "--out"),
    ("recipes/slm_compress/reproduce.py", ["--stpes", "3"], "--stpes"),
    ("recipes/asgld_grpo/tiny_kd_compare.py", ["--steps", "0"], "--steps"),
    ("recipes/asgld_grpo/tiny_kd_compare.py", ["--optimizer", "SGD"], "--optimizer"),
    ("recipes/asgld_grpo/tiny_kd_compare.py", ["--lr", "0"], "--lr"),
    ("recipes/asgld_grpo/tiny_kd_compare.py", ["--out", "{file}"], "--out"),
    ("recipes/tinyworld/sweep_sft.py", ["coach", "10", "1e-3", "--world", "{world}"], "role"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "0", "1e-3", "--world", "{world}"], "steps"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "-1e-3", "--world", "{world}"], "lr"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--world", "{plain_dir}"], "--world"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--world", "{world}", "--threads", "0"], "--threads"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--world", "{world}", "--batch", "0"], "--batch"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--warmup-frac", "1"], "--warmup-frac"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--weight-decay", "-1"], "--weight-decay"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--verbose-frac", "1.5"], "--verbose-frac"),
    ("recipes/tinyworld/sweep_sft.py", ["teacher", "10", "1e-3", "--verbose-batch-div", "0"], "--verbose-batch-div"),
    ("benchmarks/ace_advantage.py", ["--groups", "0"], "--groups"),
    ("benchmarks/ace_advantage.py", ["--n", "0"], "--n"),
    ("benchmarks/ace_advantage.py", ["--length", "x"], "--length"),
    ("benchmarks/ace_advantage.py", ["--repeats", "-1"], "--repeats"),
    ("benchmarks/ace_advantage.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/asgld_saddle_escape.py", ["--dims", "10", "0"], "--dims"),
    ("benchmarks/asgld_saddle_escape.py", ["--seeds", "0"], "--seeds"),
    ("benchmarks/asgld_saddle_escape.py", ["--png", "{plain_dir}"], "--png"),
    ("benchmarks/asgld_saddle_escape.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/chunked_kd_loss.py", ["--tokens", "0"], "--tokens"),
    ("benchmarks/chunked_kd_loss.py", ["--vocab", "-1"], "--vocab"),
    ("benchmarks/chunked_kd_loss.py", ["--chunk-size", "0"], "--chunk-size"),
    ("benchmarks/chunked_kd_loss.py", ["--repeats", "0"], "--repeats"),
    ("benchmarks/chunked_kd_loss.py", ["--seed", "-1"], "--seed"),
    ("benchmarks/chunked_kd_loss.py", ["--beta", "1.5"], "--beta"),
    ("benchmarks/chunked_kd_loss.py", ["--threads", "-1"], "--threads"),
    ("benchmarks/chunked_kd_loss.py", ["--kinds", "forward_kl,kl"], "--kinds"),
    ("benchmarks/chunked_kd_loss.py", ["--kinds", ","], "--kinds"),
    ("benchmarks/chunked_kd_loss.py", ["--reference-rows", "0"], "--reference-rows"),
    ("benchmarks/chunked_kd_loss.py", ["--json", "{plain_dir}"], "--json"),
    ("benchmarks/orbit_env_throughput.py", ["--seconds", "0"], "--seconds"),
    ("benchmarks/orbit_env_throughput.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/paced_frontier_drop.py", ["--steps", "0"], "--steps"),
    ("benchmarks/paced_frontier_drop.py", ["--seed", "x"], "--seed"),
    ("benchmarks/paced_frontier_drop.py", ["--trainer", "v2"], "--trainer"),
    ("benchmarks/paced_frontier_drop.py", ["--work", "{file}"], "--work"),
    ("benchmarks/paced_frontier_drop.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/verl_cpu_startup.py", ["--steps", "0"], "--steps"),
    ("benchmarks/verl_cpu_startup.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/hf_server_overhead.py", ["--repeats", "0"], "--repeats"),
    ("benchmarks/hf_server_overhead.py", ["--out", "{plain_dir}"], "--out"),
    ("benchmarks/verl_step_profile.py", ["--from", "5", "--to", "3"], "--to"),
    ("benchmarks/verl_step_profile.py", ["--config-name", "nope"], "--config-name"),
    ("benchmarks/verl_step_profile.py", ["--out", "{plain_dir}"], "--out"),
]


#: outputs of each script pointed into the test's directory, so that nothing lands in the checkout
SAFE_OUTPUTS = {
    **{
        f"recipes/{r}/reproduce.py": ["--out", "{out}"]
        for r in (
            "ace_grpo",
            "essence",
            "gkd_mix",
            "grpo_baseline",
            "kd_uniform",
            "opsdc",
            "orbit",
            "paced_distill",
            "slm_compress",
        )
    },  # fmt: skip
    "recipes/asgld_grpo/tiny_kd_compare.py": ["--out", "{out}"],
    "recipes/gkd_mix/trl_compare.py": ["--out", "{out}"],
    "benchmarks/ace_advantage.py": ["--out", "{out}/a.json"],
    "benchmarks/asgld_saddle_escape.py": ["--out", "{out}/a.json", "--png", "{out}/a.png"],
    "benchmarks/chunked_kd_loss.py": ["--json", "{out}/a.json"],
    "benchmarks/orbit_env_throughput.py": ["--out", "{out}/a.json"],
    "benchmarks/paced_frontier_drop.py": ["--out", "{out}/a.json", "--work", "{out}/work"],
    "benchmarks/verl_cpu_startup.py": ["--out", "{out}/a.json"],
    "benchmarks/hf_server_overhead.py": ["--out", "{out}/a.json"],
    "benchmarks/verl_step_profile.py": ["--out", "{out}/a.json"],
}


@pytest.mark.parametrize(
    "script, argv, needle", SCRIPT_CASES, ids=[f"{c[0].split('/')[-2]}/{Path(c[0]).stem} {c[2]}" for c in SCRIPT_CASES]
)
def test_script_rejects_bad_argument(script, argv, needle, paths, tmp_path, capsys, monkeypatch):
    module = load_script(script)
    out = tmp_path / "out"
    argv = [*SAFE_OUTPUTS.get(script, []), *argv]  # a case's own value of the same option comes later and wins
    code, err = run_script_main(module.main, fill(argv, paths, out), capsys, monkeypatch, module)
    assert_one_line(code, err, needle)
    assert list(tmp_path.iterdir()) == []


DEMO_CASES = [
    (["--prompts", "0"], "--prompts"),
    (["--prompts", "100"], "--prompts"),
    (["--val-every", "0"], "--val-every"),
    (["--size", "tiny"], "--size"),
    (["--out", "{file}"], "--out"),
    (["--eval-limit", "0"], "--eval-limit"),
    (["--stesp", "2"], "--stesp"),
    (["not_an_override"], "not_an_override"),
]


@pytest.mark.parametrize("argv, needle", DEMO_CASES, ids=[c[1] for c in DEMO_CASES])
def test_demo_rejects_bad_argument(argv, needle, paths, tmp_path, capsys, monkeypatch):
    from verl_frontier import demo

    code, err = run_script_main(demo.main, fill(argv, paths, tmp_path / "out"), capsys, monkeypatch, demo)
    assert_one_line(code, err, needle)
    assert list(tmp_path.iterdir()) == []


SLM_CASES = [
    (["prune", "--src", "{missing}", "--dst", "{out}", "--importance", "weight"], "--src"),
    (["prune", "--src", "{plain_dir}", "--dst", "{out}", "--importance", "weight"], "--src"),
    (["prune", "--src", "{ckpt}", "--dst", "{file}", "--importance", "weight"], "--dst"),
    (["prune", "--src", "{ckpt}", "--dst", "{ckpt}", "--importance", "weight"], "--dst"),
    (
        ["prune", "--src", "{ckpt}", "--dst", "{out}", "--mlp-sparsity", "1.2", "--importance", "weight"],
        "--mlp-sparsity",
    ),  # fmt: skip
    (
        ["prune", "--src", "{ckpt}", "--dst", "{out}", "--attn-sparsity", "nan", "--importance", "weight"],
        "--attn-sparsity",
    ),  # fmt: skip
    (["prune", "--src", "{ckpt}", "--dst", "{out}", "--importance", "random"], "--importance"),
    (["prune", "--src", "{ckpt}", "--dst", "{out}", "--calib", "{wrong_columns}"], "--calib"),
    (["prune", "--src", "{ckpt}", "--dst", "{out}", "--calib", "{data}", "--calib-n", "0"], "--calib-n"),
    (["prune", "--src", "{ckpt}", "--dst", "{out}"], "--calib"),
    (["quantize", "--src", "{missing}", "--dst", "{out}"], "--src"),
    (["quantize", "--src", "{ckpt}", "--dst", "{file}"], "--dst"),
    (["quantize", "--src", "{ckpt}", "--dst", "{out}", "--scheme", "int3"], "--scheme"),
    (["quantize", "--src", "{ckpt}", "--dst", "{out}", "--group-size", "48"], "--group-size"),
    (["quantize", "--src", "{ckpt}", "--dst", "{out}", "--device", "tpu"], "--device"),
    (["measure", "{missing}", "--data", "{data}"], "path"),
    (["measure", "{ckpt}", "--data", "{wrong_columns}"], "--data"),
    (["measure", "{ckpt}", "--data", "{data}", "--limit", "0"], "--limit"),
    (["shrink"], "stage"),
]


@pytest.mark.parametrize("argv, needle", SLM_CASES, ids=[f"{c[0][0]} {c[1]}" for c in SLM_CASES])
def test_slm_compress_rejects_bad_argument(argv, needle, paths, tmp_path, capsys, monkeypatch):
    from verl_frontier.slm_compress import __main__ as slm

    code, err = run_script_main(slm.main, fill(argv, paths, tmp_path / "out"), capsys, monkeypatch)
    assert_one_line(code, err, needle)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- real processes

PROCESS_CASES = [
    (
        ["-m", "verl_frontier.cli", "eval", "{ckpt}", "{data}", "--out", "{out}", "--batch-size", "0"],
        "error: --batch-size: must be an integer >= 1, got 0",
    ),  # fmt: skip
    (
        ["-m", "verl_frontier.tinyworld", "build", "--out", "{out}", "--size", "medium"],
        "error: --size: must be one of full, small (got 'medium')",
    ),  # fmt: skip
    (
        ["-m", "verl_frontier.slm_compress", "prune", "--src", "{ckpt}", "--dst", "{out}", "--calib-n", "0"],
        "error: argument --calib-n: must be an integer >= 1, got 0",
    ),  # fmt: skip
    (
        ["-m", "verl_frontier.demo", "--out", "{out}", "--prompts", "0"],
        "error: argument --prompts: must be an integer >= 1, got 0",
    ),
    (
        ["recipes/paced_distill/reproduce.py", "--out", "{out}", "x=1", "--seeds", "0", "--stpes", "4"],
        "error: unrecognized argument '--stpes' (not an option, nor a Hydra override key=value)",
    ),  # fmt: skip
    (
        ["benchmarks/orbit_env_throughput.py", "--out", "{out}", "--seconds", "-1"],
        "error: argument --seconds: must be a number > 0.0, got -1",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    "argv, expected", PROCESS_CASES, ids=[c[0][1] if c[0][0] == "-m" else c[0][0] for c in PROCESS_CASES]
)
def test_entry_point_process_fails_with_one_line(argv, expected, paths, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, *fill(argv, paths, out)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip() == expected, proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- shared pieces


def test_argument_kinds():
    import argparse

    from verl_frontier.arguments import FRACTION, POSITIVE_INT, SEED, choice, csv_choices, int_range

    assert POSITIVE_INT.parse("3") == 3 and POSITIVE_INT.parse(7) == 7
    for bad in ("0", "-2", "1.5", "", "x", True):
        with pytest.raises((ValueError, TypeError)):
            POSITIVE_INT.parse(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="must be an integer >= 1, got 0"):
        POSITIVE_INT("0")
    assert FRACTION.parse("0") == 0.0 and FRACTION.parse("0.99") == 0.99
    for bad in ("1", "-0.01", "inf", "nan"):
        with pytest.raises(ValueError):
            FRACTION.parse(bad)
    with pytest.raises(ValueError, match="<= 4294967295"):
        SEED.parse(2**32)
    assert int_range(2, 4).parse("4") == 4
    assert choice("a", "b").parse("b") == "b"
    with pytest.raises(ValueError, match=r"must be one of a, b \(got 'c'\)"):
        choice("a", "b").parse("c")
    assert csv_choices("x", "y").parse("y, x") == ["y", "x"]


def test_atomic_dir_moves_complete_outputs_only(tmp_path):
    from verl_frontier.arguments import atomic_dir

    target = tmp_path / "result"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("1")
    assert (target / "a.json").read_text() == "1"
    (target / "keep.txt").write_text("kept")
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("2")
    assert (target / "a.json").read_text() == "2" and (target / "keep.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_hydra_overrides_pass_and_strays_fail(capsys):
    from verl_frontier.studies import study_parser

    parser = study_parser("Doc.", "x", seeds=[0], steps=2)
    args, extra = parser.parse_with_overrides(["--steps", "3", "a.b=1", "+c=2", "~d"])
    assert args.steps == 3 and extra == ["a.b=1", "+c=2", "~d"]
    for stray in (["--bogus"], ["a.b"], ["=1"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_with_overrides(stray)
        assert exc.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


# --------------------------------------------------------------------------- ORBIT environments

ENV_BAD_ARGS = [
    ("guess_number", {"low": -1}, ValueError, "low must be >= 0"),
    ("guess_number", {"low": 5, "high": 2}, ValueError, "high must be >= 5"),
    ("guess_number", {"high": 10**7}, ValueError, "high must be"),
    ("guess_number", {"high": 2.5}, TypeError, "high must be an integer"),
    ("guess_number", {"max_turns": 0}, ValueError, "max_turns must be >= 1, got 0"),
    ("hangman", {"word_length": 4}, ValueError, "word_length must be one of (3, 5)"),
    ("hangman", {"word_length": "3"}, TypeError, "word_length must be an integer"),
    ("hangman", {"max_turns": True}, TypeError, "max_turns must be an integer"),
    ("wordle", {"word_length": 0}, ValueError, "word_length must be >= 1"),
    ("wordle", {"word_length": 3.0}, TypeError, "word_length must be an integer"),
    ("mastermind", {"code_length": 0}, ValueError, "code_length must be >= 1"),
    ("mastermind", {"num_digits": 10}, ValueError, "num_digits must be >= 1 and <= 9"),
    ("mastermind", {"duplicates": 1}, TypeError, "duplicates must be True or False"),
    ("mastermind", {"code_length": 7}, ValueError, "needs duplicates=True"),
    ("maze", {"min_distance": 0}, ValueError, "min_distance must be >= 1"),
    ("maze", {"min_distance": 40}, ValueError, "min_distance must be >= 1 and <= 35"),
    ("maze", {"max_distance": 3}, ValueError, "max_distance must be >= 7, got 3"),
    ("maze", {"loops": -1}, ValueError, "loops must be >= 0"),
    ("maze", {"loops": 1.5}, TypeError, "loops must be an integer"),
    ("minesweeper", {"rows": 0}, ValueError, "rows must be >= 1"),
    ("minesweeper", {"cols": True}, TypeError, "cols must be an integer"),
    ("minesweeper", {"num_mines": 0}, ValueError, "num_mines must be >= 1 and <= 24, got 0"),
    ("minesweeper", {"num_mines": 25}, ValueError, "num_mines must be >= 1 and <= 24, got 25"),
    ("minesweeper", {"rows": 1, "cols": 1, "num_mines": 1}, ValueError, "at least 2 cells"),
    ("rock_paper_scissors", {"rounds": 0}, ValueError, "rounds must be >= 1 and <= 5, got 0"),
    ("rock_paper_scissors", {"rounds": 6}, ValueError, "rounds must be >= 1 and <= 5, got 6"),
    ("rock_paper_scissors", {"min_dom": 1.5}, ValueError, "min_dom must be finite and >= 0.0 and <= 1.0"),
    ("rock_paper_scissors", {"min_dom": math.nan}, ValueError, "min_dom must be finite"),
    ("rock_paper_scissors", {"min_dom": "0.5"}, TypeError, "min_dom must be a number"),
    ("blackjack", {"max_turns": -1}, ValueError, "max_turns must be >= 1, got -1"),
    ("blackjack", {"max_turns": 2.0}, TypeError, "max_turns must be an integer"),
    ("blackjack", {"decks": 2}, TypeError, "unknown options ['decks']"),
]


@pytest.mark.parametrize("name, kwargs, error, needle", ENV_BAD_ARGS, ids=[f"{c[0]}-{c[1]}" for c in ENV_BAD_ARGS])
def test_env_rejects_bad_constructor_argument(name, kwargs, error, needle):
    from verl_frontier.orbit.envs import make_env

    with pytest.raises(error) as exc:
        make_env(name, **kwargs)
    message = str(exc.value)
    assert needle in message and "\n" not in message, message


def test_every_env_has_bad_argument_cases():
    from verl_frontier.orbit.envs import list_envs

    assert sorted({case[0] for case in ENV_BAD_ARGS}) == list_envs()


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(
        ["guess_number", "hangman", "wordle", "mastermind", "maze", "minesweeper", "rock_paper_scissors", "blackjack"]
    ),
    max_turns=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)),
)
def test_env_max_turns_must_be_a_positive_int(name, max_turns):
    from verl_frontier.orbit.envs import make_env

    with pytest.raises((ValueError, TypeError)) as exc:
        make_env(name, max_turns=max_turns)
    assert "max_turns" in str(exc.value) and repr(max_turns)[:20] in str(exc.value)


@settings(max_examples=20, deadline=None)
@given(max_turns=st.integers(min_value=1, max_value=50))
def test_env_accepts_positive_max_turns(max_turns):
    from verl_frontier.orbit.envs import list_envs, make_env

    for name in list_envs():
        env = make_env(name, max_turns=max_turns)
        assert env.max_turns == max_turns
        env.reset(0)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"num_episodes": 0}, ValueError, "num_episodes must be >= 1, got 0"),
        ({"num_episodes": 1.5}, TypeError, "num_episodes must be an integer"),
        ({"num_episodes": True}, TypeError, "num_episodes must be an integer"),
        ({"max_episodes": 0}, ValueError, "max_episodes must be >= 1, got 0"),
        ({"header": "[Episode {j}]"}, ValueError, "header must be a format string"),
        ({"header": 3}, TypeError, "header must be a str"),
        ({"success_reward": 0}, ValueError, "success_reward must be finite and > 0.0"),
        ({"success_reward": math.inf}, ValueError, "success_reward must be finite"),
        ({"success_reward": "1"}, TypeError, "success_reward must be a number"),
    ],
)
def test_multi_episode_rejects_bad_arguments(kwargs, error, needle):
    from verl_frontier.orbit.envs import make_env
    from verl_frontier.orbit.multi_episode import MultiEpisodeEnv

    with pytest.raises(error) as exc:
        MultiEpisodeEnv(make_env("guess_number"), **kwargs)
    assert needle in str(exc.value) and "MultiEpisodeEnv" in str(exc.value)
    with pytest.raises(TypeError, match="env must be a TextEnv"):
        MultiEpisodeEnv("guess_number")


@pytest.mark.parametrize(
    "extra, error, needle",
    [
        ({"num_episodes": 2.5}, TypeError, "num_episodes must be an integer"),
        ({"num_episodes": 0}, ValueError, "num_episodes must be >= 1"),
        ({"max_turns": 0}, ValueError, "max_turns must be >= 1"),
        ({"max_episodes": -1}, ValueError, "max_episodes must be >= 1"),
        ({"env_kwargs": "{not json"}, ValueError, "env_kwargs must be a JSON object"),
        ({"env_kwargs": "[1, 2]"}, ValueError, "env_kwargs must be a JSON object"),
        ({"env_kwargs": '{"high": 0}'}, ValueError, "high must be >= 1"),
        ({"seed": None}, ValueError, "seed is missing"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ],
)
def test_build_trial_rejects_bad_rows(extra, error, needle):
    from verl_frontier.orbit.multi_episode import build_trial

    row = {"env": "guess_number", "seed": 3, "num_episodes": 3, "max_turns": 4, "max_episodes": None}
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build_trial({**row, **extra})


def test_build_trial_reads_integral_floats_from_parquet():
    from verl_frontier.orbit.multi_episode import build_trial

    trial, seed = build_trial({"env": "guess_number", "seed": 3.0, "num_episodes": 2.0, "max_turns": 4.0,
                               "max_episodes": math.nan})  # fmt: skip
    assert (seed, trial.num_episodes, trial.env.max_turns, trial.max_episodes) == (3, 2, 4, None)
