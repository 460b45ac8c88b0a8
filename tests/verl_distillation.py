"""verl's distillation loss (``distillation_ppo_loss``) on one packed micro-batch, called the way an actor worker
calls it: the logits processor on the student's logits, then the final loss on its outputs. Imports verl."""

from __future__ import annotations

from types import SimpleNamespace


def distillation_configs(loss_mode: str, topk: int, micro_batch: int, loss_agg_mode: str):
    """The actor config and the distillation config the worker binds ``distillation_ppo_loss`` to (the loss reads only
    its ``distillation_loss``: a real ``DistillationLossConfig``, which validates the registered loss mode)."""
    from verl.workers.config import ActorConfig, DistillationLossConfig

    actor = ActorConfig(
        strategy="fsdp2", rollout_n=1, ppo_micro_batch_size_per_gpu=micro_batch, loss_agg_mode=loss_agg_mode
    )
    loss = DistillationLossConfig(
        loss_mode=loss_mode,
        topk=topk,
        use_task_rewards=False,
        use_policy_gradient=False,
        loss_max_clamp=None,
        log_prob_min_clamp=None,
    )
    return actor, SimpleNamespace(enabled=True, distillation_loss=loss)


def verl_distillation_loss(
    loss_mode: str,
    data,
    student_logits,
    *,
    topk: int,
    micro_batch: int,
    loss_agg_mode: str,
    log_probs=None,
):
    """``(loss, metrics)`` of ``distillation_ppo_loss`` on the micro-batch ``data`` (a TensorDict in verl's
    no-padding layout) and the packed ``student_logits`` (one row per token); ``log_probs``: the engine's packed
    next-token log-probs, added to the model output when the loss needs them."""
    import torch
    from verl.trainer.distillation.losses import distillation_ppo_loss

    actor, distill = distillation_configs(loss_mode, topk, micro_batch, loss_agg_mode)
    outputs = distillation_ppo_loss(actor, distill, data=data, student_logits=student_logits.unsqueeze(0))
    cu_seqlens = data["input_ids"].offsets()
    model_output = {k: torch.nested.nested_tensor_from_jagged(v.squeeze(0), cu_seqlens) for k, v in outputs.items()}
    if log_probs is not None:
        model_output["log_probs"] = torch.nested.nested_tensor_from_jagged(log_probs, cu_seqlens)
    return distillation_ppo_loss(actor, distill, model_output=model_output, data=data)
