"""The divergence names every distillation loss of verl-frontier accepts, defined once (no imports).

* ``forward_kl``: KL(teacher || student);
* ``reverse_kl``: KL(student || teacher);
* ``jsd``: the generalised Jensen-Shannon divergence JSD(beta) (TRL's convention, see :mod:`verl_frontier.kd.topk`).

The position of a name in :data:`KINDS` is also the per-sample divergence code Paced carries from its
estimator to its losses (``verl_frontier.paced.config.DIVERGENCE_CODES``).
"""

KINDS: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd")
