"""ACE: Asymmetric Confidence-aware Error penalty (arXiv 2602.21420).

Wrong rollouts (base advantage < 0) get A' = A · (1 + α · softplus(c)), c the length-normalised log-ratio
of the rollout policy to the reference policy. The math (pure torch) is in :mod:`verl_frontier.ace.advantage`;
the verl glue (``algorithm.adv_estimator=ace``) in :mod:`verl_frontier.ace.verl_plugin`, loaded through
``verl_frontier.plugin.METHOD_PLUGINS``.
"""

from verl_frontier.ace.advantage import (
    AceConfig,
    AceResult,
    ace_advantages,
    ace_metrics,
    confidence_shift,
    modulation_factor,
    sequence_advantage,
)

__all__ = [
    "AceConfig",
    "AceResult",
    "ace_advantages",
    "ace_metrics",
    "confidence_shift",
    "modulation_factor",
    "sequence_advantage",
]
