"""verl 0.9.1 glue for OPSDC (on-policy self-distillation for reasoning compression). The math is in
teacher_inputs.py, losses.py, sync.py and verl_frontier.kd; this module only moves tensors.

Design: the teacher is verl's reference model, colocated in the actor worker
----------------------------------------------------------------------------------------------------
OPSDC's loss is a full-vocabulary reverse KL, so the teacher's logits over the whole vocabulary must be in the
same process as the student's logits. verl's teacher servers (``distillation.teacher_models``) return top-k
prompt log-probs only (full-vocabulary transfer would be N x V floats per sequence), so they cannot serve the
paper's loss. The reference model of ``ActorRolloutRefWorker`` (role ``actor_rollout_ref``: the ref engine lives
in the same process as the actor engine, sharded the same way) is exactly the paper code's teacher (its
``OPSDWorker`` uses the ref module as teacher and hard-copies actor shards into it):

* ``actor_rollout_ref.actor.use_kl_loss=true`` makes verl build the colocated ref (initial weights = step-0
  student). ``kl_loss_coef`` is irrelevant: the OPSDC loss replaces verl's PPO loss on the actor.
* ``ActorRolloutRefWorker.init_model`` is wrapped (in every process, via the ``verl.plugins`` entry point) to
  install :func:`opsdc_loss` as the actor's loss function (``TrainingWorker.set_loss_fn``) when
  ``actor_rollout_ref.opsdc`` is present.
* ``ActorRolloutRefWorker.update_actor`` is wrapped to mark the micro-batches ``distillation_use_topk`` /
  ``distillation_only`` (verl's own flags that make the FSDP engine hand the student logits
  [1, total_tokens, V] to the loss function as a logits processor), and, after the update, to copy the actor's
  parameters into the ref (teacher) every M steps (``teacher_update_freq``; 0 = never) and log weight
  fingerprints.
* Inside the logits processor the teacher inputs are built from the micro-batch's own ``prompts`` /
  ``responses`` ids: each prompt is re-prompted with the conciseness instruction (:mod:`.teacher_inputs`), the
  teacher model runs one no-grad forward on [teacher prompt + the same response ids] per micro-batch, and the
  realignment maps response token t to student position P-1+t and teacher position P'-1+t.
* A driver-side advantage estimator ``algorithm.adv_estimator=opsdc`` (advantages unused: zeros) logs
  mean response length, compression ratio against the first step's rollouts (sampled from the step-0 model),
  and accuracy (the reward is computed for logging only; it never enters the loss).

Memory cost: one extra parameter copy per actor rank (sharded like the actor, no gradients, no optimizer
state), the teacher's forward activations (no grad) and its logits at the response positions of one
micro-batch, plus verl's per-step ``compute_ref_log_prob`` pass (unused by OPSDC, a wasted forward).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from verl_frontier import driver_hooks, method_state
from verl_frontier.batch_flags import assign_batch_flags
from verl_frontier.opsdc import losses as opsdc_losses
from verl_frontier.opsdc import state as opsdc_state
from verl_frontier.opsdc.config import SECTION as CONFIG_SECTION
from verl_frontier.opsdc.config import OpsdcConfig
from verl_frontier.opsdc.sync import copy_weights_, max_abs_diff, should_sync, weight_checksum
from verl_frontier.opsdc.teacher_inputs import Reprompter, build_teacher_batch, student_packed_index
from verl_frontier.response_tensors import response_padded
from verl_frontier.validation import config_error, register_check, register_schema, select

logger = logging.getLogger("verl_frontier")

ESTIMATOR_NAME = "opsdc"
EXPECTED_REGISTRATIONS = [("adv_est", ESTIMATOR_NAME)]


register_schema(CONFIG_SECTION, OpsdcConfig)


def opsdc_settings(section) -> OpsdcConfig | None:
    """The OPSDC settings of ``actor_rollout_ref.opsdc`` (None when absent or disabled)."""
    if section is None:
        return None
    settings = OpsdcConfig.from_mapping(section)
    return settings if settings.enable else None


@register_check(name="opsdc")
def check_opsdc(config) -> None:
    """OPSDC's teacher is the colocated ref model: verl must build it, in the actor's process, unsharded by SP."""
    section = select(config, CONFIG_SECTION)
    if section is None or not select(config, f"{CONFIG_SECTION}.enable", True):
        return
    if not select(config, "actor_rollout_ref.actor.use_kl_loss", False):
        raise config_error(
            "actor_rollout_ref.actor.use_kl_loss",
            "OPSDC needs verl's colocated ref model as its teacher: set it to true (kl_loss_coef is unused)",
            select(config, "actor_rollout_ref.actor.use_kl_loss"),
        )
    if (select(config, "actor_rollout_ref.model.lora_rank", 0) or 0) > 0:
        raise config_error("actor_rollout_ref.model.lora_rank", "OPSDC does not support LoRA (no colocated ref)")
    if select(config, "distillation.enabled", False):
        raise config_error("distillation.enabled", "OPSDC uses its own teacher (the ref model); set it to false")
    sp = select(config, "actor_rollout_ref.actor.ulysses_sequence_parallel_size", 1) or 1
    if sp != 1:
        raise config_error("actor_rollout_ref.actor.ulysses_sequence_parallel_size", "OPSDC supports 1 only", sp)
    strategy = select(config, "actor_rollout_ref.actor.strategy", "fsdp")
    if strategy not in ("fsdp", "fsdp2"):
        raise config_error("actor_rollout_ref.actor.strategy", "OPSDC supports the FSDP engines only", strategy)
    if select(config, "actor_rollout_ref.actor.use_fused_kernels", False) or select(
        config, "actor_rollout_ref.model.use_fused_kernels", False
    ):
        raise config_error("actor_rollout_ref.model.use_fused_kernels", "OPSDC needs the student logits", True)
    temperature = select(config, "actor_rollout_ref.rollout.temperature", 1.0)
    if temperature is not None and float(temperature) != 1.0:
        # verl divides the student's logits by the rollout temperature before the loss sees them; the teacher's
        # are not divided, so the KL would compare distributions at two temperatures
        raise config_error(
            "actor_rollout_ref.rollout.temperature",
            "OPSDC's KL is defined at temperature 1 (the paper's setting)",
            temperature,
        )


# ---------------------------------------------------------------------------------------------------------
# driver: metrics in the advantage-estimator slot
# ---------------------------------------------------------------------------------------------------------

_DRIVER_STATE: dict[str, float] = {}
method_state.register_driver_state("opsdc", opsdc_state.DriverState(_DRIVER_STATE))


def compute_opsdc_advantage(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """Zero advantages/returns (OPSDC uses neither) plus logging: ``opsdc/response_length_mean``,
    ``opsdc/compression_ratio`` (mean length / mean length of the first step's rollouts, which come from the
    step-0 model; override the reference with ``algorithm.opsdc_baseline_length``), ``opsdc/accuracy``
    (fraction of responses with reward > 0; the reward is logged, never trained on)."""
    mask = response_mask.float()
    lengths = mask.sum(-1)
    mean_len = float(lengths.mean()) if lengths.numel() else 0.0
    baseline = None
    if config is not None:
        baseline = config.get("opsdc_baseline_length", None)
    if baseline is None:
        baseline = _DRIVER_STATE.setdefault("baseline_length", mean_len)
    scores = token_level_rewards.sum(-1)
    driver_hooks.log_step_metrics(
        {
            "opsdc/response_length_mean": mean_len,
            "opsdc/baseline_response_length": float(baseline),
            "opsdc/compression_ratio": mean_len / float(baseline) if baseline else float("nan"),
            "opsdc/accuracy": float((scores > 0).float().mean()) if scores.numel() else 0.0,
            "opsdc/score_mean": float(scores.mean()) if scores.numel() else 0.0,
        }
    )
    zeros = torch.zeros_like(token_level_rewards)
    return zeros, zeros


# ---------------------------------------------------------------------------------------------------------
# actor worker: teacher state, loss, sync
# ---------------------------------------------------------------------------------------------------------


def split_prompts_responses(data) -> tuple[list[list[int]], list[list[int]]]:
    """Per-sample unpadded prompt and response ids of an actor micro-batch (v1: nested tensors; legacy:
    left-padded prompts / right-padded responses with ``attention_mask``)."""
    prompts, responses = data["prompts"], data["responses"]
    if prompts.is_nested:
        return [p.tolist() for p in prompts.unbind()], [r.tolist() for r in responses.unbind()]
    mask = response_padded(data["attention_mask"])
    width = prompts.shape[1]
    out_p, out_r = [], []
    for i in range(prompts.shape[0]):
        out_p.append(prompts[i][mask[i, :width].bool()].tolist())
        out_r.append(responses[i][mask[i, width:].bool()].tolist())
    return out_p, out_r


@dataclass
class OpsdcWorkerState:
    settings: OpsdcConfig
    reprompter: Reprompter
    teacher_engine: Any
    student_engine: Any
    pad_id: int
    packed: bool
    step: int = 0
    initial_checksum: float | None = None
    pending: dict = field(default_factory=dict)

    @property
    def teacher(self) -> torch.nn.Module:
        return self.teacher_engine.module

    @property
    def student(self) -> torch.nn.Module:
        return self.student_engine.module

    @torch.no_grad()
    def teacher_logits(self, teacher_prompts, responses, device) -> torch.Tensor:
        """[N, V] teacher logits predicting every response token (sample-major), one forward per call."""
        return teacher_response_logits(self.teacher, teacher_prompts, responses, device, self.pad_id, self.packed)

    def state_dict(self) -> dict:
        """Checkpointed with verl's actor checkpoint (:mod:`verl_frontier.method_state`)."""
        return opsdc_state.worker_state_dict(self.step, self.settings.teacher_update_freq, self.teacher)

    def load_state_dict(self, state: dict) -> None:
        self.step = opsdc_state.load_worker_state(state, self.teacher)


@torch.no_grad()
def teacher_response_logits(model, teacher_prompts, responses, device, pad_id=0, packed=False) -> torch.Tensor:
    """Teacher logits at the realigned response positions, [N = sum_i R_i, V], sample-major.

    ``packed``: one THD row (sequences concatenated, position ids restarting per sequence, no mask), as verl's
    remove-padding path runs the model; otherwise a left/right-padded batch with an attention mask.
    """
    if packed:
        seqs = [list(p) + list(r) for p, r in zip(teacher_prompts, responses, strict=True)]
        ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long, device=device).unsqueeze(0)
        pos = torch.cat([torch.arange(len(s), dtype=torch.long) for s in seqs]).to(device).unsqueeze(0)
        out = model(input_ids=ids, position_ids=pos, use_cache=False)
        index = student_packed_index([len(p) for p in teacher_prompts], [len(r) for r in responses]).to(device)
        return out.logits[0, index]
    batch = build_teacher_batch(teacher_prompts, responses, pad_id=pad_id)
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
        logits_to_keep=batch.logits_to_keep,
    )
    return out.logits[batch.rows.to(device), batch.cols.to(device)]


def opsdc_logits_processor(state: OpsdcWorkerState, data, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token OPSDC divergence on the packed student sequence: {"opsdc_losses": [1, total_tokens]}, the
    divergence of response token t stored at the position predicting it (verl's log-prob layout)."""
    settings = state.settings
    logits = student_logits.squeeze(0)  # [T, V]
    prompts, responses = split_prompts_responses(data)
    p_lens, r_lens = [len(p) for p in prompts], [len(r) for r in responses]
    if sum(p_lens) + sum(r_lens) != logits.shape[0]:
        raise RuntimeError(
            f"opsdc: micro-batch has {sum(p_lens) + sum(r_lens)} prompt+response tokens but the student logits "
            f"cover {logits.shape[0]} (sequence parallel / padding is not supported)"
        )
    teacher_prompts, hits = [], []
    for p in prompts:
        ids, ok = state.reprompter(p)
        teacher_prompts.append(ids)
        hits.append(ok)
    s_index = student_packed_index(p_lens, r_lens).to(logits.device)
    losses = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    if s_index.numel():
        t_logits = state.teacher_logits(teacher_prompts, responses, logits.device)
        s_logits = logits[s_index]
        if settings.topk > 0:
            out = opsdc_losses.topk_divergence(
                s_logits, t_logits, settings.topk, settings.loss, settings.jsd_beta, settings.chunk_size
            )
            per_token = out["loss"]
            state.pending["opsdc/teacher_topk_mass"] = float(out["teacher_mass"].mean())
            state.pending["opsdc/student_topk_mass"] = float(out["student_mass"].mean())
        else:
            per_token = opsdc_losses.full_vocab_divergence(
                s_logits, t_logits, settings.loss, settings.jsd_beta, settings.chunk_size
            )
        losses = losses.index_add(0, s_index, per_token.float())
    state.pending["opsdc/reprompt_miss_frac"] = 1.0 - sum(hits) / max(len(hits), 1)
    state.pending["opsdc/teacher_prompt_extra_tokens"] = float(
        np.mean([len(t) - len(p) for t, p in zip(teacher_prompts, prompts, strict=True)]) if prompts else 0.0
    )
    return {"opsdc_losses": losses.unsqueeze(0)}


def opsdc_loss(
    config,
    model_output=None,
    data=None,
    dp_group=None,
    student_logits=None,
    data_format: str = "thd",
    *,
    state: OpsdcWorkerState,
):
    """The actor's loss function (verl's ``loss_fn(config, model_output, data, dp_group)`` contract, also called
    as a logits processor with ``student_logits``). Token-mean of the per-token divergence (``loss_agg_mode``)."""
    if student_logits is not None:
        return opsdc_logits_processor(state, data, student_logits)
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    if "opsdc_losses" not in model_output:  # e.g. an infer pass that asks for a loss: nothing to distil
        return torch.zeros((), device=data["response_mask"].device), {}
    per_token = no_padding_2_padding(model_output["opsdc_losses"], data)
    mask = response_padded(data["response_mask"]).bool()
    per_token, mask = per_token[:, : mask.shape[1]], mask[:, : per_token.shape[1]]
    config.global_batch_info["dp_size"] = data["dp_size"]
    config.global_batch_info["batch_num_tokens"] = data["batch_num_tokens"]
    config.global_batch_info["global_batch_size"] = data["global_batch_size"]
    config.global_batch_info["loss_scale_factor"] = config.loss_scale_factor
    loss = agg_loss(loss_mat=per_token, loss_mask=mask, loss_agg_mode=config.loss_agg_mode, **config.global_batch_info)
    valid = per_token.detach()[mask]
    metrics = {
        f"opsdc/{state.settings.loss}": Metric(AggregationType.MEAN, valid.mean() if valid.numel() else 0.0),
        "opsdc/kl_max": Metric(AggregationType.MAX, valid.max() if valid.numel() else 0.0),
        "opsdc/loss": Metric(AggregationType.SUM, loss.detach()),
    }
    for key, value in state.pending.items():
        metrics[key] = Metric(AggregationType.MEAN, value)
    state.pending.clear()
    return loss, metrics


def _dist_reduce(value: float, op: str) -> float:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    reduce_op = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
    try:
        torch.distributed.all_reduce(t, op=reduce_op)
    except RuntimeError:  # backend without CPU tensors (nccl only): reduce on the device
        from verl.utils.device import get_device_name

        t = t.to(get_device_name())
        torch.distributed.all_reduce(t, op=reduce_op)
    return float(t.item())


def after_update(state: OpsdcWorkerState) -> dict[str, float]:
    """Step bookkeeping after one ``update_actor``: refresh the teacher when due, return the step's metrics."""
    state.step += 1
    settings = state.settings
    synced = should_sync(state.step, settings.teacher_update_freq)
    if synced:
        copy_weights_(state.teacher, state.student)
    metrics = {"opsdc/teacher_synced": float(synced), "opsdc/worker_step": float(state.step)}
    if settings.track_weights:
        teacher_sum = _dist_reduce(weight_checksum(state.teacher), "sum")
        metrics.update(
            {
                "opsdc/teacher_checksum": teacher_sum,
                "opsdc/actor_checksum": _dist_reduce(weight_checksum(state.student), "sum"),
                "opsdc/teacher_initial_checksum": state.initial_checksum,
                "opsdc/teacher_minus_initial_checksum": teacher_sum - state.initial_checksum,
                "opsdc/teacher_actor_max_abs_diff": _dist_reduce(max_abs_diff(state.teacher, state.student), "max"),
            }
        )
    return metrics


def _install_worker_state(worker) -> OpsdcWorkerState | None:
    settings = opsdc_settings(worker.config.get("opsdc", None))
    if settings is None or getattr(worker, "actor", None) is None:
        return None
    if getattr(worker, "ref", None) is None:
        raise RuntimeError(
            "opsdc: the actor worker has no colocated ref model to use as teacher; set "
            "actor_rollout_ref.actor.use_kl_loss=true (and no LoRA)"
        )
    model_config = worker.actor.model_config
    tokenizer = getattr(model_config, "tokenizer", None)
    if tokenizer is None:
        from verl.utils import hf_tokenizer

        tokenizer = hf_tokenizer(model_config.local_tokenizer_path or model_config.local_path)
    chat_kwargs = dict(settings.chat_template_kwargs or {})
    reprompter = Reprompter.create(
        tokenizer,
        settings.instruction,
        mode=settings.mode,
        separator=settings.separator,
        replace_text=settings.replace_text,
        apply_chat_template_kwargs=chat_kwargs or None,
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    state = OpsdcWorkerState(
        settings=settings,
        reprompter=reprompter,
        teacher_engine=worker.ref.engine,
        student_engine=worker.actor.engine,
        pad_id=int(pad_id),
        packed=bool(worker.config.model.get("use_remove_padding", False)),
    )
    state.teacher.eval()
    if settings.track_weights:
        state.initial_checksum = _dist_reduce(weight_checksum(state.teacher), "sum")
    base = worker.loss_fn
    actor_config = base.keywords["config"] if isinstance(base, functools.partial) else None
    if actor_config is None:
        raise RuntimeError("opsdc: cannot find the actor config in the worker's loss function")
    worker.loss_fn = functools.partial(opsdc_loss, config=actor_config, state=state)
    worker.actor.set_loss_fn(worker.loss_fn)
    logger.info(
        "opsdc: teacher = colocated ref model; instruction mode %s (+%d tokens), loss %s%s, M=%d",
        settings.mode,
        len(reprompter.instruction_ids),
        settings.loss,
        f" top-{settings.topk}" if settings.topk else " (full vocabulary)",
        settings.teacher_update_freq,
    )
    return state


def _mark_distillation(data) -> None:
    """Set verl's ``distillation_use_topk`` / ``distillation_only`` flags on an ``update_actor`` batch: the FSDP
    engine then calls the loss function as a logits processor with the full student logits and skips the
    policy log-probs."""
    assign_batch_flags(data, "opsdc", distillation_use_topk=True, distillation_only=True)


def _hook_workers(module) -> None:
    cls = module.ActorRolloutRefWorker
    if getattr(cls.init_model, "_opsdc_hook", False):
        return
    from verl.utils import tensordict_utils as tu

    original_init, original_update = cls.init_model, cls.update_actor

    @functools.wraps(original_init)
    def init_model(self, *args, **kwargs):
        out = original_init(self, *args, **kwargs)
        self._opsdc_state = _install_worker_state(self)
        return out

    @functools.wraps(original_update)
    def update_actor(self, data, *args, **kwargs):
        state = getattr(self, "_opsdc_state", None)
        if state is None:
            return original_update(self, data, *args, **kwargs)
        _mark_distillation(data)
        teacher_engine = state.teacher_engine
        offloaded = bool(getattr(teacher_engine, "is_param_offload_enabled", False))
        if offloaded:
            from verl.utils.device import get_device_name

            teacher_engine.to(device=get_device_name(), model=True, optimizer=False, grad=False)
        try:
            output = original_update(self, data, *args, **kwargs)
            metrics = after_update(state)
        finally:
            if offloaded:
                teacher_engine.to(device="cpu", model=True, optimizer=False, grad=False)
        if output is not None:
            merged = dict(tu.get_non_tensor_data(output, "metrics", None) or {})
            merged.update(metrics)
            tu.assign_non_tensor(output, metrics=merged)
        return output

    init_model._opsdc_hook = True
    cls.init_model, cls.update_actor = init_model, update_actor


def _register() -> None:
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    from verl_frontier.verl_patches import verl_supported
    from verl_frontier_hooks import when_imported

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not compute_opsdc_advantage:  # re-imports are no-ops
        register_adv_est(ESTIMATOR_NAME)(compute_opsdc_advantage)
    if not verl_supported("opsdc"):
        return
    when_imported("verl.workers.engine_workers", _hook_workers)
    method_state.register_worker_state("opsdc", lambda worker: getattr(worker, "_opsdc_state", None))


_register()
driver_hooks.install()
