"""``frontier eval CHECKPOINT DATA.parquet`` (typer command function ``eval_command``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def eval_command(
    checkpoint: Path = typer.Argument(
        ..., help="HF model dir, or a verl checkpoint (global_step_N, global_step_N/actor or the checkpoint root)."
    ),
    data: Path = typer.Argument(..., help="verl-format parquet (prompt, reward_model.ground_truth, data_source)."),
    n: int = typer.Option(8, "--n", help="Samples per problem for pass@k (0: greedy only)."),
    k_max: int | None = typer.Option(None, "--k-max", help="Largest k for pass@k (default n)."),
    temperature: float = typer.Option(1.0, "--temperature"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    greedy: bool = typer.Option(True, "--greedy/--no-greedy", help="Also measure greedy accuracy."),
    seed: int = typer.Option(0, "--seed"),
    reward: str | None = typer.Option(
        None, "--reward", help="module:function (default: the tiny world's compute_score)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N problems."),
    batch_size: int = typer.Option(256, "--batch-size"),
    out: Path | None = typer.Option(None, "--out", help="Write eval.json and pass_at_k.png here."),
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
    typer.run(eval_command)
