"""``frontier eval CHECKPOINT DATA.parquet`` (typer command function ``eval_command``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from verl_frontier.arguments import (
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    Kind,
    output_dir,
    parquet_with,
    reports_input_errors,
)

from .checkpoint import locate_checkpoint
from .core import DATA_ALTERNATIVES, DATA_COLUMNS, load_reward_fn


def _parse_checkpoint(value) -> Path:
    try:
        locate_checkpoint(value)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    return Path(value)


def _reward(value) -> str:
    load_reward_fn(value)
    return value


CHECKPOINT = Kind("checkpoint", _parse_checkpoint)
EVAL_DATA = parquet_with(*DATA_COLUMNS, alternatives=DATA_ALTERNATIVES)
REWARD = Kind("module:function", _reward)


@reports_input_errors(aliases={"data_parquet": "data", "out_dir": "out"})
def eval_command(
    checkpoint: Path = typer.Argument(
        ...,
        help="HF model dir, or a verl checkpoint (global_step_N, global_step_N/actor or the checkpoint root).",
        parser=CHECKPOINT.typer,
    ),
    data: Path = typer.Argument(
        ..., help="verl-format parquet (prompt, reward_model.ground_truth, data_source).", parser=EVAL_DATA.typer
    ),
    n: int = typer.Option(
        8, "--n", help="Samples per problem for pass@k (0: greedy only).", parser=NON_NEGATIVE_INT.typer
    ),
    k_max: int | None = typer.Option(
        None, "--k-max", help="Largest k for pass@k (default n; at most n).", parser=POSITIVE_INT.typer
    ),
    temperature: float = typer.Option(
        1.0, "--temperature", help="Sampling temperature (> 0).", parser=POSITIVE_FLOAT.typer
    ),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", parser=POSITIVE_INT.typer),
    greedy: bool = typer.Option(True, "--greedy/--no-greedy", help="Also measure greedy accuracy."),
    seed: int = typer.Option(0, "--seed", parser=SEED.typer),
    reward: str | None = typer.Option(
        None, "--reward", help="module:function (default: the tiny world's compute_score).", parser=REWARD.typer
    ),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N problems.", parser=POSITIVE_INT.typer),
    batch_size: int = typer.Option(256, "--batch-size", parser=POSITIVE_INT.typer),
    out: Path | None = typer.Option(
        None, "--out", help="Write eval.json and pass_at_k.png here (moved in when complete).", parser=output_dir.typer
    ),
) -> None:
    """Evaluate a checkpoint: greedy accuracy, pass@k, mean@k, response lengths; on ORBIT rows
    (agent_name orbit_agent): per-episode success, any-success and pass@k of n trials per task."""
    from .core import evaluate

    res = evaluate(
        checkpoint,
        data,
        n=n,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        seed=seed,
        k_max=k_max,
        reward=reward,
        out_dir=out,
        limit=limit,
        batch_size=batch_size,
    )
    brief = {
        k: res[k]
        for k in (
            "hf_dir",
            "num_problems",
            "greedy_accuracy",
            "greedy_mean_response_tokens",
            "pass_at_k",
            "mean_at_k",
            "frac_pass_rate_mixed",
            "episode_success",
            "any_success",
            "by_env",
            "seconds",
        )
        if k in res
    }
    typer.echo(json.dumps(brief, indent=2))
    if out is not None:
        typer.echo(f"wrote {out / 'eval.json'}")


def main() -> None:
    from verl_frontier.arguments import one_line_typer_classes

    _, command_cls = one_line_typer_classes()
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=command_cls)(eval_command)
    app(prog_name="frontier eval")
