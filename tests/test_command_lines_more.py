"""More command lines that reject a bad argument with one line (exit code 2, no traceback, nothing written),
and outputs that appear whole or not at all.

* ``python -m verl_frontier.orbit.data`` (--out, --preset, --train-envs, --val-envs, --train-size,
  --val-seeds-per-env, --num-episodes, --max-episodes, --max-tokens-per-turn, --seed);
* ``python -m verl_frontier.essence.data`` (--data, --out, --teacher, --from-field, --num, --seed, --reward,
  --max-new-tokens, --batch-size, --agent; rows checked before anything is written);
* ``python -m verl_frontier.launch.node_check`` (--address, $RAY_ADDRESS, --nodes, --timeout);
* ``python -m verl_frontier.launch.raynode`` (--head/--address/--free-port, --port, --node-ip, --temp-dir,
  --num-cpus, --num-gpus, --dashboard-port);
* ``frontier world build`` / ``world heldout``: built next to the world and renamed in; an interrupted
  build leaves no world (or the old one, whole);
* PNG figures: written to a temporary file and renamed in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_command_lines import assert_one_line

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, small_world_dir) -> dict[str, str]:
    """A plain file, a directory that is no model, parquet files (wrong columns, a malformed prompt, the
    small world's verbose training rows) and the small world's teacher."""
    import pandas as pd

    base = tmp_path_factory.mktemp("more_cmdline")
    (base / "file.txt").write_text("not a parquet, not a directory\n")
    (base / "plain_dir").mkdir()
    pd.DataFrame({"question": ["1+1"], "answer": ["2"]}).to_parquet(base / "wrong_columns.parquet")
    rows = pd.read_parquet(small_world_dir / "data" / "train_verbose.parquet").iloc[:4].copy()
    rows["prompt"] = ["just a string"] * len(rows)
    rows.to_parquet(base / "bad_prompt.parquet")
    return {
        "file": str(base / "file.txt"),
        "plain_dir": str(base / "plain_dir"),
        "wrong_columns": str(base / "wrong_columns.parquet"),
        "bad_prompt": str(base / "bad_prompt.parquet"),
        "data": str(small_world_dir / "data" / "train_verbose.parquet"),
        "teacher": str(small_world_dir / "teacher"),
        "missing": str(base / "missing"),
    }


def run(argv: list[str], inputs: dict, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    args = [a.format(out=out, **inputs) for a in argv]
    full_env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTEST_CURRENT_TEST")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=full_env
    )  # fmt: skip


ORBIT = ["-m", "verl_frontier.orbit.data", "--preset", "tiny", "--out", "{out}"]
ORBIT_CASES = [
    (["--out", "{file}"], "--out"),
    (["--preset", "huge"], "--preset"),
    (["--train-envs", "chess"], "--train-envs"),
    (["--train-envs", "wordle:heavy"], "--train-envs"),
    (["--train-envs", "wordle:0,maze:0"], "--train-envs"),
    (["--train-envs", "wordle:-1,maze"], "--train-envs"),
    (["--train-envs", ","], "--train-envs"),
    (["--val-envs", "maze,chess"], "--val-envs"),
    (["--train-size", "0"], "--train-size"),
    (["--val-seeds-per-env", "-1"], "--val-seeds-per-env"),
    (["--num-episodes", "0"], "--num-episodes"),
    (["--max-episodes", "0"], "--max-episodes"),
    (["--max-tokens-per-turn", "x"], "--max-tokens-per-turn"),
    (["--seed", "-1"], "--seed"),
]

ESSENCE = ["-m", "verl_frontier.essence.data", "--out", "{out}"]
ESSENCE_CASES = [
    (["--data", "{missing}", "--from-field", "extra_info.reference"], "--data"),
    (["--data", "{wrong_columns}", "--from-field", "extra_info.reference"], "--data"),
    (["--data", "{file}", "--from-field", "extra_info.reference"], "--data"),
    (["--data", "{bad_prompt}", "--from-field", "extra_info.reference"], "--data"),
    (["--data", "{data}", "--from-field", "extra_info.reference", "--out", "{file}"], "--out"),
    (["--data", "{data}", "--teacher", "{plain_dir}"], "--teacher"),
    (["--data", "{data}", "--teacher", "{missing}"], "--teacher"),
    (["--data", "{data}", "--teacher", "{teacher}", "--from-field", "extra_info.reference"], "--from-field"),
    (["--data", "{data}"], "--teacher"),
    (["--data", "{data}", "--from-field", "extra_info.solution"], "--from-field"),
    (["--data", "{data}", "--from-field", "extra_info.index"], "--from-field"),  # no row scores > 0
    (["--data", "{data}", "--from-field", "."], "--from-field"),
    (["--data", "{data}", "--from-field", "extra_info.reference", "--num", "0"], "--num"),
    (["--data", "{data}", "--from-field", "extra_info.reference", "--seed", "-2"], "--seed"),
    (["--data", "{data}", "--from-field", "extra_info.reference", "--reward", "no_such_module_xyz:f"], "--reward"),
    (["--data", "{data}", "--teacher", "{teacher}", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["--data", "{data}", "--teacher", "{teacher}", "--batch-size", "-1"], "--batch-size"),
    (["--data", "{data}", "--from-field", "extra_info.reference", "--agent", "replay"], "--agent"),
]

#: node_check and raynode run with the step after argument parsing replaced by an exit with code 99, so that
#: a wrongly accepted argument neither connects to Ray nor ``exec``s ``ray start``
NODE_CHECK = ["-c", "import sys, verl_frontier.launch.node_check as m; m.check_nodes = lambda *a: sys.exit(99); "
              "sys.exit(m.main())"]  # fmt: skip
RAYNODE = ["-c", "import os, sys; os.execv = lambda *a: sys.exit(99); import verl_frontier.launch.raynode as m; "
           "sys.exit(m.main())"]  # fmt: skip
LAUNCH_CASES = [
    (NODE_CHECK, ["--nodes", "0"], "--nodes"),
    (NODE_CHECK, ["--nodes", "two"], "--nodes"),
    (NODE_CHECK, ["--timeout", "0"], "--timeout"),
    (NODE_CHECK, ["--timeout", "nan"], "--timeout"),
    (NODE_CHECK, ["--address", "headnode"], "--address"),
    (NODE_CHECK, ["--address", "10.0.0.1:0"], "--address"),
    (RAYNODE, [], "--head"),
    (RAYNODE, ["--head", "--address", "10.0.0.1:6379"], "--address"),
    (RAYNODE, ["--address", "10.0.0.1"], "--address"),
    (RAYNODE, ["--head", "--port", "0"], "--port"),
    (RAYNODE, ["--head", "--port", "65536"], "--port"),
    (RAYNODE, ["--address", "10.0.0.1:6379", "--port", "6380"], "--port"),
    (RAYNODE, ["--address", "10.0.0.1:6379", "--dashboard-port", "8265"], "--dashboard-port"),
    (RAYNODE, ["--head", "--dashboard-port", "x"], "--dashboard-port"),
    (RAYNODE, ["--head", "--node-ip", ""], "--node-ip"),
    (RAYNODE, ["--head", "--temp-dir", "{file}"], "--temp-dir"),
    (RAYNODE, ["--head", "--num-cpus", "-1"], "--num-cpus"),
    (RAYNODE, ["--head", "--num-gpus", "1.5"], "--num-gpus"),
]


@pytest.mark.parametrize(
    "base, argv, needle",
    [(ORBIT, *case) for case in ORBIT_CASES] + [(ESSENCE, *case) for case in ESSENCE_CASES] + LAUNCH_CASES,
    ids=[f"orbit {c[1]}" for c in ORBIT_CASES]
    + [f"essence {c[1]}" for c in ESSENCE_CASES]
    + [f"{'node_check' if c[0] is NODE_CHECK else 'raynode'} {c[2]}" for c in LAUNCH_CASES],
)
def test_entry_point_rejects_bad_argument(base, argv, needle, inputs, tmp_path):
    proc = run([*base, *argv], inputs, tmp_path)
    err = assert_one_line(proc.returncode, proc.stderr, needle)
    assert err.startswith(f"error: argument {needle}") or "one of the arguments" in err, err
    assert list(tmp_path.iterdir()) == [], "something was written"


def test_bad_ray_address_in_the_environment_names_the_option(inputs, tmp_path):
    proc = run(NODE_CHECK, inputs, tmp_path, env={"RAY_ADDRESS": "not an address"})
    assert_one_line(proc.returncode, proc.stderr, "--address")


MODULE_MESSAGES = [
    (["-m", "verl_frontier.orbit.data", "--out", "{out}", "--train-size", "0"],
     "error: argument --train-size: must be an integer >= 1, got 0"),
    (["-m", "verl_frontier.essence.data", "--out", "{out}", "--data", "{data}", "--from-field", "extra_info.solution"],
     "error: argument --from-field: row 48: no field 'extra_info.solution' (missing 'solution')"),
    (["-m", "verl_frontier.launch.node_check", "--nodes", "0"],
     "error: argument --nodes: must be an integer >= 1, got 0"),
    (["-m", "verl_frontier.launch.raynode", "--free-port", "--num-cpus", "-1"],
     "error: argument --num-cpus: must be an integer >= 0, got -1"),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", MODULE_MESSAGES, ids=[c[0][1].split(".", 1)[1] for c in MODULE_MESSAGES])
def test_module_entry_point_message(argv, expected, inputs, tmp_path):
    proc = run(argv, inputs, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip() == expected
    assert list(tmp_path.iterdir()) == []


def test_good_arguments_still_work(inputs, tmp_path):
    import pandas as pd

    out = tmp_path / "orbit"
    proc = run(["-m", "verl_frontier.orbit.data", "--preset", "tiny", "--out", str(out), "--train-size", "5",
                "--val-seeds-per-env", "2", "--train-envs", "guess_number:2"], inputs, tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(out / "train.parquet")) == 5 and len(pd.read_parquet(out / "test.parquet")) == 2
    out = tmp_path / "essence"
    proc = run(["-m", "verl_frontier.essence.data", "--data", inputs["data"], "--from-field", "extra_info.reference",
                "--out", str(out), "--num", "6", "--keep-incorrect"], inputs, tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 6 and len(pd.read_parquet(out / "train.parquet")) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["essence", "orbit"]
    proc = run(RAYNODE + ["--address", "10.0.0.1:6379", "--num-cpus", "0", "--temp-dir", str(tmp_path / "r")],
               inputs, tmp_path)  # fmt: skip
    assert proc.returncode == 99, proc.stderr  # accepted: it got as far as exec'ing `ray start`
    assert "--address=10.0.0.1:6379" in proc.stdout and "--num-cpus=0" in proc.stdout


def test_data_files_appear_together_or_not_at_all(tmp_path, monkeypatch):
    """orbit.data writes train and test next to the output directory: a failure on the second leaves none."""
    from dataclasses import replace

    import verl_frontier.arguments as arguments
    from verl_frontier.orbit.data import PRESETS, write

    real = arguments.write_parquet_atomic
    calls = []

    def second_fails(rows, path):
        calls.append(Path(path).name)
        if len(calls) == 2:
            Path(path).write_text("half")
            raise OSError("disk full")
        return real(rows, path)

    cfg = replace(PRESETS["tiny"], train_size=3, val_seeds_per_env=1)
    monkeypatch.setattr(arguments, "write_parquet_atomic", second_fails)
    with pytest.raises(OSError, match="disk full"):
        write(cfg, tmp_path / "orbit")
    assert calls == ["train.parquet", "test.parquet"] and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    paths = write(cfg, tmp_path / "orbit")
    assert sorted(p.name for p in (tmp_path / "orbit").iterdir()) == ["test.parquet", "train.parquet"]
    assert paths["train"].stat().st_size > 0


# --------------------------------------------------------------------------- tiny world builds


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def _fail_late(monkeypatch):
    """Make the world build fail at its last step (hashing the files for the manifest), after training."""
    from verl_frontier.tinyworld import builder

    def interrupted(root):
        assert (Path(root) / "teacher").is_dir() and (Path(root) / "student").is_dir()
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "file_hashes", interrupted)


def test_interrupted_build_leaves_no_world(tmp_path, monkeypatch):
    from verl_frontier.tinyworld.builder import build

    _fail_late(monkeypatch)
    out = tmp_path / "worlds" / "small-seed0"
    with pytest.raises(KeyboardInterrupt):
        build(out=out, size="small", quiet=True, progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_interrupted_forced_rebuild_keeps_the_old_world_and_a_complete_one_replaces_it(
    small_world_dir, tmp_path, monkeypatch
):
    from verl_frontier.tinyworld.builder import _cached, build

    out = tmp_path / "small-seed0"
    shutil.copytree(small_world_dir, out)
    (out / "stale.txt").write_text("from the old world")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _fail_late(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        build(out=out, size="small", force=True, quiet=True, progress=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _siblings(out) == []
    monkeypatch.undo()
    manifest = build(out=out, size="small", force=True, quiet=True, progress=False)
    cached = _cached(out, 0, "small")
    assert not (out / "stale.txt").exists() and cached["built_at_unix"] == manifest["built_at_unix"]
    assert _siblings(out) == []


def test_cli_build_into_a_missing_parent(tmp_path, monkeypatch):
    """``frontier world build --out`` creates the parents; an interrupted one leaves nothing in them."""
    from typer.testing import CliRunner

    from verl_frontier.tinyworld.cli import world_app

    _fail_late(monkeypatch)
    out = tmp_path / "a" / "b" / "world"
    result = CliRunner().invoke(world_app, ["build", "--out", str(out), "--size", "small", "--quiet"])
    assert isinstance(result.exception, KeyboardInterrupt) or result.exit_code != 0
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_interrupted_heldout_leaves_no_heldout_or_the_old_one(small_world_dir, tmp_path, monkeypatch):
    import pandas as pd

    import verl_frontier.studies as studies
    from verl_frontier.tinyworld.heldout import HELDOUT_DIR, ensure_heldout

    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world, ignore=shutil.ignore_patterns(HELDOUT_DIR))
    real = studies.write_json_atomic

    def interrupted(path, payload):
        raise KeyboardInterrupt

    monkeypatch.setattr(studies, "write_json_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_heldout(world, rows_per_cell=5)
    assert not (world / HELDOUT_DIR).exists()
    assert not [p.name for p in world.iterdir() if p.name.startswith(f".{HELDOUT_DIR}")]
    monkeypatch.setattr(studies, "write_json_atomic", real)
    path = ensure_heldout(world, rows_per_cell=5)
    rows = len(pd.read_parquet(path))
    monkeypatch.setattr(studies, "write_json_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_heldout(world, rows_per_cell=7)  # a different size: rewritten, interrupted
    assert len(pd.read_parquet(path)) == rows
    assert json.loads((path.parent / "stats.json").read_text())["rows_per_cell"] == 5
    assert sorted(p.name for p in world.iterdir() if p.name.startswith(".")) == []


def test_replace_dir_puts_the_old_directory_back_when_the_move_fails(tmp_path, monkeypatch):
    from verl_frontier import arguments

    target, new = tmp_path / "world", tmp_path / "new"
    target.mkdir()
    (target / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    real = os.rename

    def second_rename_fails(src, dst):
        if Path(src) == new:
            raise OSError("cross-device link")
        return real(src, dst)

    monkeypatch.setattr(arguments.os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="cross-device"):
        arguments.replace_dir(new, target)
    assert (target / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["new", "world"]
    monkeypatch.undo()
    arguments.replace_dir(new, target)
    assert (target / "a").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["world"]


# --------------------------------------------------------------------------- figures


def _broken_savefig(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def broken(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)


def test_savefig_atomic(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from verl_frontier.arguments import savefig_atomic

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = savefig_atomic(fig, tmp_path / "sub" / "plot.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.listdir(path.parent) == ["plot.png"]
    good = path.read_bytes()
    _broken_savefig(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        savefig_atomic(fig, path, dpi=50)
    assert path.read_bytes() == good and os.listdir(path.parent) == ["plot.png"]
    plt.close(fig)


def test_study_and_orbit_plots_keep_the_old_png_when_saving_fails(tmp_path, monkeypatch):
    from verl_frontier.orbit.evaluate import plot_episode_success
    from verl_frontier.studies import plot_curves

    results = {"runs": {"a/seed0": {"val_acc": {"0": 0.1, "10": 0.4}}, "a/seed1": {"val_acc": {"0": 0.2, "10": 0.3}}}}
    orbit = {"n": 2, "temperature": 1.0, "episode_success": {"1": 0.2, "2": 0.5},
             "by_env": {"maze": {"episode_success": {"1": 0.1, "2": 0.4}}}}  # fmt: skip
    curves, success = tmp_path / "curves.png", tmp_path / "success.png"
    curves.write_bytes(b"old curves")
    success.write_bytes(b"old success")
    _broken_savefig(monkeypatch)
    with pytest.raises(OSError):
        plot_curves(results, ["a"], curves, "title")
    with pytest.raises(OSError):
        plot_episode_success(orbit, success)
    assert curves.read_bytes() == b"old curves" and success.read_bytes() == b"old success"
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "success.png"]
    monkeypatch.undo()
    plot_curves(results, ["a"], curves, "title")
    plot_episode_success(orbit, success)
    assert curves.read_bytes()[:4] == success.read_bytes()[:4] == b"\x89PNG"
