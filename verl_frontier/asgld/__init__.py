"""ASGLD: adaptive stochastic gradient Langevin dynamics optimizers (arXiv 1805.09416), usable as verl's actor
optimizer through verl's own config: ``optim.optimizer_impl=verl_frontier.asgld.optimizers optim.optimizer=ASGLD``.
"""

from verl_frontier.asgld.optimizers import AGLD, ASG, ASGLD, AdaptiveLangevin

__all__ = ["AGLD", "ASG", "ASGLD", "AdaptiveLangevin"]
