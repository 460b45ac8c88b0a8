"""The offline dataset of teacher-written reasoning for Distilling the Essence.

    python -m verl_frontier.essence.data --teacher TEACHER_DIR --data train.parquet --out DIR [--num 2048]
    python -m verl_frontier.essence.data --from-field extra_info.reference --data train.parquet --out DIR
    python -m verl_frontier.essence.data --agent teacher_replay ...   # plain sequence-level KD rows

writes ``DIR/train.parquet``: the input rows (verl format: ``data_source``, ``prompt`` chat messages,
``reward_model``, ``extra_info``) with ``agent_name`` = the replay agent loop (``essence_replay``, default:
the Essence segment mask and truncation; ``teacher_replay``: the whole response, verl_frontier.kd.replay) and,
in ``extra_info``,
``teacher_response`` (the text the actor is trained on) and ``teacher_score`` (its reward). With
``--teacher`` the responses are the teacher's greedy generations (HF ``generate``), scored with the reward
function, and only correct ones are kept unless ``--keep-incorrect`` (rejection sampling, as the distilled
reasoning datasets Bespoke-Stratos / OpenThoughts are built); with ``--from-field`` they are read from a
column or an ``extra_info`` key of a dataset that already ships teacher reasoning. ``DIR/stats.json`` has
the counts. Files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import numpy as np

from verl_frontier.evaluation.core import _score, load_reward_fn, load_rows
from verl_frontier.studies import write_json_atomic

REPLAY_AGENT = "essence_replay"  # = agent_loop.REPLAY_AGENT (no verl import here)
TEACHER_REPLAY_AGENT = "teacher_replay"  # = verl_frontier.kd.replay.REPLAY_AGENT
#: the agent loops that replay these rows
REPLAY_AGENTS = (REPLAY_AGENT, TEACHER_REPLAY_AGENT)


def replay_row(row: dict, response: str, score: float, agent: str = REPLAY_AGENT) -> dict:
    """One verl row for the replay agent loop ``agent``."""
    extra = dict(row.get("extra_info") or {})
    extra.update(teacher_response=response, teacher_score=float(score))
    return {**row, "agent_name": agent, "extra_info": extra}


def field_value(row: dict, field: str):
    """``a.b`` -> row["a"]["b"]; raises KeyError naming the field and the row index."""
    value = row
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            index = (row.get("extra_info") or {}).get("index", "?")
            raise KeyError(f"row {index}: no field {field!r} (missing {part!r})")
        value = value[part]
    return value


def write_parquet_atomic(rows: list[dict], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def teacher_responses(teacher: str | Path, rows: list[dict], max_new_tokens: int, batch_size: int) -> list[str]:
    """The teacher's greedy response to every row's prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verl_frontier.evaluation.generate import generate

    tokenizer = AutoTokenizer.from_pretrained(teacher)
    model = AutoModelForCausalLM.from_pretrained(teacher, torch_dtype=torch.float32)
    out = generate(
        model, tokenizer, [r["prompt"] for r in rows], greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return [o[0]["text"] for o in out]


def build(
    data: str | Path,
    out: str | Path,
    *,
    teacher: str | Path | None = None,
    from_field: str | None = None,
    num: int | None = None,
    seed: int = 0,
    reward: str | None = None,
    keep_incorrect: bool = False,
    max_new_tokens: int = 256,
    batch_size: int = 256,
    agent: str = REPLAY_AGENT,
) -> dict:
    if agent not in REPLAY_AGENTS:
        raise ValueError(f"--agent must be one of {list(REPLAY_AGENTS)}, got {agent!r}")
    if (teacher is None) == (from_field is None):
        raise ValueError("give exactly one of --teacher (generate) or --from-field (read responses)")
    if num is not None and num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    rows = load_rows(data)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    rows = [rows[i] for i in order[: num or len(rows)]]
    if teacher is not None:
        texts = teacher_responses(teacher, rows, max_new_tokens, batch_size)
    else:
        texts = [str(field_value(r, from_field)) for r in rows]
    reward_fn = load_reward_fn(reward)
    scores = [_score(reward_fn, r, t) for r, t in zip(rows, texts, strict=True)]
    kept = [replay_row(r, t, s, agent) for r, t, s in zip(rows, texts, scores, strict=True) if keep_incorrect or s > 0]
    if not kept:
        raise RuntimeError(f"no teacher response scored > 0 on {len(rows)} rows of {data}; nothing to distill")
    out = Path(out)
    write_parquet_atomic(kept, out / "train.parquet")
    stats = {
        "source": str(data),
        "teacher": str(teacher) if teacher is not None else None,
        "from_field": from_field,
        "rows": len(rows),
        "kept": len(kept),
        "teacher_accuracy": float(np.mean([s > 0 for s in scores])),
        "mean_response_chars": float(np.mean([len(t) for t in texts])),
    }
    write_json_atomic(out / "stats.json", stats)
    return stats


#: teacher-response datasets written into a tiny world: subdirectory -> (the world parquet whose prompts they
#: answer, the agent loop that replays them)
WORLD_TEACHER_DATA = {
    "essence": ("data/train_verbose.parquet", REPLAY_AGENT),
    "kd_concise": ("data/train.parquet", TEACHER_REPLAY_AGENT),
}


def ensure_world_teacher_data(world: str | Path, name: str, num: int = 6000, keep_incorrect: bool = False) -> Path:
    """``<world>/<name>/train.parquet``: the world teacher's greedy, correct responses to ``num`` training prompts
    (``essence``: verbose style, ``kd_concise``: concise), written once and reused. ``keep_incorrect`` keeps
    wrong answers too (the small test world's teacher is barely trained). An existing file whose rows name
    another replay agent loop gets its ``agent_name`` column rewritten (the responses are kept)."""
    if name not in WORLD_TEACHER_DATA:
        raise KeyError(f"unknown world teacher dataset {name!r}; known: {sorted(WORLD_TEACHER_DATA)}")
    source, agent = WORLD_TEACHER_DATA[name]
    world = Path(world)
    path = world / name / "train.parquet"
    if not path.exists():
        build(
            world / source,
            world / name,
            teacher=world / "teacher",
            num=num,
            seed=0,
            keep_incorrect=keep_incorrect,
            agent=agent,
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if set(table.column("agent_name").to_pylist()) != {agent}:
            at = table.schema.get_field_index("agent_name")
            table = table.set_column(at, "agent_name", pa.array([agent] * table.num_rows, pa.string()))
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            pq.write_table(table, tmp)
            os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m verl_frontier.essence.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="verl parquet with the prompts (and ground truth)")
    p.add_argument("--out", required=True, help="output directory (train.parquet, stats.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", help="HF model dir: its greedy generations are the responses")
    src.add_argument("--from-field", help="column or extra_info key holding ready responses, e.g. extra_info.reference")
    p.add_argument("--num", type=int, default=None, help="prompts to use (a seeded shuffle; default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", default=None, help="module:function (default: the tiny world's compute_score)")
    p.add_argument("--keep-incorrect", action="store_true", help="keep responses that score 0")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--agent", choices=REPLAY_AGENTS, default=REPLAY_AGENT, help="agent loop that replays the rows")
    a = p.parse_args(argv)
    stats = build(
        a.data,
        a.out,
        teacher=a.teacher,
        from_field=a.from_field,
        num=a.num,
        seed=a.seed,
        reward=a.reward,
        keep_incorrect=a.keep_incorrect,
        max_new_tokens=a.max_new_tokens,
        batch_size=a.batch_size,
        agent=a.agent,
    )
    print(json.dumps(stats, indent=2))
    return stats


if __name__ == "__main__":
    main()
