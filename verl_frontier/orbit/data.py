"""ORBIT data preparation: verl parquet rows, one per task seed.

    python -m verl_frontier.orbit.data --out DIR [--preset orbit|tiny] [--train-envs a:1,b:2] [--train-size N]
        [--val-envs maze,mastermind] [--val-seeds-per-env M] [--num-episodes 3] [--max-episodes K] ...

writes ``DIR/train.parquet`` and ``DIR/test.parquet``. Training rows are sampled across environments with
per-environment weights (multi-task sampling): each row draws an environment with probability
proportional to its weight and takes that environment's next unused seed. Validation rows are the first
``val_seeds_per_env`` seeds of each held-out environment (a seed range disjoint from training).

A row: ``data_source="orbit/<env>"``, ``agent_name="orbit_agent"``, ``prompt`` = [system prompt (if any),
the trial's first observation], ``extra_info`` = {env, seed, num_episodes, max_turns, max_episodes,
episode_header, env_kwargs (JSON), max_tokens_per_turn, split, index}; the agent loop rebuilds the trial
from ``extra_info`` (:func:`verl_frontier.orbit.multi_episode.build_trial`).

Presets: ``orbit`` (the paper's multi-task set: 5 training games, 512 seeds each, held-out Maze and
Mastermind, 256 seeds each, 3 episodes per trial) and ``tiny`` (guess-the-number 1..8 for the tiny world:
3 episodes of at most 4 turns, short headers, no system prompt, 12 tokens per model turn).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from .envs import HELDOUT_ENVS, TRAIN_ENVS, list_envs
from .multi_episode import DEFAULT_HEADER, SYSTEM_PROMPT, build_trial

AGENT_NAME = "orbit_agent"  # == verl_frontier.orbit.agent_loop.AGENT_NAME (no verl import here)
VAL_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class DataConfig:
    train_envs: dict[str, float]  # env -> sampling weight
    val_envs: tuple[str, ...]
    train_size: int
    val_seeds_per_env: int
    num_episodes: int = 3
    max_episodes: int | None = None
    episode_header: str = DEFAULT_HEADER
    system_prompt: str | None = SYSTEM_PROMPT
    max_tokens_per_turn: int = 4096
    env_kwargs: dict[str, dict] = field(default_factory=dict)
    seed: int = 0


PRESETS: dict[str, DataConfig] = {
    "orbit": DataConfig(
        train_envs={name: 1.0 for name in TRAIN_ENVS},
        val_envs=HELDOUT_ENVS,
        train_size=512 * len(TRAIN_ENVS),
        val_seeds_per_env=256,
    ),
    "tiny": DataConfig(
        train_envs={"guess_number": 1.0},
        val_envs=("guess_number",),
        train_size=256,
        val_seeds_per_env=16,
        num_episodes=3,
        max_episodes=3,
        episode_header="[Episode {k}]",
        system_prompt=None,
        max_tokens_per_turn=12,
        env_kwargs={"guess_number": {"low": 1, "high": 8}},
    ),
}


def parse_weights(spec: str) -> dict[str, float]:
    """``"a:2,b,c:0.5"`` -> {"a": 2.0, "b": 1.0, "c": 0.5}; raises ValueError for a weight that is not a
    finite number."""
    import math

    weights: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, w = part.partition(":")
        try:
            weight = float(w) if w.strip() else 1.0
        except ValueError:
            raise ValueError(f"the weight of {name.strip()!r} must be a number, got {w!r}") from None
        if not math.isfinite(weight):
            raise ValueError(f"the weight of {name.strip()!r} must be finite, got {w!r}")
        weights[name.strip()] = weight
    return weights


def _train_envs(value) -> dict[str, float]:
    weights = parse_weights(str(value))
    if not weights:
        raise ValueError(f"must be a comma list env[:weight], got {value!r}")
    _check_names(weights)
    _check_weights(weights)
    return weights


def _val_envs(value) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    if not names:
        raise ValueError(f"must be a comma list of environments, got {value!r}")
    _check_names(names)
    return names


def _check_names(names) -> None:
    known = list_envs()
    for name in names:
        if name not in known:
            raise ValueError(f"unknown environment {name!r}; known: {', '.join(known)}")


def _check_weights(weights: dict[str, float]) -> None:
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"train env weights must be >= 0 with a positive sum, got {weights}")


def _check(cfg: DataConfig) -> None:
    _check_names([*cfg.train_envs, *cfg.val_envs])
    _check_weights(cfg.train_envs)


def make_row(cfg: DataConfig, env: str, seed: int, split: str, index: int) -> dict:
    extra_info = {
        "env": env,
        "seed": int(seed),
        "num_episodes": cfg.num_episodes,
        "max_turns": None,
        "max_episodes": cfg.max_episodes,
        "episode_header": cfg.episode_header,
        "env_kwargs": json.dumps(cfg.env_kwargs.get(env, {}), sort_keys=True),
        "max_tokens_per_turn": cfg.max_tokens_per_turn,
        "split": split,
        "index": index,
    }
    trial, _ = build_trial(extra_info)
    extra_info["max_turns"] = trial.env.max_turns
    first_obs, _ = trial.reset(seed)
    prompt = ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + [
        {"role": "user", "content": first_obs}
    ]
    return {
        "data_source": f"orbit/{env}",
        "agent_name": AGENT_NAME,
        "prompt": prompt,
        "ability": "orbit",
        "reward_model": {"style": "rule", "ground_truth": ""},
        "extra_info": extra_info,
    }


def sample_train_tasks(cfg: DataConfig) -> list[tuple[str, int]]:
    """(env, seed) per training row: env ~ weights, seed = that env's next unused seed."""
    rng = random.Random(cfg.seed)
    names = [n for n, w in cfg.train_envs.items() if w > 0]
    weights = [cfg.train_envs[n] for n in names]
    next_seed = dict.fromkeys(names, 0)
    tasks = []
    for _ in range(cfg.train_size):
        env = rng.choices(names, weights=weights)[0]
        tasks.append((env, next_seed[env]))
        next_seed[env] += 1
    return tasks


def build_rows(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    _check(cfg)
    train = [make_row(cfg, env, seed, "train", i) for i, (env, seed) in enumerate(sample_train_tasks(cfg))]
    val_tasks = [(env, VAL_SEED_OFFSET + s) for env in cfg.val_envs for s in range(cfg.val_seeds_per_env)]
    val = [make_row(cfg, env, seed, "test", i) for i, (env, seed) in enumerate(val_tasks)]
    return train, val


def write(cfg: DataConfig, out: Path) -> dict[str, Path]:
    """``out/train.parquet`` and ``out/test.parquet``, written next to ``out`` and moved in when both are
    complete."""
    from verl_frontier.arguments import atomic_dir, write_parquet_atomic

    out = Path(out)
    train, val = build_rows(cfg)
    with atomic_dir(out) as tmp:
        write_parquet_atomic(train, tmp / "train.parquet")
        write_parquet_atomic(val, tmp / "test.parquet")
    return {"train": out / "train.parquet", "test": out / "test.parquet"}


def main(argv: list[str] | None = None) -> dict[str, Path]:
    from verl_frontier.arguments import POSITIVE_INT, SEED, ArgumentParser, Kind, choice, output_dir

    p = ArgumentParser(prog="python -m verl_frontier.orbit.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=output_dir, help="output directory (train.parquet, test.parquet)")
    p.add_argument("--preset", type=choice(*sorted(PRESETS)), default="orbit")
    p.add_argument(
        "--train-envs",
        type=Kind("env[:weight],...", _train_envs),
        help="comma list env[:weight], e.g. 'wordle:2,hangman'",
    )
    p.add_argument("--val-envs", type=Kind("env,...", _val_envs), help="comma list of held-out envs")
    p.add_argument("--train-size", type=POSITIVE_INT)
    p.add_argument("--val-seeds-per-env", type=POSITIVE_INT)
    p.add_argument("--num-episodes", type=POSITIVE_INT)
    p.add_argument(
        "--max-episodes", type=POSITIVE_INT, help="stop a trial after K episodes (default: step budget only)"
    )
    p.add_argument("--max-tokens-per-turn", type=POSITIVE_INT)
    p.add_argument("--seed", type=SEED)
    args = p.parse_args(argv)
    cfg = PRESETS[args.preset]
    changes = {}
    if args.train_envs:
        changes["train_envs"] = args.train_envs
    if args.val_envs:
        changes["val_envs"] = args.val_envs
    for key in ("train_size", "val_seeds_per_env", "num_episodes", "max_episodes", "max_tokens_per_turn", "seed"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    cfg = replace(cfg, **changes)
    paths = write(cfg, args.out)
    print(f"wrote {paths['train']} and {paths['test']}")
    return paths


if __name__ == "__main__":
    main()
