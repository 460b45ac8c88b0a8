"""Whose sequences should a tiny student learn from at a fixed number of distinct prompts: the teacher's
(offline KD), its own (on-policy distillation, 64 x 1 or 16 x 4) or a mix (GKD, arXiv 2306.13649)?
A protocol study (``verl_frontier.studies``) through verl's real trainer on CPU.

Every arm is ``gkd_mix_tiny`` (the same rows in the same order: the tiny teacher's greedy answers to 6,000
training prompts, ``kd_concise``; the same loss: verl's ``forward_kl_topk`` over the whole 102-token vocabulary,
i.e. the exact forward KL; the same teacher, evaluation and seeds) and spends the same budget of distinct
prompts; they differ only in who writes the scored sequences:

* ``kd_teacher_sequences``  lambda = 0: every row replays the teacher's answer (= ``kd_uniform_tiny``), 64 x 1
* ``on_policy_64x1``        lambda = 1: every row is one student sample at T = 1 (= on-policy distillation)
* ``mix_lambda_0.5``        half of each step's rows on-policy, half replayed
* ``on_policy_16x4``        (with ``--arms``) lambda = 1 with 16 prompts x 4 samples per step (the shape of
                            ``opd_uniform_tiny``): 4x the steps for the same prompts
* ``cold_start``            (with ``--arms``) replay for the first ``--cold-start`` steps, then lambda = 1

First a learning-rate sweep (``--lrs``, seed 0, ``--sweep-prompts`` each) of the baseline
(``kd_teacher_sequences``) and, unless ``--tune`` leaves it out, of ``on_policy_64x1``, chosen on the selection
set (verl's greedy validation on ``data/test.parquet``, last point); the other on-policy arms use the on-policy
choice (the baseline's when ``on_policy_64x1`` is not swept). Then every arm on every seed at ``--prompts`` (when
the two budgets are equal the sweep's seed-0 runs of the chosen settings are reused), final greedy evaluation on
the held-out set (``heldout/test.parquet``, 1,443 problems), paired statistics against the baseline.

    python recipes/gkd_mix/reproduce.py [--seeds 0 1 2] [--prompts 5120] [--sweep-prompts 2560]
                                        [--lrs 3e-4 1e-3 3e-3] [--arms ...] [--out outputs/gkd_study]

Resumable (finished runs are kept in ``<out>/sweep/results.json`` and ``<out>/results.json``). Writes
``recipes/gkd_mix/results.json`` (validated; the README table is printed from it) and ``study.png``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, write_text_atomic
from verl_frontier.essence.data import ensure_world_teacher_data
from verl_frontier.studies import (
    Arm,
    Study,
    base_evaluation,
    final_set_evaluator,
    full_world,
    run_study,
    study_parser,
    write_json_atomic,
)
from verl_frontier.studies.budget import Budget
from verl_frontier.studies.report import plot_study, results_table, study_results, write_results

HERE = Path(__file__).resolve().parent
BASELINE = "kd_teacher_sequences"
TUNED = (BASELINE, "on_policy_64x1")
#: validations every this many distinct prompts (each arm's test_freq in its own steps)
VALIDATE_EVERY_PROMPTS = 640


def _lr(lr: float) -> list[str]:
    return [f"actor_rollout_ref.actor.optim.lr={lr:g}"]


def _every(prompts_per_step: int) -> list[str]:
    return [f"trainer.test_freq={max(1, VALIDATE_EVERY_PROMPTS // prompts_per_step)}"]


def arm(name: str, lr: float, cold_start: int = 10) -> Arm:
    """One arm of the study at learning rate ``lr`` (every other setting is the recipe's)."""
    shapes = {
        "kd_teacher_sequences": ["algorithm.gkd.lmbda=0", *_every(64)],
        "on_policy_64x1": ["algorithm.gkd.lmbda=1", *_every(64)],
        "on_policy_16x4": [
            "algorithm.gkd.lmbda=1",
            "data.train_batch_size=16",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=16",
            *_every(16),
        ],
        "mix_lambda_0.5": ["algorithm.gkd.lmbda=0.5", *_every(64)],
        "cold_start": ["algorithm.gkd.lmbda=1", f"algorithm.gkd.cold_start_steps={cold_start}", *_every(64)],
    }
    return Arm(name, "gkd_mix", "gkd_mix_tiny", [*shapes[name], *_lr(lr)])


ARMS = ("kd_teacher_sequences", "on_policy_64x1", "mix_lambda_0.5", "on_policy_16x4", "cold_start")
DEFAULT_ARMS = ARMS[:3]


def selection_accuracy(run: dict) -> float:
    """The run's last greedy validation accuracy on the selection set."""
    return run["val_acc"][max(run["val_acc"], key=int)]


def main(argv=None) -> None:
    parser = study_parser(__doc__, "gkd_study", seeds=[0, 1, 2], steps=1, test_freq=10)
    parser.add_argument("--prompts", type=POSITIVE_INT, default=5120, help="distinct prompts every arm sees")
    parser.add_argument("--sweep-prompts", type=POSITIVE_INT, default=2560, help="distinct prompts per sweep run")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3], help="learning rates swept")
    parser.add_argument(
        "--tune", nargs="+", default=list(TUNED), choices=TUNED, help="arms whose lr is swept (others: the baseline's)"
    )
    parser.add_argument("--cold-start", type=POSITIVE_INT, default=10, help="replayed steps before on-policy")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS, help="arms of the main study")
    args, extra = parser.parse_with_overrides(argv)
    if BASELINE not in args.arms:
        parser.error(f"--arms: the baseline {BASELINE} must be one of the arms")
    if BASELINE not in args.tune:
        parser.error(f"--tune: the baseline {BASELINE} is always tuned")
    if any(not 0 < lr < 1 for lr in args.lrs):
        parser.error("--lrs: every learning rate must be in (0, 1)")

    world = full_world()
    ensure_world_teacher_data(world, "kd_concise", 6000)
    budget, sweep_budget = Budget("prompts", args.prompts), Budget("prompts", args.sweep_prompts)
    out = Path(args.out)

    # 1. the learning-rate sweep of the tuned arms, seed 0, chosen on the selection set
    sweep_arms = [
        dataclasses.replace(arm(name, lr, args.cold_start), name=f"{name}@lr{lr:g}")
        for name in args.tune
        for lr in args.lrs
    ]
    sweep = Study(
        "gkd_lr_sweep", sweep_arms, baseline=f"{BASELINE}@lr{args.lrs[0]:g}", budget=sweep_budget, seeds=(0,),
        claim=False,
    )  # fmt: skip
    print(f"== learning-rate sweep: {len(sweep_arms)} runs, seed 0, {sweep_budget.describe()} each", flush=True)
    evaluate_final = final_set_evaluator(sweep, world)
    swept = run_study(sweep, [0], out / "sweep", None, world=world, extra=extra, after_run=evaluate_final)
    chosen, table = {}, {}
    for name in args.tune:
        scores = {lr: selection_accuracy(swept["runs"][f"{name}@lr{lr:g}/seed0"]) for lr in args.lrs}
        chosen[name] = max(args.lrs, key=lambda lr: (scores[lr], -lr))
        table[name] = {f"{lr:g}": scores[lr] for lr in args.lrs}
        print(f"   {name}: selection accuracy by lr {table[name]} -> lr {chosen[name]:g}", flush=True)
    on_policy_lr = chosen.get("on_policy_64x1", chosen[BASELINE])  # untuned: the baseline's choice
    lr_of = {name: chosen[BASELINE] if name == BASELINE else on_policy_lr for name in args.arms}

    # 2. the study: every arm, every seed; the sweep's seed-0 runs of the chosen settings are reused
    study = Study(
        "gkd_distinct_prompts",
        [arm(name, lr_of[name], args.cold_start) for name in args.arms],
        baseline=BASELINE,
        budget=budget,
        seeds=tuple(args.seeds),
    )
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"study": study.name, "runs": {}}
    for name in args.tune:
        key = f"{name}@lr{lr_of[name]:g}/seed0"
        reusable = args.sweep_prompts == args.prompts and name in args.arms and 0 in args.seeds
        if reusable and f"{name}/seed0" not in results["runs"]:
            results["runs"][f"{name}/seed0"] = swept["runs"][key]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results_path, results)
    print(f"== study: {len(study.arms)} arms x {len(study.seeds)} seeds, {budget.describe()} each", flush=True)
    results = run_study(study, None, out, None, world=world, extra=extra, after_run=final_set_evaluator(study, world))

    base = base_evaluation(out, world, n=1, test=world / study.final_set, name="base_final_set")
    payload = study_results(study, results, base["greedy_scores"], selection_n=415)
    payload["lr_sweep"] = {
        "seed": 0, "prompts": args.sweep_prompts, "selection_accuracy": table, "chosen": chosen,
        "learning_rates": {name: lr_of[name] for name in args.arms},
    }  # fmt: skip
    payload["wall_note"] = "wall_s: the whole main_ppo run (start-up, validations every 640 prompts, checkpoint)"
    payload["vs_initial"] = vs_initial(payload)
    write_results(HERE / "results.json", payload)
    plot_study(payload, HERE / "study.png", "Whose sequences: teacher, student or a mix (equal distinct prompts)")
    text = results_table(payload) + "\n\nEach arm against the base student (same problems, pooled over seeds):\n"
    for name, row in payload["vs_initial"].items():
        counts = f"{row['only_base']} / {row['only_arm']}"
        text += f"- {name}: base-only / arm-only {counts}, pooled p = {row['p_value']:.2g}\n"
    write_text_atomic(out / "table.md", text)
    print(text)


def vs_initial(payload: dict) -> dict:
    """Per arm: the exact sign-flip test (stratified by seed) of its final-set scores against the base student's."""
    from verl_frontier.studies.report import decode_scores
    from verl_frontier.studies.stats import pooled_mcnemar_exact

    base = decode_scores(payload["initial_scores"])
    out = {}
    for name, arm in payload["arms"].items():
        pairs = [(base, decode_scores(arm["runs"][str(seed)]["final_scores"])) for seed in arm["seeds"]]
        pooled = pooled_mcnemar_exact(pairs)
        out[name] = {"only_base": pooled["only_baseline"], "only_arm": pooled["only_arm"], "p_value": pooled["p_value"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
