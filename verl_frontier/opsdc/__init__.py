"""OPSDC / CRISP: on-policy self-distillation for reasoning compression (arXiv 2603.05433).

The student pi_theta(.|x) samples y; a frozen copy of itself conditioned on a conciseness instruction,
pi_theta_bar(.|x, c), scores the same response ids; the loss is the per-token reverse KL over the full
vocabulary. The teacher copy is refreshed from the student every M steps.

* :mod:`.teacher_inputs` builds the re-prompted teacher sequences and the realignment index maps (pure);
* :mod:`.losses` the per-token divergences (full vocabulary and top-k, via :mod:`verl_frontier.kd`);
* :mod:`.sync` the teacher refresh schedule and the weight copy (pure torch);
* :mod:`.verl_plugin` the verl 0.9.1 glue.
"""
