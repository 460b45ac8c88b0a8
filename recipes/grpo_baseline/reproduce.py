"""GRPO in the tiny world, through verl's real trainer on CPU: does it raise the student's greedy accuracy?

Arms (verl's built-in ``grpo`` advantage, KL loss 0.001 against the reference model, one update per step; they
differ in batch size and learning rate):

* ``grpo_64x8``  64 prompts x 8 samples per step (512 sequences), lr 3e-5: the measured setting
* ``grpo_8x4``   ``grpo_baseline_tiny.yaml`` as it is (8 prompts x 4 samples, lr 1e-4), the quick smoke config

Each run keeps its final checkpoint, which is then evaluated on the 415 held-out problems (greedy accuracy,
pass@1..8 from n = 8 samples at T = 1, by ``verl_frontier.evaluation.evaluate``) and compared with the base
student problem by problem (exact McNemar test on greedy correctness, ``verl_frontier.evaluation.paired``).

    python recipes/grpo_baseline/reproduce.py [--seeds 0] [--steps 100] [--arms grpo_64x8] [--out outputs/grpo_study]

Writes ``<out>/results.json`` (resumable), prints markdown tables, saves the accuracy-over-steps PNG to
``recipes/grpo_baseline/grpo_tiny_world.png`` and ``results.json`` / ``results_runs.json`` beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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


def arms() -> list[Arm]:
    return [
        Arm("grpo_64x8", "grpo_baseline", "grpo_baseline_tiny", LARGE_BATCH),
        Arm("grpo_8x4", "grpo_baseline", "grpo_baseline_tiny", ["data.val_batch_size=512"]),
    ]


def paired_table(results: dict) -> str:
    lines = [
        "| run | greedy before | greedy after | solved only before | solved only after | McNemar p | pass@1 | pass@8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, run in results["runs"].items():
        if "paired" in run:
            p = run["paired"]
            lines.append(
                f"| {key} | {p['before_acc']:.3f} | {p['after_acc']:.3f} | {p['only_before']} | {p['only_after']} | "
                f"{p['p_value']:.2g} | {run['eval']['pass_at_k']['1']:.3f} | {run['eval']['pass_at_k']['8']:.3f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    from verl_frontier.evaluation.paired import mcnemar_exact

    parser = study_parser(__doc__, "grpo", seeds=[0], steps=100, test_freq=25)
    parser.add_argument("--arms", nargs="+", default=None, help="subset of arm names")
    args, extra = parser.parse_known_args(argv)

    world = full_world()
    test = world / "data" / "test.parquet"
    base = base_evaluation(args.out, world, EVAL_N)

    def after_run(arm, seed, run_dir, run):
        run["eval"] = evaluate_pass_at_k(final_checkpoint(run_dir, args.steps), test, EVAL_N)
        run["paired"] = mcnemar_exact(base["greedy_scores"], run["eval"]["greedy_scores"])
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # evaluated; ~MBs per run otherwise
        print(f"    paired vs base student: {run['paired']}", flush=True)

    chosen = [arm for arm in arms() if args.arms is None or arm.name in args.arms]
    study = Study("grpo_tiny_world", chosen, metric_keys=("critic/score/mean", "timing_s/step"))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra,
                        after_run=after_run)  # fmt: skip
    names = [arm.name for arm in chosen]
    summary = summarize(results, names)
    print(markdown_table(summary))
    print(paired_table(results))
    here = Path(__file__).resolve().parent
    plot_curves(results, names, here / "grpo_tiny_world.png", "GRPO, tiny world (verl on CPU)")
    base_summary = {k: base[k] for k in ("greedy_accuracy", "pass_at_k")}
    publish_results(here, args.out, {"summary": summary, "base": base_summary, "steps": args.steps})


if __name__ == "__main__":
    main()
