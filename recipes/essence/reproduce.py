"""Distilling the Essence in the tiny world, through verl's real trainer on CPU: how much of full-sequence
KD's accuracy does training on only the first r of each sequence keep, at what share of the training time;
and CoT-only KD vs full-sequence KD.

Data: the tiny teacher's greedy verbose reasoning on 6,000 training prompts, correct answers only
(``python -m verl_frontier.essence.data``, written into the world). Every arm trains the tiny student with
``essence_tiny`` (lam = 0.5 CE + forward KL over the full 102-token vocabulary, lr 3e-3, batch 64) for the same
number of steps; held-out greedy accuracy on all 415 verbose test problems before and after training.
Training time = verl's ``timing_s/step`` summed over the training steps (teacher scoring, log-probs, update;
start-up and validation excluded) and ``timing_s/update_actor`` (the student's forward/backward) alone.

    python recipes/essence/reproduce.py [--seeds 0] [--steps 96] [--out outputs/essence_study] [hydra overrides...]

Writes ``<out>/results.json`` (resumable), prints a markdown table, saves ``recipes/essence/essence_tiny_world.png``
and ``recipes/essence/results.json``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, savefig_atomic
from verl_frontier.essence.data import ensure_world_teacher_data
from verl_frontier.studies import Arm, Study, full_world, publish_results, run_study, study_parser

TIME_KEYS = ("timing_s/step", "timing_s/update_actor", "actor/essence/trained_tokens", "response_length/mean")
RATIOS = (1.0, 0.75, 0.5, 0.25)
FULL = "[prompt,cot,answer]"


def arms() -> list[Arm]:
    chosen = [
        Arm(
            f"full_r{r}",
            "essence",
            "essence_tiny",
            [f"actor_rollout_ref.essence.segments={FULL}", f"actor_rollout_ref.essence.truncate_ratio={r}"],
        )
        for r in RATIOS
    ]
    chosen.append(
        Arm(
            "cot_only_r1.0",
            "essence",
            "essence_tiny",
            ["actor_rollout_ref.essence.segments=[cot]", "actor_rollout_ref.essence.truncate_ratio=1.0"],
        )
    )
    return chosen


def per_run(run: dict) -> dict:
    acc = {int(k): v for k, v in run["val_acc"].items()}
    steps = {int(k): d for k, d in run["kept_metrics"].items() if "timing_s/step" in d}
    return {
        "acc_before": acc[min(acc)],
        "acc_after": acc[max(acc)],
        "train_s": sum(d["timing_s/step"] for d in steps.values()),
        "update_s": sum(d["timing_s/update_actor"] for d in steps.values()),
        "trained_tokens": sum(d["actor/essence/trained_tokens"] for d in steps.values()),
        "wall_s": run["wall_s"],
    }


def summary_rows(results: dict, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        runs = [per_run(run) for key, run in results["runs"].items() if key.split("/")[0] == name]
        if not runs:
            continue
        row = {key: statistics.fmean(r[key] for r in runs) for key in runs[0]}
        row["acc_after_sd"] = statistics.stdev([r["acc_after"] for r in runs]) if len(runs) > 1 else 0.0
        row.update(arm=name, seeds=len(runs))
        rows.append(row)
    full = next((r for r in rows if r["arm"] == "full_r1.0"), None)
    for row in rows:
        if full:
            row["acc_vs_full"] = row["acc_after"] / full["acc_after"] if full["acc_after"] else float("nan")
            gain_full = full["acc_after"] - full["acc_before"]
            row["gain_vs_full"] = (row["acc_after"] - row["acc_before"]) / gain_full if gain_full else float("nan")
            row["time_vs_full"] = row["train_s"] / full["train_s"]
            row["update_vs_full"] = row["update_s"] / full["update_s"]
            row["tokens_vs_full"] = row["trained_tokens"] / full["trained_tokens"]
    return rows


def markdown(rows: list[dict], steps: int) -> str:
    lines = [
        f"| arm | seeds | greedy acc. before → after {steps} steps | after / full r=1 | gain / full gain | "
        "trained tokens / full | train time (s) | / full | update time / full |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {r['acc_before']:.3f} → {r['acc_after']:.3f} ± {r['acc_after_sd']:.3f} | "
            f"{r.get('acc_vs_full', float('nan')):.2f} | {r.get('gain_vs_full', float('nan')):.2f} | "
            f"{r.get('tokens_vs_full', float('nan')):.2f} | {r['train_s']:.0f} | "
            f"{r.get('time_vs_full', float('nan')):.2f} | {r.get('update_vs_full', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full_rows = sorted((r for r in rows if r["arm"].startswith("full_r")), key=lambda r: float(r["arm"][6:]))
    cot = next((r for r in rows if r["arm"].startswith("cot_only")), None)
    xs = [float(r["arm"][6:]) for r in full_rows]
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_acc.errorbar(
        xs, [r["acc_after"] for r in full_rows], yerr=[r["acc_after_sd"] for r in full_rows], marker="o",
        label="full sequence (prompt+CoT+answer), first r",
    )  # fmt: skip
    if full_rows:
        ax_acc.axhline(full_rows[0]["acc_before"], color="gray", ls="--", label="student before KD")
    if cot:
        ax_acc.errorbar([1.0], [cot["acc_after"]], yerr=[cot["acc_after_sd"]], marker="s", color="C3", ls="none",
                        label="CoT only, r = 1")  # fmt: skip
    ax_acc.set_xlabel("truncation ratio r")
    ax_acc.set_ylabel("held-out greedy accuracy (415 verbose problems)")
    ax_acc.legend(fontsize=8)
    ax_time.plot(xs, [r.get("time_vs_full", float("nan")) for r in full_rows], marker="o", label="train step time")
    ax_time.plot(xs, [r.get("update_vs_full", float("nan")) for r in full_rows], marker="^", label="actor update")
    ax_time.plot(xs, [r.get("tokens_vs_full", float("nan")) for r in full_rows], marker="x", label="trained tokens")
    ax_time.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
    ax_time.set_xlabel("truncation ratio r")
    ax_time.set_ylabel("relative to r = 1")
    ax_time.legend(fontsize=8)
    fig.suptitle("Distilling the Essence, tiny world (verl on CPU)")
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = study_parser(__doc__, "essence", seeds=[0], steps=96, test_freq=96)
    parser.add_argument("--num-prompts", type=POSITIVE_INT, default=6000)
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    ensure_world_teacher_data(world, "essence", args.num_prompts)
    chosen = arms()
    study = Study("essence_tiny_world", chosen, metric_keys=TIME_KEYS)
    extra = ["actor_rollout_ref.actor.optim.lr=3e-3", "data.val_max_samples=415", *extra]
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra)
    rows = summary_rows(results, [arm.name for arm in chosen])
    print(markdown(rows, args.steps))
    here = Path(__file__).resolve().parent
    plot(rows, here / "essence_tiny_world.png")
    publish_results(here, args.out, {"summary": rows, "steps": args.steps})


if __name__ == "__main__":
    main()
