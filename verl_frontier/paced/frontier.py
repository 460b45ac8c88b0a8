"""Compute only on the frontier: skip the teacher and the backward pass for prompts whose Paced weight is 0.

With α, β > 0, w(p) = p^α (1−p)^β is 0 for a prompt the student always solves (p = 1) or never solves
(p = 0); such a prompt's rollouts contribute exactly nothing to Σ_i w_i ℓ_i / Σ_i w_i. Two places can save
their cost (pure Python/torch here; the verl glue is in verl_plugin.py):

* before the teacher: :class:`GroupScoreGate` holds each rollout of a prompt group, after it is scored,
  until every rollout of the group is scored, then says whether the group's weight is 0, so the teacher
  (a large model's forward pass per rollout) is not queried for it;
* before the backward pass: :func:`frontier_rows` picks the rows to keep: every row of a weight > 0 group,
  plus the fewest zero-weight groups needed so the batch still splits into the same number of mini-batches
  (the same number of optimizer steps) with rows divisible by the data-parallel world size (times the
  micro-batch size when that is fixed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from verl_frontier.paced.weights import beta_kernel_weight


def group_has_zero_weight(scores: Sequence[float | None], threshold: float, alpha: float, beta: float) -> bool:
    """w(p) == 0 for the group's pass rate p = mean(score > threshold). A missing score (None) -> False:
    without every score the weight is unknown, so the group is kept."""
    if not scores or any(score is None for score in scores):
        return False
    p = sum(float(score) > threshold for score in scores) / len(scores)
    return bool(beta_kernel_weight(torch.tensor([p], dtype=torch.float64), alpha, beta)[0] == 0)


@dataclass
class _Group:
    size: int
    decide: Callable[[list], bool]
    scores: list = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    zero_weight: bool = False


class GroupScoreGate:
    """Barrier per prompt group inside one event loop (one agent-loop worker).

    ``expect(uid, size, decide)`` announces a group of ``size`` rollouts that all run in this worker;
    ``await arrive(uid, score)`` records one rollout's score and returns, once all ``size`` scores are in,
    ``decide(scores)`` (True: the group has weight 0). A rollout of an unannounced group returns False at
    once (kept), so the gate can never block a rollout it was not told about.
    """

    def __init__(self) -> None:
        self._groups: dict[Hashable, _Group] = {}

    def expect(self, uid: Hashable, size: int, decide: Callable[[list], bool]) -> None:
        if size < 1:
            raise ValueError(f"group size must be >= 1, got {size}")
        self._groups[uid] = _Group(size=size, decide=decide)

    async def arrive(self, uid: Hashable, score: float | None) -> bool:
        group = self._groups.get(uid)
        if group is None:
            return False
        group.scores.append(score)
        if len(group.scores) == group.size:
            group.zero_weight = bool(group.decide(list(group.scores)))
            group.done.set()
            del self._groups[uid]  # finished: arrivals beyond the announced size are treated as unannounced
        else:
            await group.done.wait()
        return group.zero_weight

    def pending(self) -> int:
        return len(self._groups)


def frontier_rows(
    row_weights: torch.Tensor, group_ids, num_mini_batches: int, world_size: int
) -> tuple[np.ndarray, int]:
    """Rows to keep for the backward pass.

    Args:
        row_weights: (bs,) each row's Paced weight (all rows of a group share it).
        group_ids: (bs,) the rows' prompt-group ids.
        num_mini_batches: the step's number of mini-batches (optimizer steps), kept unchanged.
        world_size: every mini-batch's row count must divide by it: the data-parallel ranks, times the
            micro-batch size per rank when the actor uses a fixed one (verl asserts both).

    Returns:
        (row indices in their original order, rows per mini-batch). Groups whose rows all have weight 0 are
        dropped, except the fewest (first in batch order) needed so that the kept group count g satisfies
        g >= num_mini_batches, g % num_mini_batches == 0 and (g / num_mini_batches) * n % world_size == 0
        (n rows per group). Unequal group sizes: nothing is dropped.
    """
    if num_mini_batches < 1 or world_size < 1:
        raise ValueError(f"num_mini_batches and world_size must be >= 1, got {num_mini_batches}, {world_size}")
    ids = np.asarray(group_ids, dtype=object).astype(str)
    order, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(order))
    total = len(ids)
    if len(counts) == 0 or (counts != counts[0]).any():
        return np.arange(total), total // max(num_mini_batches, 1)
    n = int(counts[0])
    group_live = np.zeros(len(order), dtype=bool)
    np.logical_or.at(group_live, inverse, (row_weights > 0).cpu().numpy())
    first_row = np.full(len(order), total)
    np.minimum.at(first_row, inverse, np.arange(total))
    live = [g for g in np.argsort(first_row) if group_live[g]]
    dead = [g for g in np.argsort(first_row) if not group_live[g]]
    groups_total = len(order)
    keep = max(len(live), num_mini_batches)
    while keep < groups_total and (keep % num_mini_batches or (keep // num_mini_batches * n) % world_size):
        keep += 1
    chosen = set(live) | set(dead[: keep - len(live)])
    rows = np.flatnonzero(np.isin(inverse, list(chosen)))
    return rows, len(rows) // num_mini_batches
