"""A second, larger held-out set of a tiny world, for final evaluations that need statistical power.

``data/test.parquet`` (415 problems in the full world) is what verl validates on during training, so arms and
settings get chosen by it; and its k = 2 cell has few distinct expressions. ``heldout/test.parquet`` is a
fresh sample of the *test side* of the split (``tasks.is_test_problem``: never a training expression) that
shares no expression with ``data/test.parquet``: up to ``rows_per_cell`` distinct problems per (k, d) cell,
concise style, deterministic from the world's seed. It is a derived artifact (like ``kd_concise/``): written
once per world and size, atomically, and not part of the world's manifest or hashes.

    python -m verl_frontier.tinyworld heldout [--rows-per-cell 400]
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from . import tasks
from .builder import SIZES, sha256_file, write_parquet

HELDOUT_DIR = "heldout"
ATTEMPTS_PER_ROW = 200  # rejection sampling; small cells (k = 2) run out of unused test-side expressions


def heldout_problems(
    cells: list[tuple[int, int]], rows_per_cell: int, seed: int, exclude: set[str]
) -> list[tasks.Problem]:
    """Up to ``rows_per_cell`` distinct test-side problems per ``(num_operands, digits)`` cell, none of whose
    expressions is in ``exclude``; cell by cell, in sampling order."""
    rng = random.Random(f"tinyworld-heldout-{seed}")
    problems = []
    for k, d in cells:
        seen = set(exclude)
        got = 0
        for _ in range(rows_per_cell * ATTEMPTS_PER_ROW):
            if got >= rows_per_cell:
                break
            p = tasks.sample_problem(rng, k, d)
            if p.expression in seen or not tasks.is_test_problem(p.expression):
                continue
            seen.add(p.expression)
            problems.append(p)
            got += 1
    return problems


def ensure_heldout(world: str | Path, rows_per_cell: int = 400) -> Path:
    """``<world>/heldout/test.parquet`` (rewritten when ``rows_per_cell`` or the world's
    ``data/test.parquet`` changed; see the module docstring). ``heldout/`` is written next to its place and
    renamed in when complete, replacing an older one as a whole."""
    import pyarrow.parquet as pq

    from verl_frontier.arguments import building_dir
    from verl_frontier.studies import write_json_atomic

    world = Path(world)
    manifest_path = world / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no tiny world at {world} (run `frontier world build`)")
    if rows_per_cell < 1:
        raise ValueError(f"rows_per_cell must be >= 1, got {rows_per_cell}")
    out = world / HELDOUT_DIR
    path, stats_path = out / "test.parquet", out / "stats.json"
    test_path = world / "data" / "test.parquet"
    key = {"rows_per_cell": rows_per_cell, "test_sha256": sha256_file(test_path)}  # a rebuilt world: rewrite
    if path.exists() and stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if all(stats.get(k) == v for k, v in key.items()):
            return path
    manifest = json.loads(manifest_path.read_text())
    cells = [tuple(c) for c in SIZES[manifest["size"]].cells]
    test = pq.read_table(test_path, columns=["extra_info"]).to_pylist()
    exclude = {row["extra_info"]["expression"] for row in test}
    problems = heldout_problems(cells, rows_per_cell, manifest["seed"], exclude)
    rows = [tasks.make_row(p, "concise", "heldout", i) for i, p in enumerate(problems)]
    per_cell = Counter(f"k{p.num_operands}_d{p.digits}" for p in problems)
    stats = {**key, "rows": len(rows), "per_cell": dict(per_cell), "seed": manifest["seed"]}
    with building_dir(out) as tmp:  # both files, renamed into place together
        write_parquet(rows, tmp / path.name)
        write_json_atomic(tmp / stats_path.name, stats)
    return path
