"""Every recipe yaml composes against verl's real ppo_trainer config; recipe folder conventions."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_frontier import recipes as rc

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def _all_configs():
    out = []
    for recipe in rc.list_recipes(RECIPES_DIR):
        for config_name in recipe.configs:
            out.append(pytest.param(recipe, config_name, id=f"{recipe.name}/{config_name}"))
    return out


ALL_CONFIGS = _all_configs()


def test_recipes_exist():
    assert ALL_CONFIGS, "no recipe configs found under recipes/"


@pytest.mark.parametrize(("recipe", "config_name"), ALL_CONFIGS)
def test_recipe_composes_against_verl(recipe, config_name, small_world_dir, monkeypatch):
    import verl  # noqa: F401 - method plugins register their estimators through the entry points

    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(small_world_dir))  # tiny variants point into the tiny world
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    config = rc.compose_recipe(recipe, [], config_name=config_name)
    rc.resolve_all(config)
    # our keys resolve, on top of verl's full config
    assert config.algorithm.adv_estimator in ADV_ESTIMATOR_REGISTRY
    assert isinstance(config.actor_rollout_ref.model.path, str) and config.actor_rollout_ref.model.path
    assert OmegaConf.select(config, "data.train_files") is not None
    assert "val_files" in config.data
    assert config.trainer.experiment_name
    # verl's defaults are still there (the recipe composed *on top of* ppo_trainer)
    assert "rollout_correction" in config.algorithm
    assert "transfer_queue" in config


@pytest.mark.parametrize(("recipe", "config_name"), ALL_CONFIGS)
def test_recipe_keys_exist_in_verl(recipe, config_name):
    unknown = rc.unknown_recipe_keys(recipe, config_name)
    assert unknown == [], (
        f"{recipe.name}/{config_name}.yaml sets keys verl's ppo_trainer does not have: {unknown}; "
        "fix the spelling or register a schema for the method's section"
    )


@pytest.mark.parametrize("recipe", [pytest.param(r, id=r.name) for r in rc.list_recipes(RECIPES_DIR)])
def test_recipe_folder_conventions(recipe):
    text = (recipe.path / f"{recipe.name}.yaml").read_text()
    assert "pkg://verl.trainer.config" in text
    assert recipe.default_config == recipe.name
    assert recipe.description, f"{recipe.name}/README.md needs a one-line description after its title"
    for script in ("run.sh", "slurm.sh"):
        path = recipe.path / script
        assert path.is_file(), f"{recipe.name}/{script} missing"
        assert os.stat(path).st_mode & stat.S_IXUSR, f"{recipe.name}/{script} not executable"
        body = path.read_text()
        assert body.startswith("#!/usr/bin/env bash")
        # thin calls of the shared launcher (verl_frontier/launch; its job script is tested in tests/test_launch.py)
        assert "frontier launch" in body and f'CONFIG_NAME="${{CONFIG_NAME:-{recipe.name}}}"' in body
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_grpo_baseline_values(data_overrides):
    config = rc.compose_recipe("grpo_baseline", data_overrides)
    assert config.algorithm.adv_estimator == "grpo"
    assert config.actor_rollout_ref.model.path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert config.trainer.experiment_name == "grpo_baseline"
    assert config.actor_rollout_ref.rollout.n > 1
    assert config.data.train_files.endswith("train.parquet")


def test_grpo_baseline_passes_verl_validate_config(data_overrides):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    from verl_frontier.validation import original_validate_config, validate_frontier_config

    config = rc.compose_recipe("grpo_baseline", data_overrides)
    validate_frontier_config(config)
    original_validate_config()(
        config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )


def test_platform_cpu_group_composes(data_overrides, repo_root):
    if not (repo_root / "verl_cpu" / "config" / "platform" / "cpu.yaml").is_file():
        pytest.skip("verl_cpu/config/platform/cpu.yaml not written yet")
    config = rc.compose_recipe("grpo_baseline", [*data_overrides, "+platform=cpu"])
    assert config.trainer.device == "cpu"


def test_misspelled_override_is_one_line_naming_the_key():
    with pytest.raises(rc.OverrideError) as info:
        rc.compose_recipe("grpo_baseline", ["algorithm.adv_estimatr=grpo"])
    msg = str(info.value)
    assert "\n" not in msg
    assert "'algorithm.adv_estimatr'" in msg and "did you mean 'algorithm.adv_estimator'" in msg


def test_unknown_recipe_lists_available():
    with pytest.raises(rc.RecipeError, match=r"^unknown recipe 'nope'; available: .*grpo_baseline"):
        rc.get_recipe("nope")


def test_describe_prefers_description_field(tmp_path):
    (tmp_path / "README.md").write_text("# title\n\nFirst line.\n\ndescription: The field wins\n")
    assert rc.describe(tmp_path) == "The field wins"
    # without the field: the whole first paragraph, its wrapped lines joined, up to a blank line or a table
    (tmp_path / "README.md").write_text("# title\n\n<!-- note -->\nFirst line\nwrapped.\n\nNext paragraph.\n")
    assert rc.describe(tmp_path) == "First line wrapped."
    (tmp_path / "README.md").write_text("# title\n\nA sentence.\n| a | b |\n")
    assert rc.describe(tmp_path) == "A sentence."


def test_recipes_dir_from_env(recipes_copy):
    assert rc.recipes_dir() == recipes_copy
    assert [r.name for r in rc.list_recipes()] == [r.name for r in rc.list_recipes(recipes_copy)]
