"""`make demo`: distillation of a tiny teacher into a tiny student, through verl's real trainer on CPU.

1. builds the tiny world if needed (`frontier world build`, cached) and the teacher's responses to 6,000
   training prompts (`kd_concise/`, written once);
2. runs three recipes with `python -m verl.trainer.main_ppo ... +platform=cpu`, same seed, each spending the same
   budget of ``--prompts`` distinct training prompts (each run's steps follow from its prompts per step), saving
   each final checkpoint; the console shows one line per step (run i/N, step k/K, held-out accuracy so far,
   ETA), read from the run's metrics JSONL as verl writes it, and verl's full output goes to
   `<out>/<recipe>/train.log` (the paths are printed first):
   uniform on-policy distillation (`paced_distill_tiny` with alpha = beta = 0, i.e. w = 1: verl's forward KL
   on the student's samples, 16 prompts x 4 samples per step) and Paced two-stage (`paced_two_stage_tiny`:
   pass-rate-weighted forward KL, then reverse KL, 16 x 4); uniform distillation on the teacher's responses
   (`kd_uniform_tiny`: verl's forward KL on replayed teacher sequences, 64 x 1);
3. evaluates the base student, the trained students (verl's FSDP checkpoints, merged) and the teacher on the
   held-out problems and prints the table, with what each run spent (steps, distinct prompts, sequences
   trained on, wall time); writes `demo.png` (curves) and `demo.json`.

A single seed at a small budget: a demonstration of the recipes, not evidence. The protocol studies
(`make reproduce-*`, 3 seeds, tuned baselines) make the comparisons.

    python -m verl_frontier.demo [--prompts 1280] [--out outputs/demo] [--size full] [overrides...]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_dir, savefig_atomic
from verl_frontier.studies import Arm, final_checkpoint, machine_lock, run_arm, write_json_atomic
from verl_frontier.studies.progress import RunProgress, follow_metrics, format_duration
from verl_frontier.tinyworld.paths import repo_root, world_dir

#: (label, recipe folder, config name, overrides)
RUNS = (
    (
        "uniform on-policy distillation",
        "paced_distill",
        "paced_distill_tiny",
        ["algorithm.paced.alpha=0", "algorithm.paced.beta=0"],
    ),
    ("Paced two-stage", "paced_two_stage", "paced_two_stage_tiny", []),
    ("uniform KD on teacher responses", "kd_uniform", "kd_uniform_tiny", []),
)


def plans(prompts: int, overrides: list[str]) -> dict:
    """Each run's share of the budget (recipe -> ``studies.budget.ArmSchedule``): ``prompts`` distinct prompts."""
    from verl_frontier.studies import Study
    from verl_frontier.studies.budget import Budget, schedule

    arms = [Arm(recipe, recipe, config_name, list(run_overrides)) for _, recipe, config_name, run_overrides in RUNS]
    study = Study("demo", arms, baseline="kd_uniform", budget=Budget("prompts", prompts), seeds=(0,), claim=False)
    return schedule(study, overrides)


def plot(curves: dict[str, dict[int, dict]], table: dict, path: Path, prompts_per_step: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, steps in curves.items():
        per = prompts_per_step[label]
        train = sorted(s for s, d in steps.items() if "actor/distillation/loss" in d)
        ax_loss.plot([s * per for s in train], [steps[s]["actor/distillation/loss"] for s in train], label=label)
        val = sorted(s for s, d in steps.items() if any(k.startswith("val-core/") and "acc" in k for k in d))
        if val:
            key = next(k for k in steps[val[0]] if k.startswith("val-core/") and "acc" in k)
            ax_acc.plot(
                [s * per for s in val], [steps[s][key] for s in val], marker="o", label=f"{label} (verl validation)"
            )
    ax_loss.set_xlabel("distinct training prompts seen")
    ax_loss.set_title("distillation loss (verl actor/distillation/loss)")
    ax_loss.legend()
    ax_acc.axhline(table["teacher"], color="green", linestyle="--", label="teacher")
    ax_acc.axhline(table["student (base)"], color="gray", linestyle=":", label="student before")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_xlabel("distinct training prompts seen")
    ax_acc.set_title("held-out greedy accuracy")
    ax_acc.legend()
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description="Distillation in the tiny world, through verl on CPU")
    parser.add_argument(
        "--prompts", type=POSITIVE_INT, default=1280, help="distinct training prompts each run sees (a multiple of 64)"
    )
    parser.add_argument(
        "--val-every", type=POSITIVE_INT, default=320, help="verl's greedy validation every this many prompts"
    )
    parser.add_argument("--size", default="full", choices=["full", "small"])
    parser.add_argument("--out", type=output_dir, default=repo_root() / "outputs" / "demo")
    parser.add_argument("--eval-limit", type=POSITIVE_INT, default=None, help="evaluate on the first N test problems")
    args, overrides = parser.parse_with_overrides(argv)
    from verl_frontier.studies.budget import StudyError

    try:
        schedule = plans(args.prompts, overrides)
    except StudyError as exc:
        parser.error(f"argument --prompts: {exc}")

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
    spent = {}
    for index, (label, recipe, config_name, run_overrides) in enumerate(RUNS, 1):
        plan = schedule[recipe]
        steps = plan.steps
        test_freq = max(1, args.val_every // plan.settings["train_batch_size"])
        run_dir = out / recipe
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # only this run's records are followed
        print(f"run {index}/{len(RUNS)} {label}: starting verl, {steps} steps ({run_dir / 'train.log'})", flush=True)
        arm = Arm(recipe, recipe, config_name, [*run_overrides, *overrides])
        progress = RunProgress(index, len(RUNS), label, steps)
        with follow_metrics(run_dir / "metrics.jsonl", progress):
            run = run_arm(arm, 0, run_dir, steps, test_freq, world, save_final=True)
        print(f"run {index}/{len(RUNS)} {label}: done in {format_duration(run['wall_s'])}", flush=True)
        curves[label] = run["metrics"]
        name = f"student + {label}"
        models.append((name, final_checkpoint(run_dir, steps)))
        settings = plan.settings
        spent[name] = {
            "steps": steps,
            "prompts": steps * settings["train_batch_size"],
            "sequences": steps * settings["train_batch_size"] * settings["rollout_n"],
            "wall_s": round(run["wall_s"], 1),
        }
    models.append(("teacher", world / "teacher"))

    test = world / "data" / "test.parquet"
    table = {}
    with machine_lock():
        for name, model in models:
            table[name] = evaluate(model, test, n=0, greedy=True, limit=args.eval_limit)["greedy_accuracy"]
    per_step = {label: schedule[recipe].settings["train_batch_size"] for label, recipe, *_ in RUNS}
    plot(curves, table, out / "demo.png", per_step)
    summary = {"greedy_accuracy": table, "prompts": args.prompts, "spent": spent}
    write_json_atomic(out / "demo.json", summary)
    print("\nheld-out greedy accuracy (tiny world test set), seed 0; what each run spent")
    print(f"  {'model':<48} accuracy  steps  prompts  sequences  wall time")
    for name, value in table.items():
        cost = spent.get(name)
        where = (
            f"  {cost['steps']:>5}  {cost['prompts']:>7}  {cost['sequences']:>9}  {format_duration(cost['wall_s'])}"
            if cost
            else ""
        )
        print(f"  {name:<48} {value:.3f}{where}")
    print(f"\ncurves: {out / 'demo.png'}   table: {out / 'demo.json'}   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
