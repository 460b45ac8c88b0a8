"""Knowledge distillation shared by the verl-frontier methods: divergences (pure torch, no verl imports) and
the replay agent loop.

- :mod:`verl_frontier.kd.topk`: forward KL (verl's exact ``forward_kl_topk``), reverse KL and generalised JSD
  on the teacher's top-k support (what verl's teacher servers return).
- :mod:`verl_frontier.kd.chunked`: full-vocabulary forward KL / reverse KL / generalised JSD between student
  and teacher logits, chunked over tokens so the [N, V] float32 log-softmax tensors are never all alive.
- :mod:`verl_frontier.kd.kinds`: the divergence names (:data:`KINDS`) all of them accept.
- :mod:`verl_frontier.kd.replay`: the verl agent loop ``teacher_replay`` (sequence-level KD on teacher-written
  responses); the one module here that imports verl, so this package does not import it.
"""

from verl_frontier.kd.chunked import chunked_divergence
from verl_frontier.kd.kinds import KINDS
from verl_frontier.kd.topk import gathered_log_softmax, topk_divergences

__all__ = ["KINDS", "chunked_divergence", "gathered_log_softmax", "topk_divergences"]
