"""OPSDC in the tiny world, through verl's real trainer on CPU: does self-distillation from the concise-instructed
model shorten the default (verbose) responses without losing accuracy?

The full tiny world's student answers verbosely by default ("We need ... Check: ... So the result is N.") and
concisely when the prompt ends with " Be concise.". OPSDC trains on the default prompts only
(``data/train_verbose.parquet``); its teacher is the same model with " Be concise." appended. Held-out: greedy
decoding on the 415 default-prompt test problems (``data/test_verbose.parquet``) every ``--test-freq`` steps,
before training included; response length = ``response_chars`` of the tiny-world reward (the tokenizer is
char-level, so characters = tokens, end-of-sequence excluded).

    python recipes/opsdc/reproduce.py [--seeds 0] [--steps 100] [--out outputs/opsdc_study] [hydra overrides...]

Writes ``<out>/results.json`` (resumable), prints a markdown table and saves the PNG of held-out mean response
length and greedy accuracy over steps to ``recipes/opsdc/opsdc_tiny_world.png`` (``results.json`` beside it).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from verl_frontier.arguments import savefig_atomic
from verl_frontier.studies import Arm, Study, full_world, publish_results, run_study, study_parser

VAL_LEN_KEY = "val-aux/tinyworld/arith/response_chars/mean@1"
TRAIN_KEYS = ("opsdc/response_length_mean", "opsdc/accuracy", "actor/opsdc/reverse_kl", "actor/opsdc/teacher_synced")


def arms() -> list[Arm]:
    return [Arm("opsdc_lr1e-4", "opsdc", "opsdc_tiny", ["actor_rollout_ref.actor.optim.lr=1e-4"])]


def curves(run: dict) -> tuple[dict[int, float], dict[int, float]]:
    """(held-out greedy accuracy per step, held-out mean response length per step)."""
    acc = {int(k): v for k, v in run["val_acc"].items()}
    length = {int(k): d[VAL_LEN_KEY] for k, d in run["kept_metrics"].items() if VAL_LEN_KEY in d}
    return acc, length


def summary_rows(results: dict, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        runs = [run for key, run in results["runs"].items() if key.split("/")[0] == name]
        if not runs:
            continue
        per = []
        for run in runs:
            acc, length = curves(run)
            first, last = min(length), max(length)
            per.append(
                {
                    "len_before": length[first],
                    "len_after": length[last],
                    "acc_before": acc[first],
                    "acc_after": acc[last],
                    "wall_s": run["wall_s"],
                }
            )
        row = {key: statistics.fmean(p[key] for p in per) for key in per[0]}
        row.update(arm=name, seeds=len(per), steps=runs[0]["steps"])
        row["len_change"] = row["len_after"] / row["len_before"] - 1.0
        row["acc_change_points"] = 100.0 * (row["acc_after"] - row["acc_before"])
        row["target_met"] = row["len_change"] <= -0.30 and row["acc_change_points"] >= -2.0
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| arm | seeds | steps | mean response tokens before → after | change | greedy acc. before → after | "
        "change (points) | target (≤ −30 %, ≥ −2 points) | wall time / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {r['steps']} | {r['len_before']:.1f} → {r['len_after']:.1f} | "
            f"{100 * r['len_change']:+.1f} % | {r['acc_before']:.3f} → {r['acc_after']:.3f} | "
            f"{r['acc_change_points']:+.1f} | {'met' if r['target_met'] else 'missed'} | {r['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def plot(results: dict, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_len, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, name in enumerate(names):
        for key, run in results["runs"].items():
            if key.split("/")[0] != name:
                continue
            acc, length = curves(run)
            xs = sorted(length)
            ax_len.plot(xs, [length[x] for x in xs], marker="o", color=f"C{index}", label=key)
            xs = sorted(acc)
            ax_acc.plot(xs, [acc[x] for x in xs], marker="o", color=f"C{index}", label=key)
    ax_len.set_title("held-out mean response tokens (default prompt, greedy)")
    ax_acc.set_title("held-out greedy accuracy (default prompt)")
    for ax in (ax_len, ax_acc):
        ax.set_xlabel("training step")
        ax.legend()
    fig.suptitle("OPSDC, tiny world (verl on CPU)")
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = study_parser(__doc__, "opsdc", seeds=[0], steps=100, test_freq=10)
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    chosen = arms()
    study = Study("opsdc_tiny_world", chosen, metric_keys=(VAL_LEN_KEY, *TRAIN_KEYS))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra)
    names = [arm.name for arm in chosen]
    rows = summary_rows(results, names)
    print(markdown(rows))
    here = Path(__file__).resolve().parent
    plot(results, names, here / "opsdc_tiny_world.png")
    publish_results(here, args.out, {"summary": rows, "steps": args.steps})


if __name__ == "__main__":
    main()
