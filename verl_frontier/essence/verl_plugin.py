"""verl 0.9.1 glue for Distilling the Essence.

* agent loops ``essence_replay`` (offline KD on teacher-written reasoning) and ``essence_single_turn``
  (the segment/truncation mask on the student's own rollouts, for Paced / on-policy distillation), see
  agent_loop.py; both put the Essence mask into ``response_mask``, which every verl and verl-frontier loss
  aggregates over, so the mask composes with any of our distillation losses;
* distillation loss ``essence_kd_topk``: per token ``lam * (-log q(y_t)) + (1 - lam) * FKL_t`` (losses.py),
  with FKL_t from verl's top-k forward-KL logits processor (top-k = vocabulary size is the full-vocabulary
  KL), aggregated by verl over ``response_mask`` with ``actor.loss_agg_mode`` (token-mean, as fmchisel);
* ``lam`` = ``actor_rollout_ref.essence.ce_weight``: the loss only receives the actor's ``ActorConfig``, so
  each actor worker reads its ``actor_rollout_ref.essence`` section when it builds its model (a wrap of
  ``ActorRolloutRefWorker.init_model``) and the loss logs the value it used (``essence/ce_weight``);
* a driver check (before Ray) of the settings and their combination with the loss / agent loop.
"""

from __future__ import annotations

import functools

from verl_frontier.batch_flags import assign_batch_flags
from verl_frontier.essence import agent_loop
from verl_frontier.essence.config import EssenceConfig
from verl_frontier.essence.losses import essence_token_loss
from verl_frontier.response_tensors import response_padded
from verl_frontier.validation import config_error, register_check, register_schema, select
from verl_frontier.verl_patches import verl_supported
from verl_frontier_hooks import when_imported

LOSS_NAME = "essence_kd_topk"
SECTION = "actor_rollout_ref.essence"
EXPECTED_REGISTRATIONS = [
    ("agent_loop", agent_loop.REPLAY_AGENT),
    ("agent_loop", agent_loop.ON_POLICY_AGENT),
    ("distillation_loss", LOSS_NAME),
]

#: the settings of this worker process (set by the init_model wrap; defaults until then)
WORKER_SETTINGS = EssenceConfig()


def essence_kd_topk(config, distillation_config, model_output, data):
    """(bs, response_length) per-token Essence loss and metrics; see the module docstring."""
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    forward_kl = no_padding_2_padding(model_output["distillation_losses"], data).clamp_min(0.0)
    log_probs = no_padding_2_padding(model_output["log_probs"], data)
    mask = response_padded(data["response_mask"], forward_kl.shape[1]).bool()
    lam = float(WORKER_SETTINGS.ce_weight)
    losses = essence_token_loss(log_probs, forward_kl, lam)
    tokens = mask.sum()
    metrics = {
        "essence/ce": Metric(AggregationType.MEAN, (-log_probs.detach())[mask].mean() if tokens else 0.0),
        "essence/forward_kl": Metric(AggregationType.MEAN, forward_kl.detach()[mask].mean() if tokens else 0.0),
        "essence/trained_tokens": Metric(AggregationType.SUM, tokens),
        "essence/ce_weight": lam,
    }
    return losses, metrics


def _hook_workers(module) -> None:
    """Each actor worker reads ``actor_rollout_ref.essence`` when it builds its model; with that section set,
    ``update_actor`` clears verl's ``distillation_only`` flag (set for top-k supervised distillation), so the
    engine also computes the student's log-probs of the trained tokens: the CE term."""
    cls = module.ActorRolloutRefWorker
    if getattr(cls.init_model, "_essence_hook", False):
        return
    original_init, original_update = cls.init_model, cls.update_actor

    @functools.wraps(original_init)
    def init_model(self, *args, **kwargs):
        global WORKER_SETTINGS
        section = self.config.get("essence", None)
        WORKER_SETTINGS = EssenceConfig.from_mapping(section)
        self._essence_active = section is not None
        return original_init(self, *args, **kwargs)

    @functools.wraps(original_update)
    def update_actor(self, data, *args, **kwargs):
        if getattr(self, "_essence_active", False):
            assign_batch_flags(data, "essence", distillation_only=False)
        return original_update(self, data, *args, **kwargs)

    init_model._essence_hook = True
    cls.init_model, cls.update_actor = init_model, update_actor


def essence_topk_logits_processor(config, distillation_config, data, student_logits, data_format):
    """FKL_t for ``essence_kd_topk`` from :func:`verl_frontier.kd.topk.topk_divergences` instead of verl's
    top-k processor: the same value term for term, except that a teacher log-prob of -inf (vLLM's zero
    probability) contributes 0 where verl's p (log p - log q) gives 0 * inf = NaN. Shapes as verl's
    ``compute_topk_loss``: (1, total_nnz)."""
    from verl.utils.ulysses import get_ulysses_sequence_parallel_world_size, slice_input_tensor

    from verl_frontier.kd.topk import topk_divergences

    teacher_log_probs = data["teacher_logprobs"].values().unsqueeze(0)
    teacher_ids = data["teacher_ids"].values().unsqueeze(0)
    if get_ulysses_sequence_parallel_world_size() > 1:
        teacher_log_probs = slice_input_tensor(teacher_log_probs, dim=1)
        teacher_ids = slice_input_tensor(teacher_ids, dim=1)
    clamp = distillation_config.distillation_loss.log_prob_min_clamp
    out = topk_divergences(student_logits, teacher_log_probs, teacher_ids, log_prob_min_clamp=clamp)
    return {key: out[name] for key, name in TOPK_OUTPUTS.items()}


#: verl's top-k processor outputs -> topk_divergences keys
TOPK_OUTPUTS = {"distillation_losses": "forward_kl", "student_mass": "student_mass", "teacher_mass": "teacher_mass"}


def _register() -> None:
    from verl.trainer.distillation import losses as distillation_losses
    from verl.trainer.distillation.losses import (
        DISTILLATION_LOSS_REGISTRY,
        DistillationLossSettings,
        register_distillation_loss,
    )

    from verl_frontier_hooks import wrap_once

    if LOSS_NAME not in DISTILLATION_LOSS_REGISTRY:
        register_distillation_loss(DistillationLossSettings(names=[LOSS_NAME], use_topk=True))(essence_kd_topk)

    def make(original):
        def compute_topk_loss(config, distillation_config, data, student_logits, data_format):
            if distillation_config.distillation_loss.loss_mode == LOSS_NAME and config.strategy in FSDP_STRATEGIES:
                return essence_topk_logits_processor(config, distillation_config, data, student_logits, data_format)
            return original(config, distillation_config, data, student_logits, data_format)

        return compute_topk_loss

    if verl_supported("essence"):
        wrap_once(distillation_losses, "compute_topk_loss", make, marker="_verl_frontier_essence")


#: actor strategies whose top-k processor this module replaces (verl's FSDP path; Megatron keeps verl's)
FSDP_STRATEGIES = ("fsdp", "fsdp2", "veomni")


register_schema(SECTION, EssenceConfig)


@register_check(name="essence")
def check_essence(config) -> None:
    """The loss needs supervised (not policy-gradient) distillation without task rewards; the on-policy loop
    cannot train the prompt."""
    loss_mode = str(select(config, "distillation.distillation_loss.loss_mode", "") or "")
    if loss_mode == LOSS_NAME and bool(select(config, "distillation.enabled", False)):
        for key in ("use_policy_gradient", "use_task_rewards"):
            value = select(config, f"distillation.distillation_loss.{key}", None)
            if value:
                raise config_error(
                    f"distillation.distillation_loss.{key}",
                    f"{LOSS_NAME} is a supervised loss (lam * CE + (1 - lam) * forward KL on fixed sequences): "
                    "set it to false",
                    value,
                )
    agent = select(config, "actor_rollout_ref.rollout.agent.default_agent_loop", None)
    section = select(config, SECTION, None)
    if agent == agent_loop.ON_POLICY_AGENT and section is not None:
        settings = EssenceConfig.from_mapping(section)
        if "prompt" in settings.segments:
            raise config_error(
                f"{SECTION}.segments",
                f"{agent_loop.ON_POLICY_AGENT} masks the student's own response; the prompt is never trained "
                "on-policy: drop 'prompt'",
                list(settings.segments),
            )


_register()
if verl_supported("essence"):  # see verl_frontier.verl_patches
    when_imported("verl.workers.engine_workers", _hook_workers)
