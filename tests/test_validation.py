"""verl_frontier.validation: checks, schemas, and the hook around verl's validate_config."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from verl_frontier import validation as v
from verl_frontier.validation import FrontierConfigError, validate_frontier_config


def cfg(**sections):
    return OmegaConf.create(sections)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# --- data files / model paths ------------------------------------------------------------------


def test_missing_data_file_is_one_line_naming_the_key(tmp_path, rl_parquet):
    train = tmp_path / "train.parquet"
    rl_parquet(train)
    config = cfg(data={"train_files": str(train), "val_files": str(tmp_path / "nope.parquet")})
    with pytest.raises(FrontierConfigError) as info:
        validate_frontier_config(config)
    msg = one_line(info.value)
    assert msg.startswith("data.val_files: ")
    assert "nope.parquet" in msg


def test_data_files_list_and_remote_and_home(tmp_path, monkeypatch, rl_parquet):
    monkeypatch.setenv("HOME", str(tmp_path))
    rl_parquet(tmp_path / "a.parquet")
    config = cfg(data={"train_files": ["~/a.parquet", "hdfs://cluster/x.parquet"], "val_files": None})
    validate_frontier_config(config)
    config = cfg(data={"train_files": ["~/a.parquet", "~/missing.parquet"]})
    with pytest.raises(FrontierConfigError, match=r"^data\.train_files: data file not found: ~/missing\.parquet"):
        validate_frontier_config(config)


def test_local_model_path_checked_hub_id_not(tmp_path):
    base = {"data": {"train_files": None}, "algorithm": {"adv_estimator": "grpo"}, "critic": {"enable": None}}
    ok = cfg(**base, actor_rollout_ref={"model": {"path": "Qwen/Qwen2.5-0.5B-Instruct"}})
    validate_frontier_config(ok)
    bad = cfg(**base, actor_rollout_ref={"model": {"path": str(tmp_path / "no_model")}})
    with pytest.raises(FrontierConfigError, match=r"^actor_rollout_ref\.model\.path: local model path not found"):
        validate_frontier_config(bad)
    # the critic's path only matters when a critic runs
    no_critic = cfg(**base, actor_rollout_ref={"model": {"path": "org/m"}}, **{})
    no_critic.critic = {"enable": False, "model": {"path": "/definitely/not/here"}}
    validate_frontier_config(no_critic)
    no_critic.critic.enable = True
    with pytest.raises(FrontierConfigError, match=r"^critic\.model\.path"):
        validate_frontier_config(no_critic)


def test_unresolvable_interpolation_names_the_key():
    config = cfg(data={"train_files": "${oc.env:FRONTIER_SURELY_UNSET_VAR}"})
    with pytest.raises(FrontierConfigError, match=r"^data\.train_files: cannot resolve value"):
        validate_frontier_config(config)


def test_several_errors_joined_on_one_line(tmp_path):
    config = cfg(
        data={"train_files": str(tmp_path / "a"), "val_files": None},
        actor_rollout_ref={"model": {"path": str(tmp_path / "m")}},
        algorithm={"adv_estimator": "grpo"},
        critic={"enable": None},
    )
    with pytest.raises(FrontierConfigError) as info:
        validate_frontier_config(config)
    one_line(info.value)
    assert len(info.value.errors) == 2
    assert "data.train_files" in str(info.value) and "actor_rollout_ref.model.path" in str(info.value)
    validate_frontier_config(config, skip=("data_files", "model_paths"))


# --- schemas ----------------------------------------------------------------------------------------


def test_negative_weight_exponent_one_line_error(test_schema):
    config = cfg(algorithm={"frontier_test": {"weight_exponent": -0.5}})
    with pytest.raises(FrontierConfigError) as info:
        validate_frontier_config(config)
    assert one_line(info.value) == "algorithm.frontier_test.weight_exponent: must be >= 0 (got -0.5)"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"weight_exponent": "big"}, r"^algorithm\.frontier_test\.weight_exponent: expected float \(got 'big'\)$"),
        ({"weight_exponent": True}, r"^algorithm\.frontier_test\.weight_exponent: expected float"),
        ({"warmup_steps": 1.5}, r"^algorithm\.frontier_test\.warmup_steps: expected int \(got 1\.5\)$"),
        ({"mode": "max"}, r"^algorithm\.frontier_test\.mode: must be one of \['mean', 'sum'\] \(got 'max'\)$"),
        ({"weight_exponant": 1.0}, r"^algorithm\.frontier_test\.weight_exponant: unknown key .*weight_exponent"),
    ],
)
def test_schema_errors_name_the_key(test_schema, section, expected):
    with pytest.raises(FrontierConfigError, match=expected):
        validate_frontier_config(cfg(algorithm={"frontier_test": section}))


def test_schema_accepts_valid_and_absent_sections(test_schema):
    validate_frontier_config(cfg(algorithm={"frontier_test": {"weight_exponent": 0, "warmup_steps": 3}}))
    validate_frontier_config(cfg(algorithm={"adv_estimator": "grpo"}))


def test_schema_post_init_and_required_fields():
    @dataclass
    class Needs:
        alpha: float = field(metadata={"ge": 0})
        beta: float = 0.0

        def __post_init__(self):
            if self.beta > self.alpha:
                raise ValueError("beta must not exceed alpha")

    v.register_schema("algorithm.needs", Needs)
    try:
        with pytest.raises(FrontierConfigError, match=r"^algorithm\.needs\.alpha: required value is missing$"):
            validate_frontier_config(cfg(algorithm={"needs": {"beta": 1.0}}))
        with pytest.raises(FrontierConfigError, match=r"^algorithm\.needs: invalid Needs: beta must not exceed alpha"):
            validate_frontier_config(cfg(algorithm={"needs": {"alpha": 0.5, "beta": 1.0}}))
        validate_frontier_config(cfg(algorithm={"needs": {"alpha": 2}}))
    finally:
        v.unregister_schema("algorithm.needs")


def test_register_schema_rejects_non_dataclass():
    with pytest.raises(TypeError):
        v.register_schema("algorithm.x", int)


def test_register_check_decorator_and_skip():
    calls = []

    @v.register_check(name="frontier_test_check")
    def _check(config):
        calls.append(1)
        raise v.config_error("trainer.total_epochs", "must be positive", config.trainer.total_epochs)

    try:
        with pytest.raises(FrontierConfigError, match=r"^trainer\.total_epochs: must be positive \(got -1\)$"):
            validate_frontier_config(cfg(trainer={"total_epochs": -1}))
        assert "frontier_test_check" not in validate_frontier_config(
            cfg(trainer={"total_epochs": -1}), skip=("frontier_test_check",)
        )
        assert calls == [1]
    finally:
        v.unregister_check("frontier_test_check")


# --- hook around verl's validate_config --------------------------------------------------------------


def test_entry_point_installed_hook_runs_frontier_checks_first(tmp_path):
    import verl  # noqa: F401 - loads the verl.plugins entry points
    import verl.utils.config as vuc

    assert v.hook_installed()
    config = OmegaConf.create({"data": {"train_files": str(tmp_path / "missing.parquet")}})
    # frontier checks run before verl's own (which would fail on this skeleton config differently)
    with pytest.raises(FrontierConfigError, match=r"^data\.train_files"):
        vuc.validate_config(config=config, use_reference_policy=False, use_critic=False)
    with v.hook_disabled(), pytest.raises(Exception) as info:
        vuc.validate_config(config=config, use_reference_policy=False, use_critic=False)
    assert not isinstance(info.value, FrontierConfigError)


def test_install_hook_is_idempotent_and_rebinds_importers(monkeypatch):
    import types

    import verl.utils.config as vuc

    wrapped = vuc.validate_config
    fake_importer = types.ModuleType("verl.frontier_fake_importer")
    fake_importer.validate_config = v.original_validate_config()  # as if it ran `from ... import validate_config`
    monkeypatch.setitem(__import__("sys").modules, "verl.frontier_fake_importer", fake_importer)
    assert v.install_validation_hook() is False
    assert vuc.validate_config is wrapped
    assert fake_importer.validate_config is wrapped


def test_version_guard(monkeypatch):
    import verl

    monkeypatch.setattr(verl, "__version__", "0.10.0")
    with pytest.raises(v.VerlVersionError, match=r"verl==0\.9\.1 only, found verl 0\.10\.0"):
        v.install_validation_hook()


def test_world_paths_are_pinned_in_the_driver(tmp_path, monkeypatch):
    """${frontier_world:...} resolves once, in the driver: a Ray worker without FRONTIER_WORLD_DIR sees the same."""
    import verl  # noqa: F401  (registers the resolver through the entry point)
    from omegaconf import OmegaConf

    from verl_frontier.validation import pin_driver_paths

    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(tmp_path))
    config = OmegaConf.create(
        {
            "model": {"path": "${frontier_world:student}"},
            "files": ["${frontier_world:data/a.parquet}"],
            "n": "${x}",
            "x": 1,
        }
    )
    OmegaConf.set_struct(config, True)
    assert pin_driver_paths(config) == 2
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(tmp_path / "elsewhere"))
    assert config.model.path == str(tmp_path / "student")
    assert config.files[0] == str(tmp_path / "data" / "a.parquet")
    assert OmegaConf.is_interpolation(config, "n")  # other interpolations are left to verl
