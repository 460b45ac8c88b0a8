"""`make demo`: distillation of a tiny teacher into a tiny student, through verl's real trainer on CPU.

1. builds the tiny world if needed (`frontier world build`, cached) and the teacher's responses to 6,000
   training prompts (`kd_concise/`, written once);
2. runs three recipes with `python -m verl.trainer.main_ppo ... +platform=cpu`, same seed, saving each final
   checkpoint; the console shows one line per step (run i/N, step k/K, held-out accuracy so far, ETA), read
   from the run's metrics JSONL as verl writes it, and verl's full output goes to `<out>/<recipe>/train.log`
   (the paths are printed first):
   uniform on-policy distillation (`paced_distill_tiny` with alpha = beta = 0, i.e. w = 1: verl's forward KL
   on the student's samples) and Paced two-stage (`paced_two_stage_tiny`: pass-rate-weighted forward KL, then
   reverse KL), ``--steps`` each; uniform distillation on the teacher's responses (`kd_uniform_tiny`: verl's
   forward KL on replayed teacher sequences), ``--kd-steps``;
3. evaluates the base student, the trained students (verl's FSDP checkpoints, merged) and the teacher on the
   held-out problems and prints the table; writes `demo.png` (curves) and `demo.json`.

    python -m verl_frontier.demo [--steps 40] [--kd-steps 150] [--out outputs/demo] [--size full] [overrides...]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_dir, savefig_atomic
from verl_frontier.studies import Arm, final_checkpoint, machine_lock, run_arm, write_json_atomic
from verl_frontier.studies.progress import RunProgress, follow_metrics, format_duration
from verl_frontier.tinyworld.paths import repo_root, world_dir

#: (label, recipe folder, config name, overrides, which step count: "steps" or "kd_steps")
RUNS = (
    (
        "uniform on-policy distillation",
        "paced_distill",
        "paced_distill_tiny",
        ["algorithm.paced.alpha=0", "algorithm.paced.beta=0"],
        "steps",
    ),
    ("Paced two-stage", "paced_two_stage", "paced_two_stage_tiny", [], "steps"),
    ("uniform KD on teacher responses", "kd_uniform", "kd_uniform_tiny", [], "kd_steps"),
)


def plot(curves: dict[str, dict[int, dict]], table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, steps in curves.items():
        train = sorted(s for s, d in steps.items() if "actor/distillation/loss" in d)
        ax_loss.plot(train, [steps[s]["actor/distillation/loss"] for s in train], label=label)
        val = sorted(s for s, d in steps.items() if any(k.startswith("val-core/") and "acc" in k for k in d))
        if val:
            key = next(k for k in steps[val[0]] if k.startswith("val-core/") and "acc" in k)
            ax_acc.plot(val, [steps[s][key] for s in val], marker="o", label=f"{label} (verl validation, greedy)")
    ax_loss.set_xlabel("training step")
    ax_loss.set_title("distillation loss (verl actor/distillation/loss)")
    ax_loss.legend()
    ax_acc.axhline(table["teacher"], color="green", linestyle="--", label="teacher")
    ax_acc.axhline(table["student (base)"], color="gray", linestyle=":", label="student before")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_xlabel("training step")
    ax_acc.set_title("held-out greedy accuracy")
    ax_acc.legend()
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description="Distillation in the tiny world, through verl on CPU")
    parser.add_argument("--steps", type=POSITIVE_INT, default=40, help="steps of the two on-policy runs")
    parser.add_argument(
        "--kd-steps", type=POSITIVE_INT, default=150, help="steps of the run on the teacher's responses"
    )
    parser.add_argument("--test-freq", type=POSITIVE_INT, default=10, help="verl's greedy validation every N steps")
    parser.add_argument("--size", default="full", choices=["full", "small"])
    parser.add_argument("--out", type=output_dir, default=repo_root() / "outputs" / "demo")
    parser.add_argument("--eval-limit", type=POSITIVE_INT, default=None, help="evaluate on the first N test problems")
    args, overrides = parser.parse_with_overrides(argv)

    from verl_frontier.essence.data import ensure_world_teacher_data
    from verl_frontier.evaluation import evaluate
    from verl_frontier.tinyworld import build

    start = time.perf_counter()
    world = Path(os.environ.get("FRONTIER_WORLD_DIR") or world_dir(args.size, 0))
    build(out=world, seed=0, size=args.size)
    small = args.size == "small"
    ensure_world_teacher_data(world, "kd_concise", num=64 if small else 6000, keep_incorrect=small)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    curves, models = {}, [("student (base)", world / "student")]
    print("verl's full output of each run (all its metrics: metrics.jsonl beside it); here, one line per step:")
    for label, recipe, *_ in RUNS:
        print(f"  {label}: {out / recipe / 'train.log'}")
    for index, (label, recipe, config_name, run_overrides, steps_option) in enumerate(RUNS, 1):
        steps = getattr(args, steps_option)
        run_dir = out / recipe
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # only this run's records are followed
        print(f"run {index}/{len(RUNS)} {label}: starting verl, {steps} steps ({run_dir / 'train.log'})", flush=True)
        arm = Arm(recipe, recipe, config_name, [*run_overrides, *overrides])
        progress = RunProgress(index, len(RUNS), label, steps)
        with follow_metrics(run_dir / "metrics.jsonl", progress):
            run = run_arm(arm, 0, run_dir, steps, args.test_freq, world, save_final=True)
        print(f"run {index}/{len(RUNS)} {label}: done in {format_duration(run['wall_s'])}", flush=True)
        curves[label] = run["metrics"]
        models.append((f"student + {label} ({steps} steps)", final_checkpoint(run_dir, steps)))
    models.append(("teacher", world / "teacher"))

    test = world / "data" / "test.parquet"
    table = {}
    with machine_lock():
        for name, model in models:
            table[name] = evaluate(model, test, n=0, greedy=True, limit=args.eval_limit)["greedy_accuracy"]
    plot(curves, table, out / "demo.png")
    summary = {"greedy_accuracy": table, "steps": args.steps, "kd_steps": args.kd_steps}
    write_json_atomic(out / "demo.json", summary)
    print("\nheld-out greedy accuracy (tiny world test set)")
    print(f"  {'model':<56} accuracy")
    for name, value in table.items():
        print(f"  {name:<56} {value:.3f}")
    print(f"\ncurves: {out / 'demo.png'}   table: {out / 'demo.json'}   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
