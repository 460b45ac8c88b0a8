"""verl 0.9.1 glue for Paced (pass-rate-weighted distillation). The math is in weights.py / losses.py and
verl_frontier.kd; this module only moves tensors between verl's pipeline and those functions.

How the per-prompt weight reaches the actor's loss (a design choice)
-----------------------------------------------------------------
The pass rate p of a prompt needs the rewards of all n rollouts of its ``uid`` group, which only the
driver sees, after the rollouts are scored. verl already calls one driver-side function there with exactly
those inputs, in both the legacy and the v1 trainer: the advantage estimator. So Paced registers an
estimator, ``algorithm.adv_estimator=paced``, which computes p per group, w(p) = p^α(1−p)^β, normalises
the weights over the whole step's batch (mean 1 by default), and writes

* ``advantages`` := w̃_i on every response token of sample i (the per-sample weight), and
* ``returns``    := the divergence code of the active stage (0 forward KL, 1 reverse KL, 2 JSD).

Distillation with ``use_task_rewards=false`` does not use advantages/returns for anything else, and both
fields travel to the actor's micro-batches untouched (v1: TransferQueue; legacy: the batch TensorDict).
The registered distillation losses (``paced_*``) multiply the per-token divergence by w̃_i and by the row
factor of :func:`verl_frontier.paced.losses.aggregation_scale`, so that verl's own aggregation, whatever its
``loss_agg_mode``, gives Σ_i w̃_i ℓ_i / B = Σ_i w_i ℓ_i / Σ_i w_i over the rows with at least one response
token (ℓ_i the token-mean divergence of sample i; rows without response tokens get w̃ = 0 and the mean-1
normalisation counts them as rows), Paced's objective. No trainer subclass, no new worker: the
teacher servers (``distillation.teacher_models``) are verl's, unchanged.

The two-stage schedule needs the step on the driver: verl_frontier.driver_hooks records it.

Compute only on the frontier (``algorithm.paced.drop_zero_weight``, default on; the math in frontier.py)
--------------------------------------------------------------------------------------------------------
verl queries the teacher per rollout inside the agent-loop worker, right after scoring it, before the driver
sees any group. The worker runs all n rollouts of a prompt together (v1: ``_run_prompt``; legacy: groups are
contiguous chunks, and a group split across two workers is simply not gated), so a per-worker
:class:`GroupScoreGate` holds each scored rollout until its group is complete; if the group's weight is 0
the teacher is not asked and its log-probs are filled with ``TEACHER_SKIPPED_LOGPROB`` (+1, impossible for a
log-probability). The actor's loss counts those rows (``paced/actor_teacher_skipped_samples``) and fails if
one of them has weight > 0 (the gate and the estimator disagree). On the legacy trainer the driver also
drops zero-weight groups before ``update_actor`` (:func:`frontier_rows`: same mini-batch count, divisible by
world size x micro-batch size, or world size with ``use_dynamic_bsz``; the weights are rescaled so
Σ_i w̃_i ℓ_i / B is unchanged); the v1 trainer keeps them (its batch lives in TransferQueue) and they cost a
backward pass at weight 0.

Registered names
----------------
* estimator ``paced``;
* top-k distillation losses (teacher top-k log-probs from verl's teacher servers):
  ``paced_topk`` (divergence from the stage schedule: two-stage), ``paced_forward_kl_topk``,
  ``paced_reverse_kl_topk``, ``paced_jsd_topk`` (fixed divergence). verl hard-wires its top-k logits
  processor to forward KL, so ``compute_topk_loss`` is wrapped to send these modes to
  :func:`verl_frontier.kd.topk.topk_divergences`, which returns forward KL, reverse KL and JSD per token;
* sampled-token reverse-KL estimators (teacher log-prob of the sampled token only): ``paced_k1``,
  ``paced_k3`` (verl's ``kl_penalty`` k1/k3, weighted).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from omegaconf import open_dict

from verl_frontier import driver_hooks
from verl_frontier.kd.topk import LOG_PROB_FLOOR
from verl_frontier.paced.config import DIVERGENCE_CODES, PacedConfig
from verl_frontier.paced.frontier import GroupScoreGate, frontier_rows, group_has_zero_weight
from verl_frontier.paced.losses import aggregation_scale, select_divergence
from verl_frontier.paced.weights import (
    beta_kernel_weight,
    effective_sample_size,
    group_pass_rates,
    normalize_weights,
    pass_rate_histogram,
)
from verl_frontier.response_tensors import response_padded
from verl_frontier.verl_patches import verl_supported
from verl_frontier_hooks import when_imported, wrap_once

ESTIMATOR_NAME = "paced"
#: top-k loss mode -> fixed divergence code (None: per sample, from the stage schedule)
TOPK_MODES: dict[str, int | None] = {
    "paced_topk": None,
    "paced_forward_kl_topk": DIVERGENCE_CODES["forward_kl"],
    "paced_reverse_kl_topk": DIVERGENCE_CODES["reverse_kl"],
    "paced_jsd_topk": DIVERGENCE_CODES["jsd"],
}
#: sampled-token loss mode -> verl kl_penalty name (a reverse-KL estimator)
ESTIMATOR_MODES: dict[str, str] = {"paced_k1": "k1", "paced_k3": "k3"}
LOSS_MODES = (*TOPK_MODES, *ESTIMATOR_MODES)
#: the generalised JSD's beta in the top-k losses (GKD's default; TRL's convention, see kd/topk.py)
JSD_BETA = 0.5

EXPECTED_REGISTRATIONS = [("adv_est", ESTIMATOR_NAME)] + [("distillation_loss", name) for name in LOSS_MODES]

CODE_NAMES = {code: name for name, code in DIVERGENCE_CODES.items()}


# ---------------------------------------------------------------------------------------------------------
# driver: the estimator
# ---------------------------------------------------------------------------------------------------------


def paced_settings(algorithm_config) -> PacedConfig:
    section = algorithm_config.get("paced", None) if algorithm_config is not None else None
    return PacedConfig.from_mapping(section)


def compute_paced_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray = None,
    config=None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paced weights in verl's estimator slot.

    Args:
        token_level_rewards: (bs, response_length) verifiable reward (on the last token).
        response_mask: (bs, response_length).
        index: (bs,) the ``uid`` of each sample's prompt group.
        config: ``algorithm`` config; reads ``algorithm.paced`` (:class:`PacedConfig`).

    Returns:
        advantages: (bs, response_length) w̃_i on sample i's response tokens (normalised weight).
        returns: (bs, response_length) the active stage's divergence code on response tokens.
    """
    if index is None:
        raise ValueError("algorithm.adv_estimator=paced needs the uid groups of the rollouts (index)")
    settings = paced_settings(config)
    step = driver_hooks.current_step()
    stage = settings.stage_at(step)
    scores = token_level_rewards.sum(dim=-1)
    pass_rate = group_pass_rates(scores, index, threshold=settings.pass_threshold)
    weights = beta_kernel_weight(pass_rate, stage.alpha, stage.beta)
    # rows without a response token take no part in the loss: weight 0, so the normalisation (mean 1 over the
    # batch's rows) is over the rows that contribute (see aggregation_scale)
    contributes = response_mask.sum(-1) > 0
    weights_normalized = normalize_weights(
        torch.where(contributes, weights, torch.zeros_like(weights)), settings.normalize, settings.normalize_target
    )
    mask = response_mask.to(weights_normalized.dtype)
    advantages = weights_normalized.unsqueeze(-1) * mask
    returns = torch.full_like(mask, float(stage.code)) * mask

    _, first = np.unique(np.asarray(index, dtype=object).astype(str), return_index=True)
    group_pass = pass_rate[torch.as_tensor(first)]
    group_weight = weights[torch.as_tensor(first)]
    ess = float(effective_sample_size(weights))
    metrics = {
        "paced/stage": 1 if settings.switch_step is None or step is None or step < settings.switch_step else 2,
        "paced/divergence_code": stage.code,
        "paced/pass_rate_mean": group_pass.mean().item(),
        "paced/weight_mean": group_weight.mean().item(),
        "paced/zero_weight_prompt_frac": (group_weight == 0).float().mean().item(),
        "paced/effective_sample_size": ess,
        "paced/effective_sample_frac": ess / max(len(weights), 1),
        "paced/all_zero_weight_batch": float(bool((weights == 0).all())),
    }
    metrics.update({f"paced/pass_rate_hist/{k}": v for k, v in pass_rate_histogram(group_pass).items()})
    driver_hooks.log_step_metrics(metrics)
    return advantages, returns


# ---------------------------------------------------------------------------------------------------------
# actor: the losses
# ---------------------------------------------------------------------------------------------------------


def _weights_and_codes(data, width: int, fixed_code: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if "advantages" not in data.keys():
        raise KeyError(
            "paced_* distillation losses need the per-sample weights of algorithm.adv_estimator=paced "
            "(carried in 'advantages'); the micro-batch has none"
        )
    weights, codes = response_padded(data["advantages"], width), response_padded(data["returns"], width)
    if fixed_code is not None:
        codes = torch.full_like(codes, float(fixed_code))
    return weights.float(), codes.round().long()


def _teacher_skipped(teacher_log_probs: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(bs,) rows whose teacher log-probs carry the skip marker; a marked row with weight > 0 is an error."""
    # (bs, T, K) top-k or (bs, T) sampled-token log-probs
    marked = (teacher_log_probs.reshape(*mask.shape[:2], -1).amax(-1) >= TEACHER_SKIPPED_LOGPROB) & mask
    skipped = marked.any(dim=-1)
    if bool((skipped & ((weights * mask).abs().sum(-1) > 0)).any()):
        raise RuntimeError(
            "paced: the teacher was skipped for a rollout whose Paced weight is > 0 (agent-loop gate and driver "
            "estimator disagree); set algorithm.paced.drop_zero_weight=false and report this"
        )
    return skipped


def _aggregation_scale(config, data, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(bs, 1) row factors making verl's ``agg_loss`` (any ``loss_agg_mode``) Paced's Σ_i w_i ℓ_i / Σ_i w_i."""
    info = {key: data[key] if key in data.keys() else None for key in ("batch_num_tokens", "global_batch_size")}
    return aggregation_scale(
        mask, config.loss_agg_mode, loss_scale_factor=config.loss_scale_factor, dtype=dtype, **info
    ).to(mask.device)


def _loss_metrics(divergences: dict[str, torch.Tensor], weights, codes, mask, skipped=None) -> dict:
    from verl.utils.metric import AggregationType, Metric

    sample_valid = mask.any(dim=-1)
    sample_weight = (weights * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    skipped = torch.zeros_like(sample_valid) if skipped is None else skipped
    metrics = {
        "paced/actor_weight_mean": Metric(AggregationType.MEAN, sample_weight[sample_valid].mean()),
        "paced/actor_zero_weight_samples": Metric(AggregationType.SUM, (sample_weight[sample_valid] == 0).sum()),
        "paced/actor_samples": Metric(AggregationType.SUM, sample_valid.sum()),
        "paced/actor_teacher_skipped_samples": Metric(AggregationType.SUM, (skipped & sample_valid).sum()),
    }
    for code, name in CODE_NAMES.items():
        used = mask & (codes == code)
        if name in divergences and used.any():
            metrics[f"paced/loss_{name}"] = Metric(AggregationType.MEAN, divergences[name][used].mean())
    return metrics


def paced_topk_logits_processor(config, distillation_config, data, student_logits, data_format):
    """Per-token forward KL, reverse KL and JSD on the teacher's top-k (replaces verl's forward-KL-only
    processor for the ``paced_*_topk`` modes). Shapes as verl's ``compute_topk_loss``: (1, total_nnz)."""
    from verl.utils.ulysses import get_ulysses_sequence_parallel_world_size, slice_input_tensor

    from verl_frontier.kd.topk import topk_divergences

    if config.strategy not in ("fsdp", "fsdp2", "veomni"):
        raise NotImplementedError(f"paced top-k losses support FSDP actors, not {config.strategy!r}")
    teacher_log_probs, teacher_ids = data["teacher_logprobs"], data["teacher_ids"]
    assert teacher_log_probs.is_nested and teacher_ids.is_nested
    teacher_log_probs = teacher_log_probs.values().unsqueeze(0)
    teacher_ids = teacher_ids.values().unsqueeze(0)
    if get_ulysses_sequence_parallel_world_size() > 1:
        teacher_log_probs = slice_input_tensor(teacher_log_probs, dim=1)
        teacher_ids = slice_input_tensor(teacher_ids, dim=1)
    out = topk_divergences(
        student_logits,
        teacher_log_probs,
        teacher_ids,
        jsd_beta=JSD_BETA,
        log_prob_min_clamp=distillation_config.distillation_loss.log_prob_min_clamp,
    )
    return {
        "distillation_losses": out["forward_kl"],
        "paced_reverse_kl": out["reverse_kl"],
        "paced_jsd": out["jsd"],
        "student_mass": out["student_mass"],
        "teacher_mass": out["teacher_mass"],
    }


def paced_topk_loss(config, distillation_config, model_output, data, fixed_code=None):
    """Per-token w̃_i · D_i,t for the top-k modes; returns ((bs, response_length) losses, metrics)."""
    from verl.workers.utils.padding import no_padding_2_padding

    divergences = {
        "forward_kl": no_padding_2_padding(model_output["distillation_losses"], data).clamp_min(0.0),
        "reverse_kl": no_padding_2_padding(model_output["paced_reverse_kl"], data),
        "jsd": no_padding_2_padding(model_output["paced_jsd"], data),
    }
    width = divergences["forward_kl"].shape[1]  # verl's response width (max_response_len)
    mask = response_padded(data["response_mask"], width)
    mask = mask.bool()
    weights, codes = _weights_and_codes(data, width, fixed_code)
    selected = select_divergence(divergences["forward_kl"], divergences["reverse_kl"], divergences["jsd"], codes[:, 0])
    teacher = response_padded(no_padding_2_padding(data["teacher_logprobs"], data), width)
    metrics = _loss_metrics(divergences, weights, codes, mask, _teacher_skipped(teacher, mask, weights))
    student_mass = no_padding_2_padding(model_output["student_mass"], data)[mask]
    teacher_mass = no_padding_2_padding(model_output["teacher_mass"], data)[mask]
    metrics["distillation/student_mass"] = student_mass.mean().item() if student_mass.numel() else 0.0
    metrics["distillation/teacher_mass"] = teacher_mass.mean().item() if teacher_mass.numel() else 0.0
    return weights * selected * _aggregation_scale(config, data, mask, selected.dtype), metrics


def paced_estimator_loss(config, distillation_config, model_output, data, kl_name: str):
    """Per-token w̃_i · k(log π_student(y_t), log π_teacher(y_t)) with verl's sampled-token estimator."""
    from verl.trainer.ppo.core_algos import kl_penalty
    from verl.workers.utils.padding import no_padding_2_padding

    student = no_padding_2_padding(model_output["log_probs"], data)
    teacher = no_padding_2_padding(data["teacher_logprobs"], data).squeeze(-1)
    width = student.shape[1]  # verl's response width (max_response_len)
    mask = response_padded(data["response_mask"], width)
    mask = mask.bool()
    # a teacher log-prob of -inf (vLLM: probability 0) floored as in kd.topk: k1 = log q + 100, not +inf
    reverse = kl_penalty(logprob=student, ref_logprob=teacher.clamp_min(LOG_PROB_FLOOR), kl_penalty=kl_name)
    weights, codes = _weights_and_codes(data, width, DIVERGENCE_CODES["reverse_kl"])
    teacher_padded = response_padded(teacher, width)
    metrics = _loss_metrics(
        {"reverse_kl": reverse}, weights, codes, mask, _teacher_skipped(teacher_padded, mask, weights)
    )
    return weights * reverse * _aggregation_scale(config, data, mask, reverse.dtype), metrics


# ---------------------------------------------------------------------------------------------------------
# frontier: no teacher query (agent-loop worker) and no backward pass (legacy driver) for zero-weight groups
# ---------------------------------------------------------------------------------------------------------

#: teacher log-prob written for every position of a rollout whose teacher query was skipped (a real
#: log-probability is <= 0); the row's weight is 0, so the value never reaches a gradient.
TEACHER_SKIPPED_LOGPROB = 1.0
_GATE_ATTR = "_verl_frontier_paced_gate"


def _drop_settings(config) -> PacedConfig | None:
    """The Paced settings when zero-weight dropping is on for this trainer config, else None."""
    algorithm = config.get("algorithm", None) if config is not None else None
    if algorithm is None or algorithm.get("adv_estimator", None) != ESTIMATOR_NAME:
        return None
    settings = paced_settings(algorithm)
    return settings if settings.drop_zero_weight else None


def _decider(settings: PacedConfig, step):
    stage = settings.stage_at(None if step is None or int(step) < 0 else int(step))
    return partial(group_has_zero_weight, threshold=settings.pass_threshold, alpha=stage.alpha, beta=stage.beta)


def _gate(worker) -> GroupScoreGate:
    gate = getattr(worker, _GATE_ATTR, None)
    if gate is None:
        gate = GroupScoreGate()
        setattr(worker, _GATE_ATTR, gate)
    return gate


def _make_generate_sequences(original):
    """Legacy agent-loop worker: announce every complete uid group of this worker's chunk to the gate."""

    async def generate_sequences(self, batch):
        settings = _drop_settings(self.config)
        uids = batch.non_tensor_batch.get("uid") if settings is not None else None
        if uids is not None and not batch.meta_info.get("validate", False):
            n = int(self.config.actor_rollout_ref.rollout.n)
            decide = _decider(settings, batch.meta_info.get("global_steps"))
            names, counts = np.unique(np.asarray(uids).astype(str), return_counts=True)
            for uid, count in zip(names, counts):
                if count == n:  # a group split across workers is not gated (its pass rate is not all here)
                    _gate(self).expect(uid, n, decide)
        return await original(self, batch)

    return generate_sequences


def _make_run_prompt(original):
    """v1 agent-loop worker: one call runs all n sessions of one prompt; announce the group."""

    async def _run_prompt(self, prompt, sampling_params, trajectory, trace=False):
        settings = _drop_settings(self.config)
        if settings is not None and not trajectory.get("validate", False) and "uid" in prompt:
            n = int(prompt.get("__rollout_n__", self.config.actor_rollout_ref.rollout.n))
            _gate(self).expect(str(prompt["uid"]), n, _decider(settings, trajectory.get("step")))
        return await original(self, prompt, sampling_params, trajectory, trace)

    return _run_prompt


def _make_teacher_logprobs(original):
    """Both trainers: wait for the group's scores; skip the teacher for a zero-weight group."""

    async def _compute_teacher_logprobs(self, output, prompt_ids, response_ids, validate, sample_kwargs=None):
        uid = (sample_kwargs or {}).get("uid")
        if (
            validate
            or uid is None
            or not getattr(self, "distillation_enabled", False)
            or _drop_settings(self.config) is None
        ):
            return await original(self, output, prompt_ids, response_ids, validate, sample_kwargs)
        if not await _gate(self).arrive(str(uid), output.reward_score):
            return await original(self, output, prompt_ids, response_ids, validate, sample_kwargs)
        loss_config = self.teacher_server_manager.distillation_loss_config
        width = int(loss_config.topk) if loss_config.loss_settings.use_topk else 1
        length = len(prompt_ids) + len(response_ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        output.extra_fields["teacher_ids"] = torch.full((length, width), pad, dtype=torch.int32)
        output.extra_fields["teacher_logprobs"] = torch.full((length, width), TEACHER_SKIPPED_LOGPROB)

    return _compute_teacher_logprobs


def _make_update_actor(original):
    """Legacy driver: drop zero-weight groups before the actor's backward pass (frontier_rows)."""

    def _update_actor(self, batch):
        settings = _drop_settings(self.config)
        if settings is None or "uid" not in batch.non_tensor_batch or "advantages" not in batch.batch.keys():
            return original(self, batch)
        actor = self.config.actor_rollout_ref.actor
        n = int(self.config.actor_rollout_ref.rollout.n)
        rows = len(batch)
        mini_rows = int(actor.ppo_mini_batch_size) * n
        num_mini = max(1, rows // mini_rows)
        # each rank's share of a mini-batch must split into micro-batches (fixed micro-batch size only)
        micro = 1 if actor.get("use_dynamic_bsz", False) else int(actor.ppo_micro_batch_size_per_gpu)
        divisor = int(self.actor_rollout_wg.world_size) * micro
        mask = batch.batch["response_mask"].to(torch.float32)
        row_weight = (batch.batch["advantages"].float() * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        keep, per_mini = frontier_rows(row_weight, batch.non_tensor_batch["uid"], num_mini, divisor)
        dropped = 1.0 - len(keep) / max(rows, 1)
        driver_hooks.log_step_metrics({"paced/dropped_sample_frac": dropped, "paced/backward_samples": len(keep)})
        if len(keep) == rows or per_mini % n:
            return original(self, batch)
        trimmed = batch.select_idxs(keep)
        trimmed.batch["advantages"] = trimmed.batch["advantages"] * (len(keep) / rows)  # same Σ w̃ ℓ / B
        previous = actor.ppo_mini_batch_size
        with open_dict(actor):
            actor.ppo_mini_batch_size = per_mini // n
        try:
            return original(self, trimmed)
        finally:
            with open_dict(actor):
                actor.ppo_mini_batch_size = previous

    return _update_actor


def _hook_agent_loop(module) -> None:
    worker = module.AgentLoopWorker
    wrap_once(worker, "generate_sequences", _make_generate_sequences, marker=_GATE_ATTR)
    wrap_once(worker, "_compute_teacher_logprobs", _make_teacher_logprobs, marker=_GATE_ATTR)


def _hook_agent_loop_tq(module) -> None:
    # @ray.remote class: Ray builds the actor from a subclass holding its own copies of the methods
    worker = module.AgentLoopWorkerTQ
    metadata = getattr(worker, "__ray_metadata__", None)
    for cls in (getattr(worker, "__ray_actor_class__", worker), getattr(metadata, "modified_class", None)):
        if cls is not None:
            wrap_once(cls, "_run_prompt", _make_run_prompt, marker=_GATE_ATTR)


def _hook_ray_trainer(module) -> None:
    wrap_once(module.RayPPOTrainer, "_update_actor", _make_update_actor, marker=_GATE_ATTR)


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------


def _register() -> None:
    from verl.trainer.distillation import losses as distillation_losses
    from verl.trainer.distillation.losses import DistillationLossSettings, register_distillation_loss
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not compute_paced_advantage:
        register_adv_est(ESTIMATOR_NAME)(compute_paced_advantage)
    for name, code in TOPK_MODES.items():
        if name not in distillation_losses.DISTILLATION_LOSS_REGISTRY:
            loss = partial(paced_topk_loss, fixed_code=code)
            register_distillation_loss(DistillationLossSettings(names=[name], use_topk=True))(loss)
    for name, kl_name in ESTIMATOR_MODES.items():
        if name not in distillation_losses.DISTILLATION_LOSS_REGISTRY:
            loss = partial(paced_estimator_loss, kl_name=kl_name)
            register_distillation_loss(DistillationLossSettings(names=[name], use_estimator=True))(loss)

    def make(original):
        def compute_topk_loss(config, distillation_config, data, student_logits, data_format):
            if distillation_config.distillation_loss.loss_mode in TOPK_MODES:
                return paced_topk_logits_processor(config, distillation_config, data, student_logits, data_format)
            return original(config, distillation_config, data, student_logits, data_format)

        return compute_topk_loss

    if verl_supported("paced"):
        wrap_once(distillation_losses, "compute_topk_loss", make, marker="_verl_frontier_paced")


_register()
driver_hooks.install()
if verl_supported("paced"):  # the wraps of verl_frontier.verl_patches.PATCHES owned by paced
    when_imported("verl.experimental.agent_loop.agent_loop", _hook_agent_loop)
    when_imported("verl.trainer.ppo.v1.agent_loop_tq", _hook_agent_loop_tq)
    when_imported("verl.trainer.ppo.ray_trainer", _hook_ray_trainer)

from verl_frontier.paced import validation as _validation  # noqa: E402,F401  (registers the config checks)
