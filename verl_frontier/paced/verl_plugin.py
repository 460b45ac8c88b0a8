"""verl 0.9.1 glue for Paced (pass-rate-weighted distillation). The math is in weights.py / losses.py and
verl_frontier.kd; this module only moves tensors between verl's pipeline and those functions.

How the per-prompt weight reaches the actor's loss (the design choice the issue asks to document)
--------------------------------------------------------------------------------------------------
The pass rate p of a prompt needs the rewards of all n rollouts of its ``uid`` group, which only the
driver sees, after the rollouts are scored. verl already calls one driver-side function there with exactly
those inputs, in both the legacy and the v1 trainer: the advantage estimator. So Paced registers an
estimator, ``algorithm.adv_estimator=paced``, which computes p per group, w(p) = p^α(1−p)^β, normalises
the weights over the whole step's batch (mean 1 by default), and writes

* ``advantages`` := w̃_i on every response token of sample i (the per-sample weight), and
* ``returns``    := the divergence code of the active stage (0 forward KL, 1 reverse KL, 2 JSD).

Distillation with ``use_task_rewards=false`` does not use advantages/returns for anything else, and both
fields travel to the actor's micro-batches untouched (v1: TransferQueue; legacy: the batch TensorDict).
The registered distillation losses (``paced_*``) multiply the per-token divergence by w̃_i; verl's own
aggregation with ``loss_agg_mode=seq-mean-token-mean`` then gives Σ_i w̃_i ℓ_i / B = Σ_i w_i ℓ_i / Σ_i w_i
(ℓ_i the token-mean divergence of sample i), Paced's objective. No trainer subclass, no new worker: the
teacher servers (``distillation.teacher_models``) are verl's, unchanged.

The two-stage schedule needs the step on the driver: verl_frontier.driver_hooks records it.

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

import numpy as np
import torch

from verl_frontier import driver_hooks
from verl_frontier.paced.config import DIVERGENCE_CODES, PacedConfig
from verl_frontier.paced.losses import select_divergence
from verl_frontier.paced.weights import (
    beta_kernel_weight,
    effective_sample_size,
    group_pass_rates,
    normalize_weights,
    pass_rate_histogram,
)

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
    weights_normalized = normalize_weights(weights, settings.normalize, settings.normalize_target)
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


def _response_padded(tensor: torch.Tensor) -> torch.Tensor:
    """Response-aligned (bs, response_length): v1 carries nested tensors, legacy padded ones."""
    return tensor.to_padded_tensor(0.0) if tensor.is_nested else tensor


def _same_width(width: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for tensor in tensors:
        if tensor.shape[1] < width:
            tensor = torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))
        out.append(tensor[:, :width])
    return out


def _weights_and_codes(data, width: int, fixed_code: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if "advantages" not in data.keys():
        raise KeyError(
            "paced_* distillation losses need the per-sample weights of algorithm.adv_estimator=paced "
            "(carried in 'advantages'); the micro-batch has none"
        )
    weights, codes = _same_width(width, _response_padded(data["advantages"]), _response_padded(data["returns"]))
    if fixed_code is not None:
        codes = torch.full_like(codes, float(fixed_code))
    return weights.float(), codes.round().long()


def _loss_metrics(divergences: dict[str, torch.Tensor], weights, codes, mask) -> dict:
    from verl.utils.metric import AggregationType, Metric

    sample_valid = mask.any(dim=-1)
    sample_weight = (weights * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    metrics = {
        "paced/actor_weight_mean": Metric(AggregationType.MEAN, sample_weight[sample_valid].mean()),
        "paced/actor_zero_weight_samples": Metric(AggregationType.SUM, (sample_weight[sample_valid] == 0).sum()),
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
    (mask,) = _same_width(width, _response_padded(data["response_mask"]))
    mask = mask.bool()
    weights, codes = _weights_and_codes(data, width, fixed_code)
    selected = select_divergence(divergences["forward_kl"], divergences["reverse_kl"], divergences["jsd"], codes[:, 0])
    metrics = _loss_metrics(divergences, weights, codes, mask)
    student_mass = no_padding_2_padding(model_output["student_mass"], data)[mask]
    teacher_mass = no_padding_2_padding(model_output["teacher_mass"], data)[mask]
    metrics["distillation/student_mass"] = student_mass.mean().item() if student_mass.numel() else 0.0
    metrics["distillation/teacher_mass"] = teacher_mass.mean().item() if teacher_mass.numel() else 0.0
    return weights * selected, metrics


def paced_estimator_loss(config, distillation_config, model_output, data, kl_name: str):
    """Per-token w̃_i · k(log π_student(y_t), log π_teacher(y_t)) with verl's sampled-token estimator."""
    from verl.trainer.ppo.core_algos import kl_penalty
    from verl.workers.utils.padding import no_padding_2_padding

    student = no_padding_2_padding(model_output["log_probs"], data)
    teacher = no_padding_2_padding(data["teacher_logprobs"], data).squeeze(-1)
    width = student.shape[1]  # verl's response width (max_response_len)
    (mask,) = _same_width(width, _response_padded(data["response_mask"]))
    mask = mask.bool()
    reverse = kl_penalty(logprob=student, ref_logprob=teacher, kl_penalty=kl_name)
    weights, codes = _weights_and_codes(data, width, DIVERGENCE_CODES["reverse_kl"])
    metrics = _loss_metrics({"reverse_kl": reverse}, weights, codes, mask)
    return weights * reverse, metrics


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------


def _register() -> None:
    from functools import partial

    from verl.trainer.distillation import losses as distillation_losses
    from verl.trainer.distillation.losses import DistillationLossSettings, register_distillation_loss
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    from verl_cpu.import_hooks import wrap_once

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

    wrap_once(distillation_losses, "compute_topk_loss", make, marker="_verl_frontier_paced")


_register()
driver_hooks.install()

from verl_frontier.paced import validation as _validation  # noqa: E402,F401  (registers the config checks)
