"""GKD mixing (Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes", arXiv 2306.13649): each training step, a fraction lambda of the rows are the student's own samples
(on-policy) and the rest replay teacher-written sequences, both scored by verl's teacher server and trained
with the same distillation loss; plus an off-policy cold start (teacher sequences only for the first N steps).

- :mod:`verl_frontier.gkd.config`: the ``algorithm.gkd`` settings (no torch or verl imports);
- :mod:`verl_frontier.gkd.assign`: which rows of a step are on-policy (pure Python, deterministic);
- :mod:`verl_frontier.gkd.verl_plugin`: the verl 0.9.1 glue (agent loop ``gkd_mix``, the agent-loop manager
  wraps that assign the rows, the ``gkd/*`` metrics);
- :mod:`verl_frontier.gkd.validation`: the driver-side config checks.
"""
