"""The table of verl-frontier's wraps of verl symbols (verl_frontier.verl_patches) against what gets installed."""

from __future__ import annotations

import importlib
import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl_frontier import verl_patches
from verl_frontier.verl_patches import PATCHES, SUPPORTED_VERL_VERSION


def _installer(patch):
    module, name = patch.installed_by.split(":")
    return getattr(importlib.import_module(module), name)


def test_table_is_consistent():
    assert len({(p.target, p.owner) for p in PATCHES}) == len(PATCHES)  # one row per symbol and owner
    for p in PATCHES:
        assert p.verl == SUPPORTED_VERL_VERSION and p.why and p.owner
        assert callable(_installer(p)), p.installed_by
    from verl_frontier import validation

    assert validation.SUPPORTED_VERL_VERSION is SUPPORTED_VERL_VERSION
    text = verl_patches.format_table()
    assert all(p.target in text for p in PATCHES)


def test_installed_chains_match_the_table(python_subprocess):
    """In a fresh process with the plugins loaded by ``import verl``: every verl function wrapped by verl_frontier
    code is in the table, and each symbol's layers (outermost first) are the table's rows in reverse."""
    code = textwrap.dedent(
        """
        import importlib, importlib.util, inspect, json, sys
        import verl
        from verl_frontier.verl_patches import PATCHES

        owner_of = {}
        for p in PATCHES:
            origin = importlib.util.find_spec(p.installed_by.split(":")[0]).origin
            owner_of[origin] = p.owner
        modules = sorted({p.module for p in PATCHES})
        for name in modules:
            importlib.import_module(name)

        def layers(fn):
            out, seen = [], set()
            while fn is not None and id(fn) not in seen:
                seen.add(id(fn))
                code = getattr(fn, "__code__", None)
                if code is not None and code.co_filename in owner_of:
                    out.append(owner_of[code.co_filename])
                fn = getattr(fn, "__wrapped__", None)
            return out

        def resolve(module, qualname):
            obj = sys.modules[module]
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj

        chains = {f"{p.module}:{p.qualname}": layers(resolve(p.module, p.qualname)) for p in PATCHES}
        found = []  # every function defined in a loaded verl module that verl_frontier code wraps
        for mod_name, module in sorted(sys.modules.items()):
            if module is None or not (mod_name == "verl" or mod_name.startswith("verl.")):
                continue
            for attr, obj in list(vars(module).items()):
                holders = [(attr, obj)]
                if inspect.isclass(obj) or hasattr(obj, "__ray_actor_class__"):
                    cls = getattr(obj, "__ray_actor_class__", obj)
                    if getattr(cls, "__module__", None) != mod_name:
                        continue
                    holders = [(f"{attr}.{k}", v) for k, v in vars(cls).items()]
                elif getattr(obj, "__module__", None) != mod_name:
                    continue
                for qualname, fn in holders:
                    if callable(fn) and layers(fn):
                        found.append(f"{mod_name}:{qualname}")
        print(json.dumps({"chains": chains, "found": sorted(set(found))}))
        """
    )
    proc = python_subprocess(code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    targets = {p.target for p in PATCHES}
    assert set(out["found"]) <= targets, f"wraps missing from verl_patches.PATCHES: {set(out['found']) - targets}"
    for target, chain in out["chains"].items():
        module, qualname = target.split(":")
        expected = [p.owner for p in reversed(verl_patches.patches_of(module, qualname))]
        assert chain == expected, target


def test_version_policy_skips_and_names_the_wraps(monkeypatch, caplog):
    monkeypatch.setattr(verl_patches, "installed_verl_version", lambda: "0.10.0")
    monkeypatch.setattr(verl_patches, "_warned", set())
    with caplog.at_level("WARNING", logger="verl_frontier"):
        assert verl_patches.verl_supported("paced") is False
        assert verl_patches.verl_supported("paced") is False  # one warning per owner
    assert len(caplog.records) == 1
    assert "RayPPOTrainer._update_actor" in caplog.text and "found 0.10.0" in caplog.text
    assert "NOT installed" in verl_patches.format_table()
    monkeypatch.setattr(verl_patches, "installed_verl_version", lambda: SUPPORTED_VERL_VERSION)
    assert verl_patches.verl_supported("paced") is True


def test_paced_and_driver_hooks_on_update_actor_both_run():
    """Legacy ``RayPPOTrainer._update_actor``: driver_hooks (inner) merges the metrics Paced (outer) logs while it
    drops the zero-weight groups."""
    from verl.protocol import DataProto

    from verl_frontier import driver_hooks

    seen = {}

    class RayPPOTrainer:
        def _get_gen_batch(self, batch):
            return batch

        def _update_actor(self, batch):
            seen["uid"] = batch.non_tensor_batch["uid"].tolist()
            return SimpleNamespace(meta_info={"metrics": {"actor/loss": 1.0}})

    module = SimpleNamespace(RayPPOTrainer=RayPPOTrainer)
    stacked = verl_patches.patches_of("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._update_actor")
    assert [p.owner for p in stacked] == ["driver_hooks", "paced"]
    for patch in stacked:
        _installer(patch)(module)
    config = OmegaConf.create(
        {
            "algorithm": {"adv_estimator": "paced", "paced": {"drop_zero_weight": True}},
            "actor_rollout_ref": {
                "rollout": {"n": 2},
                "actor": {"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": 2},
            },
        }
    )
    trainer = RayPPOTrainer()
    trainer.config, trainer.actor_rollout_wg = config, SimpleNamespace(world_size=1)
    weight = torch.tensor([0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 2.0, 2.0])
    mask = torch.tensor([[1, 1, 0]] * 8)
    batch = DataProto.from_dict(
        tensors={"advantages": weight[:, None] * mask, "response_mask": mask},
        non_tensors={"uid": np.array(list("aabbccdd"), dtype=object)},
    )
    driver_hooks.pop_step_metrics()
    output = trainer._update_actor(batch)
    assert seen["uid"] == list("bbdd")  # Paced ran: zero-weight groups dropped
    metrics = output.meta_info["metrics"]  # driver_hooks ran: Paced's metrics are in the step's record
    assert metrics["actor/loss"] == 1.0 and metrics["paced/dropped_sample_frac"] == 0.5


def test_opsdc_and_essence_on_the_actor_worker_both_run(monkeypatch):
    """``ActorRolloutRefWorker.init_model`` / ``update_actor``: OPSDC (inner) and Essence (outer) both run; on
    ``update_actor`` Essence clears ``distillation_only`` first, then OPSDC sets its flags (they win)."""
    from verl_frontier.essence import verl_plugin as essence_plugin
    from verl_frontier.opsdc import verl_plugin as opsdc_plugin

    calls = []
    state = SimpleNamespace(teacher_engine=SimpleNamespace())
    monkeypatch.setattr(opsdc_plugin, "_install_worker_state", lambda worker: calls.append("opsdc init") or state)
    monkeypatch.setattr(opsdc_plugin, "after_update", lambda s: calls.append("opsdc after update") or {})
    monkeypatch.setattr(essence_plugin, "WORKER_SETTINGS", essence_plugin.WORKER_SETTINGS)

    class ActorRolloutRefWorker:
        def __init__(self):
            self.config = OmegaConf.create({"essence": {"ce_weight": 0.25}})

        def init_model(self):
            calls.append(f"verl init (essence read: {essence_plugin.WORKER_SETTINGS.ce_weight})")

        def update_actor(self, data):
            calls.append(f"verl update {data.extra_info}")

    module = SimpleNamespace(ActorRolloutRefWorker=ActorRolloutRefWorker)
    for qualname in ("ActorRolloutRefWorker.init_model", "ActorRolloutRefWorker.update_actor"):
        stacked = verl_patches.patches_of("verl.workers.engine_workers", qualname)
        assert [p.owner for p in stacked] == ["opsdc", "essence"]
    for patch in stacked:  # the table's order (each installer wraps both methods)
        _installer(patch)(module)
    worker = ActorRolloutRefWorker()
    worker.init_model()
    worker.update_actor(SimpleNamespace(extra_info={}))
    flags = {"distillation_only": True, "distillation_use_topk": True}
    assert calls == ["verl init (essence read: 0.25)", "opsdc init", f"verl update {flags}", "opsdc after update"]


@pytest.mark.parametrize("owner", sorted({p.owner for p in PATCHES}))
def test_every_owner_follows_the_version_policy(owner):
    """Each owner's install path asks verl_patches.verl_supported (the one policy), or, for the validation hook,
    refuses with the same supported version."""
    import inspect

    modules = {p.installed_by.split(":")[0] for p in PATCHES if p.owner == owner}
    source = "".join(inspect.getsource(importlib.import_module(m)) for m in modules)
    policy = "if version != SUPPORTED_VERL_VERSION" if owner == "validation" else f'verl_supported("{owner}")'
    assert policy in source
    assert f'"{SUPPORTED_VERL_VERSION}"' not in source  # no second copy of the supported version


def test_frontier_check_prints_the_table(cli):
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert f"verl wraps (checked against verl {SUPPORTED_VERL_VERSION}" in result.output
    assert all(p.target in result.output for p in PATCHES)
    report = json.loads(cli("check", "--json").output)
    assert [row["target"] for row in report["verl_patches"]] == [p.target for p in PATCHES]
