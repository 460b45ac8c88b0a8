"""SLM compression after distillation (arXiv 2502.14305): structured pruning, re-distillation, weight-only int8.

``prune`` (MLP channels + attention KV groups by importance, pure torch), ``quantize`` (torchao through
transformers' ``TorchAoConfig``), ``measure`` (parameters, on-disk size, CPU latency, accuracy). Re-distillation is
verl's own on-policy distillation (``recipes/slm_compress``). CLI: ``python -m verl_frontier.slm_compress --help``.
"""

from .prune import PruneConfigError, PruneSpec, prune_checkpoint, prune_model
from .quantize import QuantizeConfigError, quantize_checkpoint

__all__ = [
    "PruneConfigError",
    "PruneSpec",
    "QuantizeConfigError",
    "prune_checkpoint",
    "prune_model",
    "quantize_checkpoint",
]
