"""Method state saved with verl checkpoints (verl_frontier.method_state), without verl runs: the registries, the
files, the trainer / worker wraps on stand-in classes, OPSDC's state and the CPU rollout's resumable seeds."""

from __future__ import annotations

import logging
import types

import pytest
import torch
from omegaconf import OmegaConf

from verl_frontier import method_state
from verl_frontier.opsdc import state as opsdc_state


class Counter:
    def __init__(self, value=0):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


@pytest.fixture
def registries(monkeypatch):
    monkeypatch.setattr(method_state, "_driver", {})
    monkeypatch.setattr(method_state, "_worker", {})
    return method_state


def test_driver_state_round_trip(registries, tmp_path):
    a, b = Counter(3), Counter(7)
    registries.register_driver_state("a", a)
    registries.register_driver_state("b", b)
    path = registries.save_driver_state(str(tmp_path / "global_step_2"))
    assert path.endswith("global_step_2/frontier_state.pt")
    a.value, b.value = 100, 200
    assert sorted(registries.load_driver_state(str(tmp_path / "global_step_2"))) == ["a", "b"]
    assert (a.value, b.value) == (3, 7)


def test_missing_file_and_unknown_names_leave_state_alone(registries, tmp_path, caplog):
    a = Counter(5)
    registries.register_driver_state("a", a)
    with caplog.at_level(logging.WARNING, logger="verl_frontier"):
        assert registries.load_driver_state(str(tmp_path)) == []
    assert a.value == 5 and "start fresh" in caplog.text
    registries.register_driver_state("gone", Counter(1))
    registries.save_driver_state(str(tmp_path))
    registries._driver.pop("gone")
    a.value = 9
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="verl_frontier"):
        assert registries.load_driver_state(str(tmp_path)) == ["a"]
    assert a.value == 5 and "'gone'" in caplog.text


def test_worker_state_per_rank_and_only_when_active(registries, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    registries.register_worker_state("m", lambda worker: getattr(worker, "_m", None))
    idle = types.SimpleNamespace()
    assert registries.save_worker_state(idle, str(tmp_path)) is None
    worker = types.SimpleNamespace(_m=Counter(4))
    path = registries.save_worker_state(worker, str(tmp_path))
    assert path.endswith("frontier_state_rank1.pt")
    fresh = types.SimpleNamespace(_m=Counter(0))
    assert registries.load_worker_state(fresh, str(tmp_path)) == ["m"]
    assert fresh._m.value == 4
    monkeypatch.setenv("RANK", "0")  # another rank has its own file
    assert registries.load_worker_state(fresh, str(tmp_path)) == []


def _trainer_config(tmp_path, **trainer):
    return OmegaConf.create(
        {"trainer": {"default_local_dir": str(tmp_path / "ckpt"), "resume_mode": "auto", **trainer}}
    )


def test_resumed_folder_follows_verl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = types.SimpleNamespace(config=_trainer_config(tmp_path), global_steps=0)
    assert method_state.resumed_folder(trainer) is None  # fresh start
    trainer.global_steps = 6
    assert method_state.resumed_folder(trainer) == str(tmp_path / "ckpt" / "global_step_6")
    trainer.config = _trainer_config(tmp_path, resume_mode="resume_path", resume_from_path="other/global_step_6")
    assert method_state.resumed_folder(trainer) == str(tmp_path / "other" / "global_step_6")
    trainer.config = _trainer_config(tmp_path, resume_mode="disable")
    assert method_state.resumed_folder(trainer) is None


def test_trainer_wraps_save_before_verl_and_restore_after(registries, tmp_path):
    counter = registries.register_driver_state("c", Counter(0))
    seen = []

    class Trainer:
        def __init__(self):
            self.config = _trainer_config(tmp_path)
            self.global_steps = 0

        def _save_checkpoint(self):
            folder = tmp_path / "ckpt" / f"global_step_{self.global_steps}"
            seen.append((folder / method_state.DRIVER_FILE).exists())  # written before verl's tracker file

        def _load_checkpoint(self):
            self.global_steps = 2  # what verl does when it finds global_step_2

    method_state._wrap_trainer(Trainer)
    method_state._wrap_trainer(Trainer)  # idempotent
    trainer = Trainer()
    trainer.global_steps, counter.value = 2, 42
    trainer._save_checkpoint()
    assert seen == [True]
    counter.value = 0
    Trainer()._load_checkpoint()
    assert counter.value == 42


def test_worker_wraps_load_before_verl_deletes_the_folder(registries, tmp_path):
    import shutil

    registries.register_worker_state("m", lambda worker: worker.m)

    class Worker:
        def __init__(self, value):
            self.m = Counter(value)

        def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
            (tmp_path / "verl_saved").write_text(local_path)

        def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
            if del_local_after_load:
                shutil.rmtree(local_path)

    method_state._hook_workers(types.SimpleNamespace(ActorRolloutRefWorker=Worker))
    folder = str(tmp_path / "global_step_2" / "actor")
    Worker(8).save_checkpoint(folder, None, 2)
    assert (tmp_path / "verl_saved").read_text() == folder
    resumed = Worker(0)
    resumed.load_checkpoint(folder, del_local_after_load=True)
    assert resumed.m.value == 8


# ---------------------------------------------------------------------------------------------------------
# OPSDC
# ---------------------------------------------------------------------------------------------------------


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def test_opsdc_teacher_saved_once_refreshed():
    teacher = _model(0)
    assert opsdc_state.worker_state_dict(1, 2, teacher) == {"step": 1, "teacher": None}  # still the initial model
    assert opsdc_state.worker_state_dict(5, 0, teacher)["teacher"] is None  # M = 0: frozen initial teacher
    saved = opsdc_state.worker_state_dict(2, 2, teacher)
    rebuilt = _model(1)
    assert opsdc_state.load_worker_state(saved, rebuilt) == 2
    for a, b in zip(teacher.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(a, b)
    saved["teacher"]["0.weight"].add_(1.0)  # the saved copy is detached from the live teacher
    assert not torch.equal(teacher[0].weight, saved["teacher"]["0.weight"])


def test_opsdc_teacher_shape_mismatch_raises():
    saved = opsdc_state.worker_state_dict(2, 1, _model(0))
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    with pytest.raises(RuntimeError, match="shape"):
        opsdc_state.load_worker_state(saved, other)


def test_opsdc_driver_state_is_the_live_mapping():
    values = {"baseline_length": 12.5}
    provider = opsdc_state.DriverState(values)
    saved = provider.state_dict()
    values.clear()
    provider.load_state_dict(saved)
    assert values == {"baseline_length": 12.5}


def test_opsdc_registers_both_states():
    from verl_frontier.opsdc import verl_plugin

    assert "opsdc" in method_state._driver and "opsdc" in method_state._worker
    assert method_state._worker["opsdc"](types.SimpleNamespace()) is None  # OPSDC off in this worker
    assert method_state._driver["opsdc"].values is verl_plugin._DRIVER_STATE


# ---------------------------------------------------------------------------------------------------------
# CPU rollout: request seeds reproducible across a resume
# ---------------------------------------------------------------------------------------------------------


def _engine(seed=0):
    from verl_cpu.hf_engine import HFGenerationEngine

    engine = object.__new__(HFGenerationEngine)  # the seed logic only; no model
    engine.seed, engine._prompt_counts, engine._sampling_epoch = seed, {}, None
    return engine


def test_rollout_seeds_restart_with_each_weight_version():
    straight, resumed = _engine(), _engine()
    straight.set_sampling_epoch(1)
    straight._derived_seed([5, 6])  # step 2 saw this prompt already
    straight.set_sampling_epoch(2)
    resumed.set_sampling_epoch(2)  # a fresh server after a resume from step 2
    assert [straight._derived_seed([5, 6]) for _ in range(2)] == [resumed._derived_seed([5, 6]) for _ in range(2)]
    assert straight._derived_seed([5, 6]) != straight._derived_seed([5, 6])  # repeats still differ


def test_rollout_seeds_without_epoch_unchanged():
    import hashlib

    engine = _engine(3)
    key = hashlib.blake2b(repr((3, (1, 2))).encode(), digest_size=8).digest()
    expected = int.from_bytes(hashlib.blake2b(key + (0).to_bytes(8, "little"), digest_size=8).digest(), "little") >> 2
    assert engine._derived_seed([1, 2]) == expected
