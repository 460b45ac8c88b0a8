"""Evaluation of a checkpoint on ORBIT trials (``frontier eval CHECKPOINT orbit_test.parquet`` dispatches here
when the rows' ``agent_name`` is ``orbit_agent``).

Each row (written by ``verl_frontier.orbit.data``) is played ``n`` times with HF ``generate`` (temperature
0.6 / top-p 1 by default, ORBIT's evaluation temperature), turn by turn, all active trials batched per turn:
the chat is re-rendered with the tokenizer's chat template, each model turn is capped at the row's
``max_tokens_per_turn``, the action goes through the same :class:`MultiEpisodeEnv` as in training. A trial
whose context would exceed ``max_context`` tokens stops there (the running episode counts as failed).

Reported per environment (``by_env``), for held-out environments together (``heldout``) and overall:
success rate of episodes 1..K, any-success, mean number of successes, and pass@k over the n trials of a seed
(a trial passes when any episode succeeded; unbiased estimator of Chen et al.).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from verl_frontier.arguments import savefig_atomic, write_text_atomic
from verl_frontier.evaluation.passk import counts_from_scores, pass_at_k_curve

from .envs import HELDOUT_ENVS
from .multi_episode import build_trial

AGENT_NAME = "orbit_agent"


def is_orbit_rows(rows: list[dict]) -> bool:
    return bool(rows) and all(r.get("agent_name") == AGENT_NAME for r in rows)


def play(
    model, tokenizer, rows: list[dict], n: int, temperature: float, seed: int, max_context: int, batch_size: int
) -> list[list[dict]]:
    """Per row, the metrics of its n trials (:meth:`MultiEpisodeEnv.metrics`, plus ``overflow``)."""
    from verl_frontier.evaluation.generate import encode_prompts, generate

    trials = []
    for index, row in enumerate(rows):
        for _ in range(n):
            trial, trial_seed = build_trial(row["extra_info"])
            first, _ = trial.reset(trial_seed)
            system = [dict(m) for m in row["prompt"] if m.get("role") == "system"]
            cap = int(row["extra_info"].get("max_tokens_per_turn") or 256)
            trials.append({"row": index, "trial": trial, "messages": [*system, {"role": "user", "content": first}],
                           "cap": cap, "done": False, "overflow": False})  # fmt: skip
    turn = 0
    while True:
        active = [t for t in trials if not t["done"]]
        if not active:
            break
        for t in active:  # a context that cannot hold another turn ends the trial
            if len(encode_prompts(tokenizer, [t["messages"]])[0]) + t["cap"] > max_context:
                t["done"] = t["overflow"] = True
        active = [t for t in active if not t["done"]]
        for cap in sorted({t["cap"] for t in active}):
            group = [t for t in active if t["cap"] == cap]
            outs = generate(
                model,
                tokenizer,
                [t["messages"] for t in group],
                n=1,
                greedy=temperature == 0,
                temperature=temperature or 1.0,
                max_new_tokens=cap,
                batch_size=batch_size,
                seed=seed * 1000 + turn,
            )
            for t, out in zip(group, outs, strict=True):
                text = out[0]["text"]
                obs, _, terminated, truncated, _ = t["trial"].step(text)
                t["messages"] += [{"role": "assistant", "content": text}, {"role": "user", "content": obs}]
                t["done"] = terminated or truncated
        turn += 1
    per_row: list[list[dict]] = [[] for _ in rows]
    for t in trials:
        metrics = t["trial"].metrics()
        metrics["overflow"] = float(t["overflow"])
        per_row[t["row"]].append(metrics)
    return per_row


def summarize(per_row: list[list[dict]], k_max: int | None = None) -> dict:
    flat = [m for trials in per_row for m in trials]
    if not flat:
        return {"num_tasks": 0}
    episodes = sorted(int(k.split("_")[1]) for k in flat[0] if k.startswith("episode_") and k.endswith("_success"))
    mean = lambda key: sum(m[key] for m in flat) / len(flat)  # noqa: E731
    counts = counts_from_scores([[m["any_success"] for m in trials] for trials in per_row])
    n = min(len(trials) for trials in per_row)
    return {
        "num_tasks": len(per_row),
        "trials_per_task": n,
        "episode_success": {str(k): mean(f"episode_{k}_success") for k in episodes},
        "any_success": mean("any_success"),
        "mean_success_count": mean("success_count"),
        "invalid_actions_per_trial": mean("invalid_actions"),
        "overflow_rate": mean("overflow"),
        "pass_at_k": {str(k): v for k, v in pass_at_k_curve(counts, min(k_max or n, n)).items()},
    }


def evaluate_orbit(
    model,
    tokenizer,
    rows: list[dict],
    n: int = 4,
    temperature: float = 0.6,
    seed: int = 0,
    k_max: int | None = None,
    max_context: int | None = None,
    batch_size: int = 256,
) -> dict:
    start = time.perf_counter()
    max_context = max_context or int(getattr(model.config, "max_position_embeddings", 4096))
    per_row = play(model, tokenizer, rows, max(1, n), temperature, seed, max_context, batch_size)
    envs = [str(r["extra_info"]["env"]) for r in rows]
    groups = defaultdict(list)
    for env, trials in zip(envs, per_row, strict=True):
        groups[env].append(trials)
    heldout = [trials for env, trials in zip(envs, per_row, strict=True) if env in HELDOUT_ENVS]
    result = {
        "kind": "orbit",
        "n": n,
        "temperature": temperature,
        **summarize(per_row, k_max),
        "by_env": {env: summarize(trials, k_max) for env, trials in sorted(groups.items())},
        "seconds": round(time.perf_counter() - start, 2),
    }
    if heldout:
        result["heldout"] = summarize(heldout, k_max)
    return result


def plot_episode_success(result: dict, path: str | Path) -> None:
    """Success rate by episode index, one line per environment (and overall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, summary in [("all", result), *sorted(result["by_env"].items())]:
        xs = [int(k) for k in summary["episode_success"]]
        ax.plot(xs, list(summary["episode_success"].values()), marker="o", label=name, lw=2.5 if name == "all" else 1)
    ax.set_xlabel("episode index within the trial")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    ax.set_title(f"ORBIT evaluation (n = {result['n']}, T = {result['temperature']})")
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {"json": out / "eval.json", "png": out / "episode_success.png"}
    write_text_atomic(paths["json"], json.dumps(result, indent=2))
    plot_episode_success(result, paths["png"])
    return paths
