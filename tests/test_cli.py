"""The ``frontier`` CLI: recipes, new-recipe, validate, check; one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("error: "), err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# --- recipes / new-recipe ------------------------------------------------------------------------


def test_recipes_lists_with_description(cli, recipes_copy):
    result = cli("recipes")
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("grpo_baseline"))
    assert "GRPO" in line


def test_new_recipe_copies_and_renames(cli, recipes_copy):
    (recipes_copy / "grpo_baseline" / "grpo_baseline_small.yaml").write_text(
        "hydra:\n  searchpath:\n    - pkg://verl.trainer.config\n"
        "defaults:\n  - ppo_trainer\n  - _self_\ndata:\n  train_batch_size: 8\n"
        "trainer:\n  experiment_name: grpo_baseline_small\n"
    )
    result = cli("new-recipe", "my_grpo", "--from", "grpo_baseline")
    assert result.exit_code == 0, result.output
    new = recipes_copy / "my_grpo"
    names = sorted(p.name for p in new.iterdir())
    assert "my_grpo.yaml" in names and "my_grpo_small.yaml" in names
    assert not any(n.startswith("grpo_baseline") for n in names), names
    config_text = (new / "my_grpo.yaml").read_text()
    assert "experiment_name: my_grpo" in config_text
    assert "grpo_baseline" not in config_text
    assert "experiment_name: my_grpo_small\n" in (new / "my_grpo_small.yaml").read_text()
    for script in ("run.sh", "slurm.sh"):
        body = (new / script).read_text()
        assert 'CONFIG_NAME="${CONFIG_NAME:-my_grpo}"' in body and "grpo_baseline" not in body
        assert os.access(new / script, os.X_OK)
    assert (new / "README.md").read_text().startswith("# my_grpo")
    # the source is untouched and both compose
    assert "experiment_name: grpo_baseline" in (recipes_copy / "grpo_baseline" / "grpo_baseline.yaml").read_text()
    from verl_frontier import recipes as rc

    config = rc.compose_recipe("my_grpo")
    assert config.trainer.experiment_name == "my_grpo"
    small = rc.compose_recipe("my_grpo", config_name="my_grpo_small")
    assert small.data.train_batch_size == 8 and small.trainer.experiment_name == "my_grpo_small"
    listed = cli("recipes").stdout
    assert "my_grpo" in listed


def test_new_recipe_refuses_to_overwrite(cli, recipes_copy):
    assert cli("new-recipe", "copy1", "--from", "grpo_baseline").exit_code == 0
    marker = recipes_copy / "copy1" / "mine.txt"
    marker.write_text("keep")
    result = cli("new-recipe", "copy1", "--from", "grpo_baseline")
    assert_one_line_error(result, "copy1", "already exists", "refusing to overwrite")
    assert marker.read_text() == "keep"


def test_new_recipe_unknown_source_and_bad_name(cli, recipes_copy):
    assert_one_line_error(cli("new-recipe", "x1", "--from", "no_such"), "unknown recipe 'no_such'", "grpo_baseline")
    assert_one_line_error(cli("new-recipe", "../evil", "--from", "grpo_baseline"), "invalid recipe name")
    assert not (recipes_copy.parent / "evil").exists()


# --- validate ---------------------------------------------------------------------------------------


def test_validate_ok(cli, data_overrides):
    result = cli("validate", "grpo_baseline", *data_overrides)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK grpo_baseline")
    assert "adv_estimator=grpo" in result.stdout and "verl validate_config: passed" in result.stdout


def test_validate_unknown_recipe(cli):
    assert_one_line_error(cli("validate", "grpo_basline"), "unknown recipe 'grpo_basline'", "grpo_baseline")


def test_validate_misspelled_override(cli, data_overrides):
    err = assert_one_line_error(
        cli("validate", "grpo_baseline", *data_overrides, "algorithm.adv_estimatr=grpo"), "'algorithm.adv_estimatr'"
    )
    assert "did you mean 'algorithm.adv_estimator'" in err


def test_validate_missing_data_file(cli, tmp_path):
    missing = tmp_path / "gone.parquet"
    assert_one_line_error(
        cli("validate", "grpo_baseline", f"data.train_files={missing}", f"data.val_files={missing}"),
        "data.train_files",
        str(missing),
    )


def test_validate_negative_weight_exponent(cli, data_overrides, test_schema):
    err = assert_one_line_error(
        cli("validate", "grpo_baseline", *data_overrides, "+algorithm.frontier_test.weight_exponent=-1"),
        "algorithm.frontier_test.weight_exponent",
    )
    assert err == "error: algorithm.frontier_test.weight_exponent: must be >= 0 (got -1)"


def test_validate_verl_own_check_fails_one_line(cli, data_overrides):
    # 64 prompts x 5 samples cannot be split over 7 GPUs: verl's validate_config rejects it (the frontier
    # world_size check would name the key first: skipped here to reach verl's own check)
    args = ("validate", "grpo_baseline", *data_overrides, "trainer.n_gpus_per_node=7", "--skip-check", "world_size")
    err = assert_one_line_error(cli(*args), "verl validate_config")
    assert "divisible" in err


def test_validate_unknown_config_name(cli, data_overrides):
    assert_one_line_error(cli("validate", "grpo_baseline", "--config-name", "nope"), "no config 'nope'")


def test_validate_skip_check(cli, tmp_path):
    missing = tmp_path / "gone.parquet"
    result = cli(
        "validate", "grpo_baseline", f"data.train_files={missing}", f"data.val_files={missing}",
        "--skip-check", "data_files",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


# --- check ----------------------------------------------------------------------------------------------


def test_check_reports_or_fails_one_line(cli):
    import verl_cpu.plugin
    from verl_frontier.registration import RegistrationError, assert_registered

    result = cli("check", "--json")
    try:
        assert_registered()
    except RegistrationError as exc:
        assert_one_line_error(result, str(exc))
        if not hasattr(verl_cpu.plugin, "EXPECTED_REGISTRATIONS"):
            assert "EXPECTED_REGISTRATIONS" in result.stderr
        return
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["versions"]["verl"] == "0.9.1"
    assert "grpo" in report["registered"]["adv_est"]
    for key in ("python", "cuda_available", "cpu_count", "memory_total_gib"):
        assert key in report


# --- lazy subcommand groups ------------------------------------------------------------------------------


@pytest.fixture
def lazy_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "frontier_lazy_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "world.py").write_text(
        textwrap.dedent(
            """
            import typer
            world_app = typer.Typer(help="Probe world.")

            @world_app.command()
            def hello(name: str = "x"):
                print(f"hello {name}")

            @world_app.command()
            def bye():
                print("bye")
            """
        )
    )
    (pkg / "ev.py").write_text(
        textwrap.dedent(
            '''
            def eval_command(checkpoint: str):
                """Probe eval."""
                print(f"eval {checkpoint}")
            '''
        )
    )
    (pkg / "broken.py").write_text("raise ImportError('half written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from verl_frontier import cli as cli_mod

    monkeypatch.setattr(
        cli_mod,
        "LAZY_SUBCOMMANDS",
        {
            "world": ("frontier_lazy_probe.world", "world_app", "World."),
            "eval": ("frontier_lazy_probe.ev", "eval_command", "Eval."),
            "broken": ("frontier_lazy_probe.broken", "thing", "Broken."),
            "absent": ("frontier_lazy_probe.absent", "thing", "Absent."),
        },
    )


def test_lazy_subcommands(cli, lazy_modules):
    help_text = cli("--help").stdout
    assert "world" in help_text and "eval" in help_text and "absent" not in help_text
    result = cli("world", "hello", "--name", "y")
    assert result.exit_code == 0 and "hello y" in result.stdout, result.output
    result = cli("eval", "ckpt1")
    assert result.exit_code == 0 and "eval ckpt1" in result.stdout, result.output
    assert_one_line_error(cli("broken"), "frontier broken", "half written")


def test_real_lazy_groups_do_not_break_help(cli):
    result = cli("--help")
    assert result.exit_code == 0, result.output
    for name in ("check", "recipes", "new-recipe", "validate"):
        assert name in result.stdout


def test_console_script_help_is_fast_and_light():
    code = (
        "import sys, time; t = time.time(); from verl_frontier.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('verl', 'torch', 'ray', 'hydra', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy, time.time() - t)"
    )
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY"))
    assert line.startswith("HEAVY []"), line
    assert time.time() - start < 30


def test_console_script_exit_code_and_stderr(tmp_path):
    env = {**os.environ, "FRONTIER_RECIPES_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "verl_frontier.cli", "validate", "nothing_here"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown recipe 'nothing_here'; available: (none)"
