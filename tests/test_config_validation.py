"""Config validation as a whole: every schema's numbers, section shapes, registered names, verl's own types,
the roles a run builds, data files, reporting every problem at once, distillation temperature, and the one
settings reader every method uses."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import typing
from pathlib import Path

import pytest
import verl  # noqa: F401 - the verl.plugins entry points register the methods and their schemas (collection)
from omegaconf import OmegaConf

from verl_frontier import recipes as rc
from verl_frontier import validation as v
from verl_frontier.validation import FrontierConfigError, validate_frontier_config

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def compose(recipe: str, data_overrides: list[str], *overrides: str, config_name: str | None = None):
    return rc.compose_recipe(recipe, [*data_overrides, *overrides], config_name=config_name)


def problems(config, skip=("model_paths",)) -> list[str]:
    with pytest.raises(FrontierConfigError) as info:
        validate_frontier_config(config, skip=skip)
    assert "\n" not in str(info.value)
    return info.value.errors


def assert_one(errors: list[str], prefix: str, *needles: str) -> str:
    hits = [e for e in errors if e.startswith(prefix)]
    assert len(hits) == 1, (prefix, errors)
    for needle in needles:
        assert needle in hits[0], (needle, hits[0])
    return hits[0]


# --- 1. non-finite numbers ----------------------------------------------------------------------------


def _numeric_fields():
    out = []
    for section, schema in sorted(v.registered_schemas().items()):
        hints = typing.get_type_hints(schema)
        for fld in dataclasses.fields(schema):
            args = set(typing.get_args(hints[fld.name])) or {hints[fld.name]}
            if args & {int, float} and not fld.metadata.get(v.ALLOW_NONFINITE):
                out.append(pytest.param(section, schema, fld.name, id=f"{section}.{fld.name}"))
    return out


def test_every_method_schema_is_registered():
    sections = set(v.registered_schemas())
    assert {"algorithm.paced", "algorithm.ace", "actor_rollout_ref.opsdc", "actor_rollout_ref.essence"} <= sections


@pytest.mark.parametrize(("section", "schema", "name"), _numeric_fields())
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_every_numeric_option_rejects_non_finite(section, schema, name, bad):
    with pytest.raises(FrontierConfigError) as info:
        v.read_settings(schema, {name: bad}, section)
    hint = typing.get_type_hints(schema)[name]
    takes_float = float in (set(typing.get_args(hint)) or {hint})
    problem = "must be a finite number" if takes_float else "expected int"
    (error,) = info.value.errors
    assert error.startswith(f"{section}.{name}: {problem}") and error.endswith(f"(got {bad!r})"), error


def test_allow_nonfinite_metadata_admits_inf():
    @dataclasses.dataclass
    class Clamp:
        limit: float = dataclasses.field(default=math.inf, metadata={v.ALLOW_NONFINITE: True, "gt": 0})
        scale: float = 1.0

    assert v.read_settings(Clamp, {"limit": math.inf}, "x").limit == math.inf
    with pytest.raises(FrontierConfigError, match=r"^x\.scale: must be a finite number"):
        v.read_settings(Clamp, {"scale": math.inf}, "x")


def test_ace_alpha_inf_fails_validate(data_overrides):
    errors = problems(compose("ace_grpo", data_overrides, "algorithm.ace.alpha=inf"))
    assert errors == ["algorithm.ace.alpha: must be a finite number (got inf)"]


# --- 2. a method section given as a scalar -------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "section"),
    [
        ("paced_distill", "algorithm.paced"),
        ("ace_grpo", "algorithm.ace"),
        ("opsdc", "actor_rollout_ref.opsdc"),
        ("essence", "actor_rollout_ref.essence"),
    ],
)
def test_scalar_method_section_names_the_key(data_overrides, recipe, section):
    config = compose(recipe, data_overrides)
    OmegaConf.update(config, section, 5, merge=False)
    errors = problems(config, skip=("model_paths", "data_files"))
    assert_one(errors, f"{section}: expected a mapping", "(got 5)")
    assert not any("check failed" in e for e in errors), errors


# --- 3. names that select a registered piece -----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "suggestion"),
    [
        ("algorithm.adv_estimator=grop", "algorithm.adv_estimator", "'grpo'"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode=vanila", "actor_rollout_ref.actor.policy_loss.loss_mode",
         "'vanilla'"),
        ("actor_rollout_ref.rollout.name=vlm", "actor_rollout_ref.rollout.name", "'vllm'"),
        ("actor_rollout_ref.rollout.agent.default_agent_loop=single_turn",
         "actor_rollout_ref.rollout.agent.default_agent_loop", "'single_turn_agent'"),
    ],
)  # fmt: skip
def test_unregistered_names_fail_with_did_you_mean(data_overrides, override, key, suggestion):
    errors = problems(compose("grpo_baseline", data_overrides, override))
    assert_one(errors, f"{key}: ", "is not a registered", f"did you mean {suggestion}")


def test_nonexistent_estimator_lists_registered_ones(data_overrides):
    errors = problems(compose("grpo_baseline", data_overrides, "algorithm.adv_estimator=nonexistent_est"))
    assert_one(errors, "algorithm.adv_estimator: 'nonexistent_est' is not a registered adv_est name", "grpo")


def test_distillation_loss_name_checked_only_with_distillation(data_overrides):
    errors = problems(compose("kd_uniform", data_overrides, "distillation.distillation_loss.loss_mode=forward_kl_topp"))
    assert_one(errors, "distillation.distillation_loss.loss_mode: ", "did you mean 'forward_kl_topk'")
    config = compose("grpo_baseline", data_overrides, "distillation.distillation_loss.loss_mode=forward_kl_topp")
    assert config.distillation.enabled is False
    validate_frontier_config(config, skip=("model_paths",))


def test_per_row_agent_name_must_be_registered(rl_parquet, tmp_path):
    train = rl_parquet(tmp_path / "train.parquet", agent_name="essence_replai")
    val = rl_parquet(tmp_path / "val.parquet", agent_name="single_turn_agent")
    errors = problems(compose("grpo_baseline", [f"data.train_files={train}", f"data.val_files={val}"]))
    assert_one(errors, "data.train_files: ", "agent_name 'essence_replai'", "did you mean 'essence_replay'")
    assert not any(e.startswith("data.val_files") for e in errors), errors


# --- 4. verl's own keys with a wrong type --------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.total_training_steps=abc", "trainer.total_training_steps: expected int (got 'abc')"),
        ("data.train_batch_size=1.5", "data.train_batch_size: expected int (got 1.5)"),
        ("actor_rollout_ref.actor.optim.lr=abc", "actor_rollout_ref.actor.optim.lr: expected a number (got 'abc')"),
        ("trainer.val_before_train=maybe", "trainer.val_before_train: expected bool (got 'maybe')"),
        ("actor_rollout_ref.rollout.n=two", "actor_rollout_ref.rollout.n: expected int (got 'two')"),
    ],
)
def test_verl_keys_of_the_wrong_type_fail(data_overrides, override, expected):
    assert expected in problems(compose("grpo_baseline", data_overrides, override))


def test_verl_types_accept_ints_for_floats_and_nulls(data_overrides):
    config = compose(
        "grpo_baseline", data_overrides, "actor_rollout_ref.actor.optim.lr=1", "trainer.total_training_steps=null"
    )
    validate_frontier_config(config, skip=("model_paths",))


def test_verl_section_given_as_scalar_fails(data_overrides):
    config = compose("grpo_baseline", data_overrides)
    OmegaConf.update(config, "algorithm.kl_ctrl", 5, merge=False)
    assert_one(problems(config), "algorithm.kl_ctrl: expected a mapping")


# --- 5. only the roles a run builds are checked ---------------------------------------------------------

CPU_RUN = ("trainer.device=cpu", "actor_rollout_ref.rollout.name=hf", "actor_rollout_ref.actor.strategy=fsdp2")


def test_cpu_check_ignores_the_unused_critic(data_overrides):
    config = compose("grpo_baseline", data_overrides, *CPU_RUN)
    assert config.critic.strategy == "fsdp"  # verl's default, unused by GRPO
    validate_frontier_config(config, skip=("model_paths",))


@pytest.mark.parametrize("builds_critic", ["algorithm.adv_estimator=gae", "critic.enable=true"])
def test_cpu_check_covers_a_critic_the_run_builds(data_overrides, builds_critic):
    errors = problems(compose("grpo_baseline", data_overrides, *CPU_RUN, builds_critic))
    assert_one(errors, "critic.strategy=fsdp: only fsdp2 runs on the CPU platform")


def test_cpu_check_covers_the_reference_only_when_built(data_overrides):
    no_ref = (*CPU_RUN, "actor_rollout_ref.ref.strategy=fsdp", "actor_rollout_ref.actor.use_kl_loss=false")
    validate_frontier_config(compose("grpo_baseline", data_overrides, *no_ref), skip=("model_paths",))
    for builds_ref in ("actor_rollout_ref.actor.use_kl_loss=true", "algorithm.use_kl_in_reward=true"):
        errors = problems(compose("grpo_baseline", data_overrides, *no_ref, builds_ref))
        assert_one(errors, "actor_rollout_ref.ref.strategy=fsdp: only fsdp2")


# --- 6. data files -------------------------------------------------------------------------------------


def _data(train: Path, val: Path | None = None) -> list[str]:
    return [f"data.train_files={train}", f"data.val_files={val or train}"]


def test_data_file_must_be_readable_parquet(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    empty = tmp_path / "empty.parquet"
    empty.touch()
    errors = problems(compose("grpo_baseline", _data(garbage, empty)))
    assert_one(errors, "data.train_files: not a readable parquet file: " + str(garbage))
    assert_one(errors, "data.val_files: not a readable parquet file: " + str(empty))


def test_data_file_needs_rows_and_format(rl_parquet, tmp_path):
    no_rows = rl_parquet(tmp_path / "none.parquet", rows=0)
    csv = tmp_path / "train.csv"
    csv.write_text("a,b\n")
    errors = problems(compose("grpo_baseline", _data(csv, no_rows)))
    assert_one(errors, "data.train_files: unsupported data file format")
    assert_one(errors, f"data.val_files: data file has no rows: {no_rows}")


def test_data_file_needs_the_columns_the_run_reads(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": ["1+1="], "reward_model": [{"style": "rule"}], "data_source": ["t"]}), path)
    errors = [e for e in problems(compose("grpo_baseline", _data(path))) if e.startswith("data.train_files: ")]
    assert len(errors) == 2, errors
    assert "has no column 'prompt'" in errors[0] and "data.prompt_key" in errors[0]
    assert "'reward_model' has no field 'ground_truth'" in errors[1]
    # data.prompt_key selects the column
    errors = problems(compose("grpo_baseline", _data(path), "data.prompt_key=question"))
    assert not any("no column" in e for e in errors), errors


def test_data_file_problems_reads_only_the_footer(rl_parquet, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = rl_parquet(tmp_path / "t.parquet")

    def no_rows(*args, **kwargs):
        raise AssertionError("row data read")

    monkeypatch.setattr(pq, "read_table", no_rows)
    monkeypatch.setattr(pq.ParquetFile, "read", no_rows)
    validate_frontier_config(compose("grpo_baseline", _data(path)), skip=("model_paths",))


def test_custom_dataset_class_skips_the_column_check(tmp_path):
    path = tmp_path / "custom.parquet"
    path.write_text("read by a custom dataset class")
    config = compose("grpo_baseline", _data(path), "data.custom_cls.path=/x.py", "data.custom_cls.name=D")
    validate_frontier_config(config, skip=("model_paths",))


# --- 7. every problem at once ---------------------------------------------------------------------------


def test_validate_reports_every_problem_one_line_each(cli, data_overrides):
    result = cli(
        "validate", "ace_grpo", *data_overrides, "algorithm.ace.alpha=inf", "trainer.total_training_steps=abc",
        "actor_rollout_ref.actor.policy_loss.loss_mode=vanila", "+algorithm.ace.alpah=1",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    assert "Traceback" not in result.output
    for needle in (
        "algorithm.ace.alpha: must be a finite number",
        "trainer.total_training_steps: expected int",
        "policy_loss.loss_mode: 'vanila' is not a registered",
        "algorithm.ace.alpah: unknown key",
    ):
        assert sum(needle in line for line in lines) == 1, (needle, lines)


def test_driver_hook_prints_every_problem_before_raising(data_overrides, capsys):
    import verl.utils.config as vuc

    config = compose("grpo_baseline", data_overrides, "algorithm.adv_estimator=grop", "data.train_batch_size=1.5")
    with pytest.raises(FrontierConfigError) as info:
        vuc.validate_config(config=config, use_reference_policy=False, use_critic=False)
    assert len(info.value.errors) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2:] == [f"frontier config error: {e}" for e in info.value.errors]


def test_cpu_driver_reports_frontier_problems_with_the_cpu_ones(data_overrides):
    from verl_cpu.validation import CPUConfigError, prepare_cpu_driver

    config = compose("grpo_baseline", data_overrides, *CPU_RUN, "critic.enable=true", "algorithm.adv_estimator=grop")
    with pytest.raises(CPUConfigError) as info:
        prepare_cpu_driver(config)
    assert_one(info.value.errors, "critic.strategy=fsdp")
    assert_one(info.value.errors, "algorithm.adv_estimator: 'grop'")


def test_a_crashing_check_is_one_line():
    @v.register_check(name="frontier_test_crash")
    def _crash(config):
        raise KeyError("boom")

    try:
        with pytest.raises(FrontierConfigError, match=r"frontier_test_crash check failed: KeyError: 'boom'"):
            validate_frontier_config(OmegaConf.create({"trainer": {}}))
    finally:
        v.unregister_check("frontier_test_crash")


# --- 8. distillation needs rollout temperature 1 ---------------------------------------------------------


def test_distillation_refuses_rollout_temperature_other_than_one(data_overrides):
    errors = problems(compose("paced_distill", data_overrides, "actor_rollout_ref.rollout.temperature=0.7"))
    assert_one(errors, "actor_rollout_ref.rollout.temperature: distillation needs temperature 1", "(got 0.7)")
    validate_frontier_config(
        compose("grpo_baseline", data_overrides, "actor_rollout_ref.rollout.temperature=0.7"), skip=("model_paths",)
    )


def test_verl_scales_student_logits_by_the_rollout_temperature():
    """The premise of the check above, in verl's source: the engine divides the logits by the temperature
    before the distillation logits processor, while the teacher is queried at temperature 1."""
    import inspect

    from verl.experimental.teacher_loop import teacher_manager
    from verl.workers.engine.fsdp import transformer_impl

    source = inspect.getsource(transformer_impl)
    scaled = source.index("logits_rmpad = _scale_logits_by_temperature(")
    assert scaled < source.index("logits_processor_func(student_logits=logits_rmpad", scaled)
    assert '"temperature": 1.0' in inspect.getsource(teacher_manager)


# --- one settings reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("section", sorted(v.registered_schemas()) or ["algorithm.paced"])
def test_unknown_keys_raise_with_did_you_mean_for_every_method(section):
    schema = v.registered_schemas()[section]
    first = dataclasses.fields(schema)[0].name
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    with pytest.raises(
        FrontierConfigError, match=rf"^{section}\.{typo}: unknown key .*did you mean '{section}\.{first}'"
    ):
        v.read_settings(schema, {typo: None}, section)
    # the methods' own readers (workers) go through the same helper
    with pytest.raises(FrontierConfigError, match="unknown key"):
        schema.from_mapping(OmegaConf.create({typo: 1}))


def test_method_schemas_live_in_config_modules():
    for section, schema in v.registered_schemas().items():
        if section.startswith(("algorithm.", "actor_rollout_ref.")):
            assert schema.__module__.endswith(".config"), (section, schema.__module__)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("ace", r"alpha: must be >= 0"),
        ("opsdc", r"teacher_update_freq: must be >= 0"),
        ("essence", r"ce_weight: must be <= 1"),
        ("paced", r"normalize: must be one of"),
    ],
)
def test_ranges_come_from_field_metadata_also_in_code(build, message):
    from verl_frontier.ace.config import AceConfig
    from verl_frontier.essence.config import EssenceConfig
    from verl_frontier.opsdc.config import OpsdcConfig
    from verl_frontier.paced.config import PacedConfig

    make = {
        "ace": lambda: AceConfig(alpha=-1.0),
        "opsdc": lambda: OpsdcConfig(teacher_update_freq=-1),
        "essence": lambda: EssenceConfig(ce_weight=2.0),
        "paced": lambda: PacedConfig(normalize="max"),
    }[build]
    with pytest.raises(ValueError, match=message):
        make()


def test_from_mapping_stores_ints_as_floats():
    from verl_frontier.ace.config import AceConfig

    settings = AceConfig.from_mapping({"alpha": 2})
    assert settings.alpha == 2.0 and isinstance(settings.alpha, float)


# --- every recipe still validates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_world(small_world_dir, tmp_path_factory) -> Path:
    """The small tiny world plus the data the orbit, essence and kd recipes read (built from its own rows)."""
    from verl_frontier.essence import data as essence_data
    from verl_frontier.orbit import data as orbit_data

    world = tmp_path_factory.mktemp("full") / "world"
    shutil.copytree(small_world_dir, world)
    orbit_data.main(["--preset", "tiny", "--out", str(world / "orbit")])
    essence_data.main(
        ["--data", str(world / "data" / "train_verbose.parquet"), "--from-field", "extra_info.reference",
         "--out", str(world / "essence"), "--num", "16", "--keep-incorrect"]
    )  # fmt: skip
    (world / "kd_concise").mkdir()
    shutil.copy(world / "essence" / "train.parquet", world / "kd_concise" / "train.parquet")
    essence_data.ensure_world_teacher_data(world, "kd_concise")  # rewrites agent_name for the kd replay loop
    return world


def _recipe_configs():
    return [
        pytest.param(recipe.name, name, id=f"{recipe.name}/{name}")
        for recipe in rc.list_recipes(RECIPES_DIR)
        for name in recipe.configs
    ]


@pytest.mark.parametrize(("recipe", "config_name"), _recipe_configs())
def test_every_recipe_validates(cli, full_world, monkeypatch, recipe, config_name):
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(full_world))
    args = ["validate", recipe, "--config-name", config_name]
    if not config_name.endswith("_tiny"):  # cluster configs: placeholder data and model paths
        data = full_world / "data"
        args += [f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'test.parquet'}"]
        args += ["--skip-check", "model_paths"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr


def test_registered_checks_helper_is_gone():
    assert not hasattr(v, "registered_checks")
    assert "verl_frontier.validation" in sys.modules
