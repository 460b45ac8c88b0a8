"""Registration protocol: EXPECTED_REGISTRATIONS, assert_registered, and entry points in a fresh process."""

from __future__ import annotations

import json
import textwrap

import pytest

from verl_frontier import registration as reg
from verl_frontier.registration import RegistrationError, assert_registered


@pytest.fixture
def fake_adv_est():
    """Registers advantage estimator ``frontier_test_adv`` in verl's real registry for one test."""
    from verl.trainer.ppo import core_algos

    @core_algos.register_adv_est("frontier_test_adv")
    def _adv(token_level_rewards, response_mask, config=None, **kwargs):
        return token_level_rewards, token_level_rewards

    yield "frontier_test_adv"
    core_algos.ADV_ESTIMATOR_REGISTRY.pop("frontier_test_adv", None)


def test_fake_plugin_all_present(fake_plugin, fake_adv_est):
    fake_plugin(
        "frontier_fake_ok",
        [("adv_est", fake_adv_est), ("adv_est", "grpo"), ("policy_loss", "vanilla"), ("platform", "nvidia")],
    )
    found = assert_registered(["frontier_fake_ok"], check_hook=False)
    assert ("adv_est", fake_adv_est) in found["frontier_fake_ok"]
    assert len(found["frontier_fake_ok"]) == 4


def test_fake_plugin_missing_names_listed_in_one_error(fake_plugin):
    fake_plugin("frontier_fake_a", [("adv_est", "grpo"), ("adv_est", "nope_adv"), ("policy_loss", "nope_loss")])
    fake_plugin("frontier_fake_b", [("rollout", "nope_rollout"), ("teleport", "x"), "garbage"])
    fake_plugin("frontier_fake_c", None)
    with pytest.raises(RegistrationError) as info:
        assert_registered(["frontier_fake_a", "frontier_fake_b", "frontier_fake_c", "frontier_no_such_module"])
    msg = str(info.value)
    assert "\n" not in msg
    for needle in (
        "frontier_fake_a: adv_est 'nope_adv' not registered in verl.trainer.ppo.core_algos.ADV_ESTIMATOR_REGISTRY",
        "frontier_fake_a: policy_loss 'nope_loss' not registered",
        "frontier_fake_b: rollout 'nope_rollout' not registered",
        "frontier_fake_b: unknown registry kind 'teleport'",
        "frontier_fake_b: bad EXPECTED_REGISTRATIONS entry 'garbage'",
        "frontier_fake_c does not define EXPECTED_REGISTRATIONS",
        "cannot import plugin module frontier_no_such_module: ModuleNotFoundError",
    ):
        assert needle in msg, (needle, msg)
    assert len(info.value.problems) == 7


def test_plugin_import_error_propagates_into_assert(tmp_path, monkeypatch):
    (tmp_path / "frontier_broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistrationError, match=r"frontier_broken_plugin: RuntimeError: boom at import"):
        assert_registered(["frontier_broken_plugin"], check_hook=False)


def test_every_kind_has_a_readable_registry():
    for kind in reg.KINDS:
        names = reg.registered_names(kind)
        assert isinstance(names, list), kind
    assert "grpo" in reg.registered_names("adv_est")
    assert "vanilla" in reg.registered_names("policy_loss")
    assert "k3" in reg.registered_names("distillation_loss")
    assert "single_turn_agent" in reg.registered_names("agent_loop")
    assert "vllm" in reg.registered_names("rollout")
    assert "sync" in reg.registered_names("trainer")
    assert "language_model/fsdp/cuda" in reg.registered_names("engine")


def test_engine_name_forms():
    assert reg.is_registered("engine", "cuda")
    assert reg.is_registered("engine", "language_model/fsdp/cuda")
    assert reg.is_registered("engine", "language_model:fsdp2:cuda")
    assert not reg.is_registered("engine", "language_model/fsdp/tpu")
    assert not reg.is_registered("engine", "tpu")


def test_rollout_needs_both_registries(monkeypatch):
    from verl.workers.rollout import replica

    monkeypatch.setitem(replica.RolloutReplicaRegistry._registry, "frontier_half", lambda: None)
    assert not reg.is_registered("rollout", "frontier_half")
    ok, problems = reg.check_expected("m", [("rollout", "frontier_half")])
    assert ok == [] and "not in _ROLLOUT_REGISTRY" in problems[0]


def test_plugin_entry_point_lists_only_importable_method_plugins():
    import importlib.util

    from verl_frontier.plugin import LOAD_ERRORS, METHOD_PLUGINS

    for module in METHOD_PLUGINS:
        assert importlib.util.find_spec(module.split(".")[0]) is not None, module
    assert LOAD_ERRORS == {}, LOAD_ERRORS


def test_real_verl_cpu_registrations():
    """As `frontier check` runs on any node (no VERL_PLATFORM): every declared registration must be there."""
    import verl_cpu.plugin

    if not hasattr(verl_cpu.plugin, "EXPECTED_REGISTRATIONS"):
        pytest.skip("verl_cpu.plugin.EXPECTED_REGISTRATIONS is not defined yet (the lead is writing verl_cpu)")
    found = assert_registered()
    assert sorted(found[reg.CPU_PLUGIN]) == sorted(tuple(p) for p in verl_cpu.plugin.EXPECTED_REGISTRATIONS)


# --- fresh interpreter: registrations come from the entry points alone ------------------------------

FRESH_CHECK = textwrap.dedent(
    """
    import json, sys
    import verl  # the only import: entry points must do the rest
    loaded = sorted(m for m in ("verl_cpu.plugin", "verl_frontier.plugin") if m in sys.modules)
    import verl.utils.config as vuc
    out = {"loaded": loaded, "hook": hasattr(vuc.validate_config, "__frontier_wrapped__")}
    cpu = sys.modules.get("verl_cpu.plugin")
    out["has_expected"] = hasattr(cpu, "EXPECTED_REGISTRATIONS")
    from verl_frontier.registration import check_expected   # reads registries, imports no plugin module
    if out["has_expected"]:
        out["found"], out["problems"] = check_expected("verl_cpu.plugin", cpu.EXPECTED_REGISTRATIONS)
    import verl.trainer.main_ppo as main_ppo   # module import only, no ray.init
    out["main_ppo_hooked"] = hasattr(main_ppo.validate_config, "__frontier_wrapped__")
    print("RESULT" + json.dumps(out))
    """
)


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_fresh_process_gets_registrations_from_entry_points(python_subprocess):
    """A fresh interpreter set up like a CPU Ray worker (VERL_PLATFORM=cpu comes with its runtime_env)."""
    out = _result(python_subprocess(FRESH_CHECK, env={"VERL_PLATFORM": "cpu"}))
    assert out["loaded"] == ["verl_cpu.plugin", "verl_frontier.plugin"]
    assert out["hook"], "verl_frontier.plugin did not wrap verl.utils.config.validate_config"
    assert out["main_ppo_hooked"], "verl.trainer.main_ppo binds an unwrapped validate_config"
    if out["has_expected"]:
        assert out["problems"] == [], out["problems"]
        assert out["found"], "verl_cpu.plugin declares no registrations"


def test_fresh_process_fake_distribution_entry_point(tmp_path, python_subprocess):
    """A plugin installed only as a distribution's ``verl.plugins`` entry point registers on ``import verl``."""
    (tmp_path / "frontier_ep_probe.py").write_text(
        textwrap.dedent(
            """
            from verl.trainer.ppo.core_algos import register_adv_est
            EXPECTED_REGISTRATIONS = [("adv_est", "frontier_ep_probe_adv")]

            @register_adv_est("frontier_ep_probe_adv")
            def adv(token_level_rewards, response_mask, config=None, **kwargs):
                return token_level_rewards, token_level_rewards
            """
        )
    )
    dist = tmp_path / "frontier_ep_probe-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: frontier-ep-probe\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[verl.plugins]\nfrontier_ep_probe = frontier_ep_probe\n")
    code = textwrap.dedent(
        """
        import json, verl
        from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
        from verl_frontier.registration import assert_registered
        found = assert_registered(["frontier_ep_probe"], check_hook=False)
        print("RESULT" + json.dumps({"in_registry": "frontier_ep_probe_adv" in ADV_ESTIMATOR_REGISTRY,
                                      "found": found}))
        """
    )
    out = _result(python_subprocess(code, env={"PYTHONPATH": str(tmp_path)}))
    assert out["in_registry"]
    assert out["found"] == {"frontier_ep_probe": [["adv_est", "frontier_ep_probe_adv"]]}
