"""Distilling the Essence (arXiv 2512.21002): segment-selective KD and first-r sequence truncation.

- :mod:`.segments`: the prompt / chain-of-thought / answer segments of a training sequence, the segment mask
  (fmchisel's ``section_inclusion``) and the first-r truncation (``keep = max(1, int(L * r))``);
- :mod:`.losses`: per-token loss ``lam * CE + (1 - lam) * forward KL`` (teacher -> student), full-vocabulary
  reference through :func:`verl_frontier.kd.chunked.chunked_divergence`;
- :mod:`.config`: the ``actor_rollout_ref.essence`` settings;
- :mod:`.data`: the offline dataset of teacher-written reasoning (verl parquet rows for the replay agent loop);
- :mod:`.verl_plugin`: verl glue (agent loops ``essence_replay`` / ``essence_single_turn``, loss
  ``essence_kd_topk``).

No verl imports outside verl_plugin.py / agent_loop.py.
"""

from verl_frontier.essence.config import EssenceConfig
from verl_frontier.essence.segments import SEGMENTS, parse_segments, segment_mask, truncated_length

__all__ = ["SEGMENTS", "EssenceConfig", "parse_segments", "segment_mask", "truncated_length"]
