"""Which rows of a training step are on-policy (the student samples) and which replay the teacher.

Rule (deterministic; no state, no random generator):

1. Rows are grouped by prompt (``uid``: the legacy trainer repeats a prompt ``rollout.n`` times with one uid;
   the v1 trainer runs the n rollouts of one row together), so all rollouts of a prompt take the same side.
2. Each group gets a key: the first 8 bytes of BLAKE2b over ``(seed, step, row id)``, where the row id is the
   dataset's ``index`` (``extra_info.index``; verl's uids are random per launch, so they would make a
   lambda in (0, 1) differ between two launches of the same config); ties (and rows without an index) are
   broken by the group's first position in the batch.
3. Sorting the groups by key is the step's permutation; its first ``k = floor(lambda * G + 1/2)`` groups (G
   groups in the batch, lambda = :meth:`GkdConfig.lambda_at` of the step) are on-policy.

So lambda = 0 gives no on-policy row and lambda = 1 gives all of them (exactly offline KD / on-policy
distillation), each step's share is k / G (the closest achievable to lambda), and the same step of the same
data gives the same rows in every launch. No torch or verl imports here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from verl_frontier.gkd.config import GkdConfig


def on_policy_count(lmbda: float, groups: int) -> int:
    """``floor(lmbda * groups + 1/2)`` (round half up), clipped to ``[0, groups]``."""
    if not 0.0 <= lmbda <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lmbda!r}")
    return min(groups, max(0, math.floor(lmbda * groups + 0.5)))


def group_key(seed: int, step: int | None, row_id) -> int:
    """The permutation key of one prompt group (see the module docstring)."""
    text = f"{int(seed)}|{-1 if step is None else int(step)}|{row_id}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def on_policy_mask(
    step: int | None,
    settings: GkdConfig,
    uids: Sequence | None = None,
    row_ids: Sequence | None = None,
    num_rows: int | None = None,
) -> list[bool]:
    """Per row: True where the student samples (on-policy), False where the teacher's response is replayed.

    Args:
        step: the global training step (1-based) the rows are generated for.
        settings: the ``algorithm.gkd`` settings (lambda, cold start, seed).
        uids: per row, its prompt group (rows with the same uid take the same side); default: each row alone.
        row_ids: per row, the stable id mixed into the key (the dataset index); default: none (position only).
        num_rows: the number of rows when neither ``uids`` nor ``row_ids`` is given.
    """
    n = len(uids) if uids is not None else len(row_ids) if row_ids is not None else num_rows
    if n is None:
        raise ValueError("on_policy_mask needs uids, row_ids or num_rows")
    if uids is not None and len(uids) != n or row_ids is not None and len(row_ids) != n:
        raise ValueError("uids and row_ids must have one entry per row")
    first: dict = {}  # group -> position of its first row
    for i in range(n):
        first.setdefault(str(uids[i]) if uids is not None else i, i)
    lmbda = settings.lambda_at(step)
    k = on_policy_count(lmbda, len(first))
    if k == 0:
        return [False] * n
    if k == len(first):
        return [True] * n
    order = sorted(
        first.items(),
        key=lambda item: (group_key(settings.seed, step, row_ids[item[1]] if row_ids is not None else ""), item[1]),
    )
    chosen = {group for group, _ in order[:k]}
    return [(str(uids[i]) if uids is not None else i) in chosen for i in range(n)]
