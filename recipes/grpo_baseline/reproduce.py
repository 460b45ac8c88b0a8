"""GRPO in the tiny world, through verl's real trainer on CPU: does it raise the student's greedy accuracy?

Arms (verl's built-in ``grpo`` advantage, one update per step; they differ in batch size, learning rate, KL loss
and warm-up):

* ``grpo_64x8_nokl`` 64 prompts x 8 samples per step (512 sequences), lr 3e-5 after 10 linear warm-up steps,
  no KL loss (and so no reference model): the measured setting
* ``grpo_64x8``      the same batch, lr 3e-5 from step 0, KL loss 0.001 against the reference model
* ``grpo_8x4``       ``grpo_baseline_tiny.yaml`` as it is (8 prompts x 4 samples, lr 1e-4), the quick smoke config

Each run keeps its final checkpoint, which is then evaluated on the 415 validation problems (``data/test.parquet``)
and on the world's larger held-out set (``heldout/test.parquet``: fresh test-side problems that verl never
validated on, ``verl_frontier.tinyworld.heldout``): greedy accuracy and pass@1..8 from n = 8 samples at T = 1
(``verl_frontier.evaluation.evaluate``), compared with the base student problem by problem: exact McNemar test on
greedy correctness and exact sign-flip test on the per-problem count of correct samples
(``verl_frontier.evaluation.paired``).

    python recipes/grpo_baseline/reproduce.py [--seeds 0] [--steps 100] [--arms grpo_64x8_nokl]
                                              [--out outputs/grpo_study]

Writes ``<out>/results.json`` (resumable), prints markdown tables, and saves beside this script the
accuracy-over-steps PNG (``grpo_tiny_world.png``), the before/after bars with their p-values
(``grpo_paired.png``), ``results.json`` and ``results_runs.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from verl_frontier.arguments import savefig_atomic
from verl_frontier.studies import (
    Arm,
    Study,
    base_evaluation,
    evaluate_pass_at_k,
    final_checkpoint,
    full_world,
    markdown_table,
    plot_curves,
    publish_results,
    run_study,
    study_parser,
    summarize,
)

LARGE_BATCH = [
    "data.train_batch_size=64",
    "data.val_batch_size=512",
    "actor_rollout_ref.rollout.n=8",
    "actor_rollout_ref.actor.optim.lr=3e-5",
    "actor_rollout_ref.actor.ppo_mini_batch_size=64",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=128",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=128",
]
EVAL_N = 8
HELDOUT_ROWS_PER_CELL = 400
NO_KL_WARMUP = ["actor_rollout_ref.actor.use_kl_loss=false", "actor_rollout_ref.actor.optim.lr_warmup_steps=10"]


def arms() -> list[Arm]:
    return [
        Arm("grpo_64x8_nokl", "grpo_baseline", "grpo_baseline_tiny", LARGE_BATCH + NO_KL_WARMUP),
        Arm("grpo_64x8", "grpo_baseline", "grpo_baseline_tiny", LARGE_BATCH),
        Arm("grpo_8x4", "grpo_baseline", "grpo_baseline_tiny", ["data.val_batch_size=512"]),
    ]


def paired_table(results: dict) -> str:
    lines = [
        "| run | eval set | greedy before | greedy after | solved only before / after | McNemar p | "
        "pass@1 before | pass@1 after | sign-flip p | pass@8 before | pass@8 after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, run in results["runs"].items():
        for name in EVAL_SETS:
            if f"paired_{name}" not in run and not (name == "test" and "paired" in run):
                continue
            g = run.get(f"paired_{name}") or run["paired"]  # "paired": runs made before the held-out set existed
            e = run.get(f"eval_{name}") or run["eval"]
            before = results.get("base", {}).get(name, {}).get("pass_at_k", {})
            flip = run.get(f"sign_flip_{name}")
            lines.append(
                f"| {key} | {name} ({g['n']}) | {g['before_acc']:.3f} | {g['after_acc']:.3f} | "
                f"{g['only_before']} / {g['only_after']} | {g['p_value']:.2g} | {before.get('1', float('nan')):.3f} | "
                f"{e['pass_at_k']['1']:.3f} | {flip['p_value'] if flip else float('nan'):.2g} | "
                f"{before.get('8', float('nan')):.3f} | {e['pass_at_k']['8']:.3f} |"
            )
    return "\n".join(lines)


EVAL_SETS = ("test", "heldout")


def plot_paired(results: dict, path: Path) -> None:
    """Base vs trained student per run and eval set: greedy accuracy (McNemar p) and pass@1 (sign-flip p)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(key, name, run) for key, run in results["runs"].items() for name in EVAL_SETS if f"eval_{name}" in run]
    if not bars:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    panels = (("greedy accuracy", "greedy_accuracy", "paired", "McNemar"), ("pass@1 (n = 8, T = 1)", None, "sign_flip",
              "sign-flip"))  # fmt: skip
    for ax, (label, key, test, test_name) in zip(axes, panels):
        for i, (_, name, run) in enumerate(bars):
            base = results["base"][name]
            before = base[key] if key else base["pass_at_k"]["1"]
            after = run[f"eval_{name}"][key] if key else run[f"eval_{name}"]["pass_at_k"]["1"]
            ax.bar([3 * i, 3 * i + 1], [before, after], color=["0.6", "C0"], width=0.9)
            ax.text(3 * i + 0.5, max(before, after) + 0.01, f"p = {run[f'{test}_{name}']['p_value']:.2g}", ha="center")
        ax.set_xticks([3 * i + 0.5 for i in range(len(bars))])
        ax.set_xticklabels([f"{k.split('/')[0]}\n{name} ({run[f'paired_{name}']['n']})" for k, name, run in bars])
        ax.set_title(f"{label}, base (grey) vs GRPO\n(p: exact {test_name} test)")
        ax.set_ylim(0, max(ax.get_ylim()[1], 0.1) * 1.1)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    from verl_frontier.evaluation.paired import mcnemar_exact, sign_flip_exact
    from verl_frontier.tinyworld.heldout import ensure_heldout

    parser = study_parser(__doc__, "grpo", seeds=[0], steps=100, test_freq=25)
    parser.add_argument("--arms", nargs="+", default=None, choices=[a.name for a in arms()], help="subset of arm names")
    args, extra = parser.parse_with_overrides(argv)

    here = Path(__file__).resolve().parent
    world = full_world()
    eval_sets = {"test": world / "data" / "test.parquet", "heldout": ensure_heldout(world, HELDOUT_ROWS_PER_CELL)}
    cache_names = {"test": "base_eval", "heldout": "base_heldout"}
    base = {name: base_evaluation(args.out, world, EVAL_N, test=path, name=cache_names[name])
            for name, path in eval_sets.items()}  # fmt: skip

    def after_run(arm, seed, run_dir, run):
        checkpoint = final_checkpoint(run_dir, args.steps)
        for name, path in eval_sets.items():
            ev = run[f"eval_{name}"] = evaluate_pass_at_k(checkpoint, path, EVAL_N)
            run[f"paired_{name}"] = mcnemar_exact(base[name]["greedy_scores"], ev["greedy_scores"])
            run[f"sign_flip_{name}"] = sign_flip_exact(base[name]["sample_correct"], ev["sample_correct"])
            print(f"    {name} greedy: {run[f'paired_{name}']}", flush=True)
            print(f"    {name} samples: {run[f'sign_flip_{name}']}", flush=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # evaluated; ~MBs per run otherwise

    chosen = [arm for arm in arms() if args.arms is None or arm.name in args.arms]
    study = Study("grpo_tiny_world", chosen, metric_keys=("critic/score/mean", "timing_s/step"))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra,
                        after_run=after_run)  # fmt: skip
    results["base"] = {name: {k: b[k] for k in ("greedy_accuracy", "pass_at_k")} for name, b in base.items()}
    names = [arm.name for arm in arms() if any(key.startswith(f"{arm.name}/") for key in results["runs"])]
    summary = summarize(results, names)
    print(markdown_table(summary))
    print(paired_table(results))
    plot_curves(results, names, here / "grpo_tiny_world.png", "GRPO, tiny world (verl on CPU): validation set")
    plot_paired(results, here / "grpo_paired.png")
    publish_results(here, args.out, {"summary": summary, "base": results["base"], "steps": args.steps})


if __name__ == "__main__":
    main()
