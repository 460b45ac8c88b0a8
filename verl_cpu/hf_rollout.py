"""verl rollout backend ``hf``: a Ray actor serving HF ``generate`` (rollout and distillation teacher).

Three pieces, mirroring verl's vLLM backend (``verl/workers/rollout/vllm_rollout``):

- ``HFRolloutServer``: the Ray actor verl's agent loops call (``generate`` with token ids in and out,
  per-token log-probs, vLLM-layout ``prompt_logprobs`` for teacher requests), plus the control methods verl's
  ``RolloutReplica`` / checkpoint manager call. The model math lives in ``hf_engine.HFGenerationEngine``.
- ``HFReplica`` (``RolloutReplicaRegistry``): launches one server per replica next to its workers.
- ``HFServerAdapter`` (``_ROLLOUT_REGISTRY[("hf", "async")]``): lives in the actor worker; receives the
  trainer's full weights each step and loads them into the server (exact copy, no IPC needed on CPU).
"""

import asyncio
import logging
import os
import socket
from collections.abc import Generator
from typing import Any

import ray
import torch
from omegaconf import DictConfig, OmegaConf
from verl.workers.config import RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from verl_cpu import ROLLOUT_NAME

logger = logging.getLogger(__name__)


def _model_path(model_config) -> str:
    """Local path of the served model from an ``HFModelConfig`` or the teacher pool's raw ``DictConfig``."""
    for key in ("local_path", "path", "model_path"):
        value = (
            model_config.get(key) if isinstance(model_config, (dict, DictConfig)) else getattr(model_config, key, None)
        )
        if value:
            return str(value)
    raise ValueError(f"hf rollout: cannot find a model path in model config {model_config!r}")


def _config_value(config, key, default=None):
    if isinstance(config, (dict, DictConfig)):
        return config.get(key, default)
    return getattr(config, key, default)


class HFRolloutServer:
    """Ray actor: token-in/token-out generation with HF transformers on CPU."""

    def __init__(
        self,
        config: RolloutConfig,
        model_config,
        rollout_mode=None,
        workers=None,
        replica_rank: int = 0,
        node_rank: int = 0,
        gpus_per_node: int = 1,
        nnodes: int = 1,
        cuda_visible_devices: str | None = None,
    ):
        from verl_cpu.hf_engine import HFGenerationEngine

        self.config = config  # a RolloutConfig from the replica; plain mappings work too (tests)
        self.replica_rank = replica_rank
        self.node_rank = node_rank
        self.global_steps: int | None = None
        self.model_path = _model_path(model_config)
        self.prompt_length = int(_config_value(config, "prompt_length", 512))
        self.response_length = int(_config_value(config, "response_length", 512))
        torch.set_num_threads(max(1, int(os.environ.get("VERL_CPU_ROLLOUT_THREADS", torch.get_num_threads()))))
        self.engine = HFGenerationEngine(
            self.model_path,
            dtype=_config_value(config, "dtype", "float32") or "float32",
            max_batch_size=max(1, int(_config_value(config, "max_num_seqs", 64) or 64)),
            seed=int(_config_value(config, "seed", 0) or 0) + replica_rank,
            max_model_len=int(
                _config_value(config, "max_model_len", None) or (self.prompt_length + self.response_length)
            ),
        )
        self._reject_requests = False
        # verl's router keys replicas by address: hold a distinct port for this server's lifetime
        self._address_socket = socket.socket()
        self._address_socket.bind(("", 0))

    # ---- generation -------------------------------------------------------------------------------
    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str | None = None,
        image_data=None,
        video_data=None,
        audio_data=None,
        mm_processor_kwargs=None,
        priority: int = 0,
        **kwargs,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("hf rollout serves text-only models (got image/video/audio data)")
        if self._reject_requests:
            return TokenOutput(
                token_ids=[], log_probs=None, stop_reason="aborted", extra_fields={"global_steps": self.global_steps}
            )
        prompt_ids = [int(t) for t in (prompt_ids.tolist() if hasattr(prompt_ids, "tolist") else prompt_ids)]
        params = dict(sampling_params)
        if "max_tokens" not in params and "max_new_tokens" not in params:
            # like vLLM's server: the configured response length, within the prompt+response budget
            budget = self.prompt_length + self.response_length - len(prompt_ids)
            params["max_tokens"] = max(1, min(self.response_length, budget))
        want_logprobs = bool(params.pop("logprobs", False))
        params.setdefault("repetition_penalty", _config_value(self.config, "repetition_penalty", 1.0) or 1.0)
        params.setdefault("ignore_eos", bool(_config_value(self.config, "ignore_eos", False)))

        result = await self.engine.generate(prompt_ids, params)  # caps max_tokens at the context headroom
        # read after generation: a request parked across a weight sync reports the step it was generated at
        extra_fields: dict[str, Any] = {"global_steps": self.global_steps}
        if result.prompt_logprobs is not None:
            ids, logprobs = result.prompt_logprobs
            extra_fields["prompt_ids"] = ids
            extra_fields["prompt_logprobs"] = logprobs
        # vLLM's server maps finish reasons "stop"/"length" to "completed"; verl expects that vocabulary.
        stop_reason = "aborted" if result.stop_reason == "aborted" else "completed"
        return TokenOutput(
            token_ids=list(result.token_ids),
            log_probs=list(result.log_probs) if want_logprobs else None,
            stop_reason=stop_reason,
            extra_fields=extra_fields,
        )

    # ---- weights --------------------------------------------------------------------------------------
    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], global_steps: int | None = None):
        report = self.engine.load_weights(named_tensors)
        if global_steps is not None:
            self.global_steps = global_steps
            self.engine.set_sampling_epoch(int(global_steps))
        return report

    def get_weights(self) -> dict[str, torch.Tensor]:
        """Current served weights (tests compare them with the actor's)."""
        return {k: v.detach().clone() for k, v in self.engine.model.state_dict().items()}

    # ---- control surface verl calls on every rollout server -------------------------------------------
    def get_server_address(self):
        return ray.util.get_node_ip_address(), self._address_socket.getsockname()[1]

    async def wake_up(self, tags: list[str] | None = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False):
        self._reject_requests = reject_request
        return await self.engine.abort_all(reject_new=reject_request)

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True):
        return {"aborted": 0}

    async def resume_generation(self):
        self._reject_requests = False
        self.engine.resume()

    async def resume_engine_generation(self):
        self.engine.resume()

    async def open_submission_gate(self):
        self._reject_requests = False

    async def wait_for_requests_to_drain(self):
        await self.engine.wait_for_drain()

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFReplica(RolloutReplica):
    """One HF server per replica (tensor/pipeline parallel 1), placed on its workers' node."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(HFRolloutServer)

    def _server_name(self) -> str:
        prefix = f"{ROLLOUT_NAME}_"
        if self.is_reward_model:
            return f"{prefix}server_reward_{self.replica_rank}_0{self.name_suffix}"
        if self.is_teacher_model:
            return f"{prefix}server_teacher_{self.replica_rank}_0{self.name_suffix}"
        return f"{prefix}server_{self.replica_rank}_0{self.name_suffix}"

    async def launch_servers(self):
        assert len(self.workers) == self.world_size, (
            f"worker number {len(self.workers)} not equal to world size {self.world_size}"
        )
        node_id = await self.workers[0].__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
        model_config = self.model_config
        if isinstance(model_config, DictConfig):
            model_config = OmegaConf.to_container(model_config, resolve=True)
        server = self.server_class.options(
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            ),
            name=self._server_name(),
            max_concurrency=self.max_concurrency,
            num_cpus=0,
        ).remote(
            config=self.config,
            model_config=model_config,
            rollout_mode=self.rollout_mode,
            replica_rank=self.replica_rank,
            node_rank=0,
            gpus_per_node=self.gpus_per_replica_node,
            nnodes=self.nnodes,
        )
        address, port = await server.get_server_address.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{address}:{port}"


class HFServerAdapter(BaseRollout):
    """Actor-side adapter: pushes the trainer's weights into this replica's ``HFRolloutServer``."""

    def __init__(self, config, model_config, device_mesh=None, replica_rank: int = -1, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % rollout_world_size
        self.is_leader_rank = self.rollout_rank == 0
        self.server_handle = None

    def _server(self):
        if not self.is_leader_rank:
            return None
        if self.server_handle is None:
            self.server_handle = ray.get_actor(f"{ROLLOUT_NAME}_server_{self.replica_rank}_0")
        return self.server_handle

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        global_steps: int | None = None,
        wire_format: str = "named_tensors",
        **kwargs,
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout supports wire_format='named_tensors' only, got {wire_format!r}")
        named = []
        # Every rank must consume the generator: producing full tensors may involve collectives.
        async for name, tensor in _aiter(weights):
            if self.is_leader_rank:
                named.append((name, tensor.detach().to("cpu").clone()))
        server = self._server()
        if server is not None:
            report = await server.update_weights.remote(named, global_steps)
            if report.get("missing"):
                raise RuntimeError(
                    f"hf rollout weight update missed parameters {report.get('missing_names')}; "
                    f"names the server does not know: {report.get('unexpected_names')}"
                )


async def _aiter(weights):
    if hasattr(weights, "__aiter__"):
        async for item in weights:
            yield item
    else:
        for item in weights:
            yield item
            await asyncio.sleep(0)
