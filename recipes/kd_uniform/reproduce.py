"""Uniform distillation in the tiny world, through verl's real trainer on CPU: the teacher's own sequences
(offline, sequence-level KD) vs the student's own samples (on-policy distillation), same loss and budget.

Both arms minimise verl's built-in ``forward_kl_topk`` with top-k = the whole 102-token vocabulary (exact
forward KL, every sequence weighted the same), lr 1e-3 with 10 warm-up steps, 64 sequences per step, on the
concise style; they differ only in whose sequences are scored:
* ``kd_teacher_sequences``   ``kd_uniform_tiny``: the teacher's greedy answers (correct ones) to 6,000
  training prompts, replayed by the ``teacher_replay`` agent loop
* ``opd_student_samples``    ``opd_uniform_tiny`` with the same loss: 16 prompts x 4 student samples (T = 1)

    python recipes/kd_uniform/reproduce.py [--seeds 0] [--steps 150] [--out outputs/kd_uniform_study]

Writes ``<out>/results.json`` (resumable), prints a markdown table, and saves the PNG of held-out greedy
accuracy (all 415 problems) over steps to ``recipes/kd_uniform/kd_uniform_tiny_world.png``.
"""

from __future__ import annotations

from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT
from verl_frontier.essence.data import ensure_world_teacher_data
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

SAME_LOSS_ON_POLICY = [
    "distillation.distillation_loss.loss_mode=forward_kl_topk",
    "distillation.distillation_loss.topk=102",
    "distillation.distillation_loss.use_policy_gradient=false",
    "actor_rollout_ref.actor.optim.lr=1e-3",
    "actor_rollout_ref.actor.optim.lr_warmup_steps=10",
    "data.val_batch_size=512",
]


def arms() -> list[Arm]:
    return [
        Arm("kd_teacher_sequences", "kd_uniform", "kd_uniform_tiny"),
        Arm("opd_student_samples", "opd_uniform", "opd_uniform_tiny", SAME_LOSS_ON_POLICY),
    ]


def main(argv=None) -> None:
    parser = study_parser(__doc__, "kd_uniform", seeds=[0], steps=150, test_freq=25)
    parser.add_argument("--num-prompts", type=POSITIVE_INT, default=6000)
    parser.add_argument("--arms", nargs="+", default=None, choices=[a.name for a in arms()], help="subset of arm names")
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    ensure_world_teacher_data(world, "kd_concise", args.num_prompts)
    chosen = [arm for arm in arms() if args.arms is None or arm.name in args.arms]
    study = Study("kd_uniform_tiny_world", chosen, metric_keys=("timing_s/step",))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra)
    names = [arm.name for arm in chosen]
    summary = summarize(results, names)
    print(markdown_table(summary))
    here = Path(__file__).resolve().parent
    plot_curves(
        results, names, here / "kd_uniform_tiny_world.png",
        "Uniform forward-KL distillation, tiny world (verl on CPU)",
    )  # fmt: skip
    publish_results(here, args.out, {"summary": summary, "steps": args.steps})


if __name__ == "__main__":
    main()
