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

import json
import random
from pathlib import Path

import numpy as np

from verl_frontier.arguments import InputError, atomic_dir, write_atomic, write_parquet_atomic
from verl_frontier.evaluation.core import _score, check_rows, load_reward_fn, load_rows
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


class MissingField(KeyError):
    """A row without the ``--from-field`` field."""

    def __str__(self) -> str:
        return str(self.args[0])


def field_value(row: dict, field: str):
    """``a.b`` -> row["a"]["b"]; raises KeyError (:class:`MissingField`) naming the field and the row index."""
    value = row
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            index = (row.get("extra_info") or {}).get("index", "?")
            raise MissingField(f"row {index}: no field {field!r} (missing {part!r})")
        value = value[part]
    return value


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
    """Write ``out/train.parquet`` (the kept rows) and ``out/stats.json``, moved into ``out`` when both are complete.
    A bad argument, or a data file whose rows do not fit, raises :class:`InputError` naming the argument
    (a row without ``from_field``: :class:`MissingField`) before the teacher is loaded or anything is
    written."""
    if agent not in REPLAY_AGENTS:
        raise InputError("agent", f"must be one of {', '.join(REPLAY_AGENTS)}, got {agent!r}")
    if (teacher is None) == (from_field is None):
        raise InputError("teacher", "give exactly one of --teacher (generate) or --from-field (read responses)")
    for name, value in (("num", num), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(name, f"must be an integer >= 1, got {value!r}")
    try:
        reward_fn = load_reward_fn(reward)
    except ValueError as exc:
        raise InputError("reward", str(exc)) from None
    rows = load_rows(data)
    if not rows:
        raise InputError("data", f"{data} has no rows")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    rows = [rows[i] for i in order[: num or len(rows)]]
    check_rows(rows, "data")
    if teacher is not None:
        texts = teacher_responses(teacher, rows, max_new_tokens, batch_size)
    else:
        texts = [str(field_value(r, from_field)) for r in rows]
    scores = [_score(reward_fn, r, t) for r, t in zip(rows, texts, strict=True)]
    kept = [replay_row(r, t, s, agent) for r, t, s in zip(rows, texts, scores, strict=True) if keep_incorrect or s > 0]
    if not kept:
        source = "teacher" if teacher is not None else "from_field"
        raise InputError(
            source,
            f"no response scored > 0 on {len(rows)} rows of {data}; nothing to distill (--keep-incorrect keeps them)",
        )
    stats = {
        "source": str(data),
        "teacher": str(teacher) if teacher is not None else None,
        "from_field": from_field,
        "rows": len(rows),
        "kept": len(kept),
        "teacher_accuracy": float(np.mean([s > 0 for s in scores])),
        "mean_response_chars": float(np.mean([len(t) for t in texts])),
    }
    with atomic_dir(out) as tmp:
        write_parquet_atomic(kept, tmp / "train.parquet")
        write_json_atomic(tmp / "stats.json", stats)
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
            write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    return path


def _hf_model_dir(value) -> Path:
    from verl_frontier.arguments import existing_dir

    path = existing_dir.parse(value)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face model directory (no config.json)")
    return path


def _reward_spec(value) -> str:
    load_reward_fn(value)
    return value


#: build()'s argument -> the command-line option
OPTIONS = {"data": "--data", "out": "--out", "teacher": "--teacher", "from_field": "--from-field", "num": "--num",
           "reward": "--reward", "max_new_tokens": "--max-new-tokens", "batch_size": "--batch-size",
           "agent": "--agent"}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    from verl_frontier.arguments import POSITIVE_INT, SEED, ArgumentParser, Kind, choice, output_dir, parquet_with

    p = ArgumentParser(prog="python -m verl_frontier.essence.data", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        required=True,
        type=parquet_with("prompt", "reward_model"),
        help="verl parquet with the prompts (and ground truth)",
    )
    p.add_argument("--out", required=True, type=output_dir, help="output directory (train.parquet, stats.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--teacher",
        type=Kind("model dir", _hf_model_dir),
        help="HF model dir: its greedy generations are the responses",
    )
    src.add_argument("--from-field", help="column or extra_info key holding ready responses, e.g. extra_info.reference")
    p.add_argument("--num", type=POSITIVE_INT, default=None, help="prompts to use (a seeded shuffle; default all)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--reward",
        type=Kind("module:function", _reward_spec),
        default=None,
        help="module:function (default: the tiny world's compute_score)",
    )
    p.add_argument("--keep-incorrect", action="store_true", help="keep responses that score 0")
    p.add_argument("--max-new-tokens", type=POSITIVE_INT, default=256)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=256)
    p.add_argument(
        "--agent", type=choice(*REPLAY_AGENTS), default=REPLAY_AGENT, help="agent loop that replays the rows"
    )
    a = p.parse_args(argv)
    if a.from_field is not None and not a.from_field.strip(". "):
        p.error(f"argument --from-field: must name a column or a.b key, got {a.from_field!r}")
    try:
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
    except InputError as exc:
        p.error(f"argument {OPTIONS.get(exc.name, exc.name)}: {exc.message}")
    except MissingField as exc:
        p.error(f"argument --from-field: {exc}")
    print(json.dumps(stats, indent=2))
    return stats


if __name__ == "__main__":
    main()
