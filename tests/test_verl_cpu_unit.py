"""Unit tests of verl_cpu's pieces, called the way verl calls them (no Ray)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
import verl  # noqa: F401  (loads the verl.plugins entry points)
from omegaconf import OmegaConf

from verl_cpu import device as cpu_device
from verl_cpu.platform import PlatformCPU
from verl_frontier_hooks import when_imported


def test_cpu_platform_is_registered_and_speaks_gloo():
    from verl.plugin.platform.platform_manager import PlatformRegistry

    assert PlatformRegistry.get("cpu") is PlatformCPU
    platform = PlatformCPU()
    assert platform.device_name == "cpu" and platform.current_device() == "cpu"
    assert platform.communication_backend_name() == "gloo"
    assert platform.ray_resource_name() == "GPU" and not platform.is_ipc_supported()
    assert not platform.is_platform_available(use_smi_check=True)  # never auto-selected
    assert torch.zeros(1).to(platform.current_device()).device.type == "cpu"


# Every attribute verl 0.9.1 calls on get_torch_device() (grep of verl/ for `get_torch_device().<name>`).
VERL_DEVICE_CALLS = [
    "empty_cache", "synchronize", "is_available", "current_stream", "set_device", "mem_get_info", "stream",
    "Stream", "set_rng_state", "get_rng_state", "set_per_process_memory_fraction", "ipc_collect", "device_count",
    "memory_reserved", "memory_allocated", "max_memory_reserved", "max_memory_allocated", "get_device_name",
    "Event", "manual_seed", "manual_seed_all", "reset_peak_memory_stats", "current_device",
]  # fmt: skip


@pytest.mark.parametrize("name", VERL_DEVICE_CALLS)
def test_device_module_has_what_verl_calls(name):
    assert callable(getattr(cpu_device, name))


def test_device_module_rng_round_trip_and_memory():
    state = cpu_device.get_rng_state()
    first = torch.rand(3)
    cpu_device.set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
    free, total = cpu_device.mem_get_info()
    assert 0 < free <= total
    with cpu_device.stream(cpu_device.Stream()):
        cpu_device.current_stream().synchronize()


def test_when_imported_runs_after_the_module_executes(tmp_path, monkeypatch):
    (tmp_path / "verl_cpu_probe_mod.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    when_imported("verl_cpu_probe_mod", lambda module: seen.append(module.VALUE + 1))
    assert seen == []
    import verl_cpu_probe_mod  # noqa: F401

    assert seen == [42]
    when_imported("verl_cpu_probe_mod", lambda module: seen.append("again"))  # already imported: runs now
    assert seen == [42, "again"]
    sys.modules.pop("verl_cpu_probe_mod")


def test_patches_refuse_an_untested_verl_version(monkeypatch):
    from verl_cpu.patches import UnsupportedVerlVersion, apply_cpu_patches

    monkeypatch.setattr(verl, "__version__", "0.9.2")
    with pytest.raises(UnsupportedVerlVersion, match=r"verl 0\.9\.2 is installed"):
        apply_cpu_patches()


def test_process_group_patch_uses_plain_gloo():
    from verl_cpu.patches import _patch_process_group

    calls = []
    module = types.SimpleNamespace(initialize_global_process_group_ray=lambda **kw: calls.append(kw))
    _patch_process_group(module)
    module.initialize_global_process_group_ray(timeout_second=5)
    module.initialize_global_process_group_ray(backend="custom")
    assert calls == [{"timeout_second": 5, "backend": "cpu:gloo"}, {"timeout_second": None, "backend": "custom"}]


def test_offload_policy_patch_never_pins_memory():
    from torch.distributed.fsdp import CPUOffloadPolicy

    from verl_cpu.patches import _patch_offload_policy

    module = types.SimpleNamespace(CPUOffloadPolicy=CPUOffloadPolicy)
    _patch_offload_policy(module)
    policy = module.CPUOffloadPolicy(pin_memory=True)
    assert isinstance(policy, CPUOffloadPolicy) and policy.pin_memory is False


def test_fsdp_engines_registered_for_cpu():
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl

    from verl_cpu.patches import _register_fsdp_engines

    _register_fsdp_engines(transformer_impl)
    _register_fsdp_engines(transformer_impl)  # idempotent
    registry = EngineRegistry._engines["language_model"]
    assert registry["fsdp2"]["cpu"] is transformer_impl.FSDPEngineWithLMHead
    assert EngineRegistry._engines["value_model"]["fsdp2"]["cpu"] is transformer_impl.FSDPEngineWithValueHead


def test_fake_gpu_slots_count_training_ranks_and_teacher_pool():
    cfg = OmegaConf.create(
        {
            "t": {"n": 2, "nodes": 2},
            "d": {"enabled": True, "n": 1, "nodes": 1},
            "slots": "${verl_cpu_fake_gpus:${t.n},${t.nodes},${d.enabled},${d.n},${d.nodes}}",
        }
    )
    assert cfg.slots == 5
    cfg.d.enabled = False
    assert cfg.slots == 4


def _cpu_config(**rollout):
    return OmegaConf.create(
        {
            "trainer": {"device": "cpu"},
            "actor_rollout_ref": {
                "actor": {"strategy": "fsdp2"},
                "ref": {"strategy": "fsdp2"},
                "rollout": {"name": "hf", "tensor_model_parallel_size": 1, **rollout},
            },
            "critic": {"strategy": "fsdp2"},
            "distillation": {"enabled": False},
        }
    )


def test_cpu_config_errors_name_the_key(monkeypatch):
    from verl_cpu.validation import CPUConfigError, check_cpu_config

    check_cpu_config(_cpu_config())
    with pytest.raises(CPUConfigError, match=r"actor_rollout_ref\.rollout\.tensor_model_parallel_size=2"):
        check_cpu_config(_cpu_config(tensor_model_parallel_size=2))
    bad = _cpu_config()
    bad.actor_rollout_ref.actor.strategy = "fsdp"
    with pytest.raises(CPUConfigError, match=r"actor_rollout_ref\.actor\.strategy=fsdp"):
        check_cpu_config(bad)
    teacher = _cpu_config()
    teacher.distillation = {
        "enabled": True,
        "teacher_models": {"t": {"inference": {"name": "hf", "tensor_model_parallel_size": 2}}},
    }
    with pytest.raises(
        CPUConfigError, match=r"distillation\.teacher_models\.t\.inference\.tensor_model_parallel_size=2"
    ):
        check_cpu_config(teacher)
    lora = _cpu_config()
    lora.actor_rollout_ref.model = {"lora_rank": 8}
    with pytest.raises(CPUConfigError, match=r"actor_rollout_ref\.model\.lora_rank=8"):
        check_cpu_config(lora)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    with pytest.raises(CPUConfigError, match=r"\+platform=cpu.*8 CUDA GPU"):
        check_cpu_config(_cpu_config())


def test_main_ppo_rejects_bad_cpu_setting_before_ray(small_world_dir, repo_root):
    """`python -m verl.trainer.main_ppo` with hf rollout and TP=2 fails in the driver, naming the key."""
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(repo_root / "recipes" / "grpo_baseline"), "--config-name", "grpo_baseline_tiny",
        "+platform=cpu", "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**_env(), "FRONTIER_WORLD_DIR": str(small_world_dir)}
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "actor_rollout_ref.rollout.tensor_model_parallel_size=2" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout  # one line per problem, not Hydra's traceback
    assert "ray init kwargs" not in proc.stdout  # verl prints this right before ray.init


@pytest.mark.parametrize(
    "override, env, needle",
    [
        ("algorithm.adv_estimator=grop", {}, "algorithm.adv_estimator: 'grop' is not a registered"),
        ("trainer.total_training_steps=2", {"FRONTIER_WORLD_DIR": "/nonexistent/world"}, "tiny world not found"),
    ],
)
def test_main_ppo_exits_2_with_one_line_per_problem(small_world_dir, repo_root, override, env, needle):
    """A frontier config error or a missing tiny world: one line naming the key on stderr, exit 2, no traceback."""
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(repo_root / "recipes" / "grpo_baseline"), "--config-name", "grpo_baseline_tiny",
        "+platform=cpu", override,
    ]  # fmt: skip
    environment = {**_env(), "FRONTIER_WORLD_DIR": str(small_world_dir), **env}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=environment)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "config error: " in line]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "ray init kwargs" not in proc.stdout


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


# ---- the hf rollout server, called as verl's agent loop and teacher manager call it ----------------------


def _server(world):
    from verl_cpu.hf_rollout import HFRolloutServer

    config = {"prompt_length": 64, "response_length": 16, "seed": 3, "dtype": "float32", "max_num_seqs": 8}
    return HFRolloutServer(config=config, model_config={"local_path": str(world / "student")})


def _forward_logprobs(model, ids):
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


async def test_server_generate_returns_exact_logprobs_and_teacher_topk(small_world_dir):
    server = _server(small_world_dir)
    prompt = server.engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Compute 1+2. Be concise."}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = server.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = await server.generate(prompt_ids, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}, "r1")
    assert out.stop_reason == "completed" and 1 <= len(out.token_ids) <= 16
    full = _forward_logprobs(server.engine.model, prompt_ids + out.token_ids)
    expected = [full[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(out.token_ids)]
    assert out.log_probs == pytest.approx(expected, abs=1e-5)

    sequence = prompt_ids + out.token_ids
    teacher = await server.generate(sequence, {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": 4}, "t1")
    ids, logprobs = teacher.extra_fields["prompt_ids"], teacher.extra_fields["prompt_logprobs"]
    assert len(ids) == len(sequence)  # verl asserts this shape (teacher_manager)
    top = torch.topk(_forward_logprobs(server.engine.model, sequence), 4, dim=-1)
    assert torch.equal(torch.tensor(ids[:-1]), top.indices[:-1])
    assert torch.allclose(torch.tensor(logprobs[:-1]), top.values[:-1], atol=1e-5)


class _RemoteShim:
    """Stands in for a Ray actor handle: `handle.method.remote(...)` awaits the real method."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        method = getattr(self._target, name)

        async def remote(*args, **kwargs):
            result = method(*args, **kwargs)
            return await result if hasattr(result, "__await__") else result

        return types.SimpleNamespace(remote=remote)


async def test_adapter_weight_update_then_generation_uses_new_weights(small_world_dir, monkeypatch):
    from verl_cpu.hf_rollout import HFServerAdapter

    monkeypatch.setenv("RANK", "0")
    server = _server(small_world_dir)
    rollout_config = OmegaConf.create(
        {"tensor_model_parallel_size": 1, "data_parallel_size": 1, "pipeline_model_parallel_size": 1}
    )
    adapter = HFServerAdapter.__new__(HFServerAdapter)  # BaseRollout.__init__ wants full verl configs
    adapter.config = rollout_config
    adapter.replica_rank, adapter.rollout_rank, adapter.is_leader_rank = 0, 0, True
    adapter.server_handle = _RemoteShim(server)

    new_model = type(server.engine.model).from_pretrained(small_world_dir / "student")
    torch.manual_seed(0)
    with torch.no_grad():
        for param in new_model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    await adapter.update_weights(iter(new_model.state_dict().items()), global_steps=7)
    assert server.global_steps == 7

    prompt_ids = server.engine.tokenizer("Compute 2+2.", add_special_tokens=False)["input_ids"]
    out = await server.generate(prompt_ids, {"temperature": 1.0, "logprobs": True, "max_tokens": 8}, "r2")
    full_new = _forward_logprobs(new_model, prompt_ids + out.token_ids)
    expected = [full_new[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(out.token_ids)]
    assert out.log_probs == pytest.approx(expected, abs=1e-5)
