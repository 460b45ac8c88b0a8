"""Config checks for Paced, run in the driver before Ray starts (see verl_frontier.validation)."""

from __future__ import annotations

from verl_frontier.paced.config import SECTION, PacedConfig
from verl_frontier.validation import config_error, register_check, register_schema, select

register_schema(SECTION, PacedConfig)

ESTIMATOR = "paced"
PACED_LOSS_PREFIX = "paced_"


@register_check(name="paced")
def check_paced(config) -> None:
    """The estimator and the ``paced_*`` losses only make sense together, with n >= 2 rollouts per prompt."""
    estimator = select(config, "algorithm.adv_estimator")
    loss_mode = str(select(config, "distillation.distillation_loss.loss_mode", "") or "")
    distill = bool(select(config, "distillation.enabled", False))
    uses_loss = distill and loss_mode.startswith(PACED_LOSS_PREFIX)
    if estimator != ESTIMATOR and not uses_loss:
        return
    if uses_loss and estimator != ESTIMATOR:
        raise config_error(
            "algorithm.adv_estimator",
            f"distillation loss {loss_mode!r} needs the per-prompt Paced weights: set algorithm.adv_estimator=paced",
            estimator,
        )
    if not distill:
        raise config_error(
            "distillation.enabled", "algorithm.adv_estimator=paced weights a distillation loss: enable it", distill
        )
    if not loss_mode.startswith(PACED_LOSS_PREFIX):
        raise config_error(
            "distillation.distillation_loss.loss_mode",
            "algorithm.adv_estimator=paced needs a paced_* loss (paced_topk, paced_forward_kl_topk, "
            "paced_reverse_kl_topk, paced_jsd_topk, paced_k1, paced_k3)",
            loss_mode,
        )
    if select(config, "distillation.distillation_loss.use_task_rewards", False):
        raise config_error(
            "distillation.distillation_loss.use_task_rewards",
            "Paced carries its weights in the advantages; task-reward advantages cannot be mixed in",
            True,
        )
    n = select(config, "actor_rollout_ref.rollout.n", 1)
    if n is None or int(n) < 2:
        raise config_error("actor_rollout_ref.rollout.n", "the pass rate p needs n >= 2 rollouts of each prompt", n)
    agg = select(config, "actor_rollout_ref.actor.loss_agg_mode", "token-mean")
    if agg != "seq-mean-token-mean":
        raise config_error(
            "actor_rollout_ref.actor.loss_agg_mode",
            "Paced's objective sum_i w_i l_i / sum_i w_i (l_i the token-mean loss of sample i) needs "
            "seq-mean-token-mean",
            agg,
        )
    paced = PacedConfig.from_mapping(select(config, "algorithm.paced", None))
    estimator_modes = ("paced_k1", "paced_k3")
    if loss_mode in estimator_modes and any(stage.divergence != "reverse_kl" for stage in paced.stages()):
        raise config_error(
            "algorithm.paced.divergence",
            f"{loss_mode} is a sampled-token reverse-KL estimator; every stage must use reverse_kl "
            "(use a paced_*_topk loss for forward KL / JSD)",
            [stage.divergence for stage in paced.stages()],
        )
    if paced.switch_step is not None and loss_mode != "paced_topk":
        raise config_error(
            "distillation.distillation_loss.loss_mode",
            "a two-stage schedule (algorithm.paced.switch_step) needs loss_mode=paced_topk, which switches the "
            "divergence per stage",
            loss_mode,
        )
