"""Paced in the tiny world, through verl's real trainer on CPU: uniform vs Paced distillation, same budget.

Arms (all: tiny teacher -> tiny student, exact full-vocab divergences (top-k = vocabulary), same lr, steps,
batch and seeds; they differ only in the per-prompt weight and the divergence):

* ``uniform_fkl``  forward KL, w = 1 (alpha = beta = 0; equals verl's forward_kl_topk, see tests/test_paced_verl.py)
* ``paced_fkl``    forward KL, w = p(1-p)
* ``paced_rkl``    reverse KL, w = p(1-p)
* ``paced_two_stage`` forward KL for the first half of the steps, then reverse KL, w = p(1-p)

    python recipes/paced_distill/reproduce.py [--seeds 0 1 2] [--steps 40] [--out outputs/paced_study]

Writes ``<out>/results.json`` (resumable), prints a markdown table, and saves the PNG of held-out greedy
accuracy over steps to ``recipes/paced_distill/paced_tiny_world.png`` (with ``results.json`` beside it).
"""

from __future__ import annotations

from pathlib import Path

from verl_frontier.studies import (
    Arm,
    Study,
    full_world,
    markdown_table,
    plot_curves,
    publish_results,
    run_study,
    study_parser,
    summarize,
)


def arms(steps: int) -> list[Arm]:
    switch = steps // 2 + 1
    return [
        Arm(
            "uniform_fkl", "paced_distill", "paced_distill_tiny", ["algorithm.paced.alpha=0", "algorithm.paced.beta=0"]
        ),
        Arm("paced_fkl", "paced_distill", "paced_distill_tiny"),
        Arm("paced_rkl", "paced_self_distill", "paced_self_distill_tiny"),
        Arm("paced_two_stage", "paced_two_stage", "paced_two_stage_tiny", [f"algorithm.paced.switch_step={switch}"]),
    ]


def main(argv=None) -> None:
    parser = study_parser(__doc__, "paced", seeds=[0, 1, 2], steps=40, test_freq=10)
    parser.add_argument(
        "--arms", nargs="+", default=None, choices=[a.name for a in arms(1)], help="subset of arm names"
    )
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    chosen = [arm for arm in arms(args.steps) if args.arms is None or arm.name in args.arms]
    study = Study("paced_tiny_world", chosen, metric_keys=("paced/zero_weight_prompt_frac", "paced/pass_rate_mean"))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra)
    names = [arm.name for arm in chosen]
    summary = summarize(results, names)
    print(markdown_table(summary))
    here = Path(__file__).resolve().parent
    plot_curves(
        results, names, here / "paced_tiny_world.png", "Paced vs uniform distillation, tiny world (verl on CPU)"
    )
    publish_results(here, args.out, {"summary": summary, "steps": args.steps})


if __name__ == "__main__":
    main()
