"""ACE-GRPO vs GRPO in the tiny world, through verl's real trainer on CPU: does ACE lift large-k pass@k?

Arms (same recipe settings, seeds, steps and evaluation; they differ only in the advantage estimator):

* ``grpo``      recipes/grpo_baseline/grpo_baseline_tiny.yaml (verl's ``grpo``)
* ``ace_grpo``  recipes/ace_grpo/ace_grpo_tiny.yaml (``ace`` on top of ``grpo``, alpha = 1, softplus)

Each run trains the tiny student for ``--steps`` steps (8 prompts x 4 rollouts, lr 1e-4, KL loss 0.001 against
the reference model) and keeps its final checkpoint; the checkpoint (and the base student, once) is then
evaluated on the 415 held-out problems: greedy accuracy and unbiased pass@1..8 from n = 8
samples at temperature 1 (``verl_frontier.evaluation.evaluate``, the code behind ``frontier eval``).

    python recipes/ace_grpo/reproduce.py [--seeds 0 1 2] [--steps 30] [--eval-limit N] [--out outputs/ace_study]

Writes ``<out>/results.json`` (resumable), prints a markdown table and saves the pass@k PNG to
``recipes/ace_grpo/ace_tiny_world_passk.png`` (``results.json`` beside it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, savefig_atomic
from verl_frontier.studies import (
    Arm,
    Study,
    base_evaluation,
    evaluate_pass_at_k,
    final_checkpoint,
    full_world,
    mean_std_by_key,
    run_study,
    study_parser,
    write_json_atomic,
)

ACE_KEYS = ("ace/wrong_modulation_factor_mean", "ace/wrong_overconfident_frac", "ace/wrong_conf_shift_mean")
EVAL_N = 8


def arms() -> list[Arm]:
    return [
        Arm("grpo", "grpo_baseline", "grpo_baseline_tiny"),
        Arm("ace_grpo", "ace_grpo", "ace_grpo_tiny"),
    ]


def summary_rows(results: dict, names: list[str]) -> dict[str, dict]:
    """Per arm: pass@k mean/sd over seeds, greedy accuracy mean/sd, mean ACE step metrics, wall time."""
    rows = {}
    for name in names:
        runs = [run for key, run in results["runs"].items() if key.split("/")[0] == name and "eval" in run]
        if not runs:
            continue
        metric_means = {}
        for key in ACE_KEYS:
            values = [d[key] for run in runs for d in run["kept_metrics"].values() if key in d]
            if values:
                metric_means[key] = sum(values) / len(values)
        rows[name] = {
            "seeds": len(runs),
            "pass_at_k": mean_std_by_key([run["eval"]["pass_at_k"] for run in runs]),
            "greedy": mean_std_by_key([{"acc": run["eval"]["greedy_accuracy"]} for run in runs])["acc"],
            "wall_s": sum(run["wall_s"] for run in runs) / len(runs),
            "ace_metrics": metric_means,
        }
    return rows


def markdown(rows: dict, base: dict, ks=("1", "2", "4", "8")) -> str:
    head = "| model | seeds | greedy | " + " | ".join(f"pass@{k}" for k in ks) + " | train wall / run |"
    lines = [head, "|" + "---|" * (len(ks) + 4)]
    base_cells = " | ".join(f"{base['pass_at_k'][k]:.3f}" for k in ks)
    lines.append(f"| base student | - | {base['greedy_accuracy']:.3f} | {base_cells} | - |")
    for name, row in rows.items():
        cells = " | ".join(f"{row['pass_at_k'][k][0]:.3f} ± {row['pass_at_k'][k][1]:.3f}" for k in ks)
        greedy = f"{row['greedy'][0]:.3f} ± {row['greedy'][1]:.3f}"
        lines.append(f"| {name} | {row['seeds']} | {greedy} | {cells} | {row['wall_s'] / 60:.1f} min |")
    return "\n".join(lines)


def plot(rows: dict, base: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = [int(k) for k in base["pass_at_k"]]
    ax.plot(ks, [base["pass_at_k"][str(k)] for k in ks], color="gray", linestyle="--", marker=".", label="base student")
    for index, (name, row) in enumerate(rows.items()):
        means = [row["pass_at_k"][str(k)][0] for k in ks]
        sds = [row["pass_at_k"][str(k)][1] for k in ks]
        ax.errorbar(
            ks, means, yerr=sds, color=f"C{index}", marker="o", capsize=3, label=f"{name} ({row['seeds']} seeds)"
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (held-out, T = 1)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = study_parser(__doc__, "ace", seeds=[0, 1, 2], steps=30, test_freq=10)
    parser.add_argument(
        "--eval-limit", type=POSITIVE_INT, default=None, help="evaluate only the first N held-out problems"
    )
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    test = world / "data" / "test.parquet"
    base = base_evaluation(args.out, world, EVAL_N, args.eval_limit)

    def after_run(arm, seed, run_dir, run):
        checkpoint = final_checkpoint(run_dir, args.steps)
        run["eval"] = evaluate_pass_at_k(checkpoint, test, EVAL_N, args.eval_limit)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # evaluated; ~MBs per run otherwise
        print(f"    pass@k {run['eval']['pass_at_k']}", flush=True)

    study = Study("ace_tiny_world", arms(), metric_keys=ACE_KEYS)
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra,
                        after_run=after_run)  # fmt: skip
    rows = summary_rows(results, [arm.name for arm in study.arms])
    print(markdown(rows, base))
    for name, row in rows.items():
        print(name, {k: round(v, 4) for k, v in row["ace_metrics"].items()})
    here = Path(__file__).resolve().parent
    plot(
        rows, base, here / "ace_tiny_world_passk.png", f"ACE-GRPO vs GRPO, tiny world, {args.steps} steps (verl on CPU)"
    )
    write_json_atomic(
        here / "results.json",
        {"base": base, "arms": rows, "steps": args.steps, "eval_limit": args.eval_limit, "eval_n": EVAL_N},
    )
    shutil.copy(args.out / "results.json", here / "results_runs.json")


if __name__ == "__main__":
    main()
