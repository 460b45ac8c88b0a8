"""Knowledge-distillation divergences shared by the verl-frontier methods (pure torch, no verl imports).

- :mod:`verl_frontier.kd.topk`: forward KL (verl's exact ``forward_kl_topk``), reverse KL and generalised JSD
  on the teacher's top-k support (what verl's teacher servers return).
- :mod:`verl_frontier.kd.chunked`: full-vocabulary forward KL / reverse KL / generalised JSD between student
  and teacher logits, chunked over tokens so the [N, V] float32 log-softmax tensors are never all alive.
"""

from verl_frontier.kd.chunked import chunked_divergence
from verl_frontier.kd.topk import gathered_log_softmax, topk_divergences

__all__ = ["chunked_divergence", "gathered_log_softmax", "topk_divergences"]
