"""Outside cross-check of the gkd_mix study: TRL's GKD (trl 1.16, its own virtualenv) on the same tiny teacher,
student, rows, budget and learning rate, paired against our verl arms problem by problem.

For each lambda in ``--lmbdas`` and each seed, runs ``recipes/gkd_mix/trl_crosscheck.py`` in ``.venv-trl`` (skipped
when its JSON exists; under the machine lock): ``GKDTrainer`` with that lambda, beta = 0 (forward KL, as
``forward_kl_topk`` over the whole vocabulary), 64 rows per step for the study's budget / 64 steps, the study's
learning rate, final greedy evaluation on the held-out set. Then pairs each TRL run with the study's arm of the
same lambda and seed (``kd_teacher_sequences`` = 0, ``mix_lambda_0.5`` = 0.5, ``on_policy_64x1`` = 1, from the
study's results.json) and with the base student: exact McNemar per seed, pooled over seeds (sign-flip test
stratified by seed), mean and 95 % t-interval per side.

TRL's lambda is a coin flip per step (the whole batch on-policy or replayed); gkd_mix puts a fixed share of each
step's prompts on-policy. Lambda 0 and 1 are the same in both; 0.5 differs in how the rows are mixed.

    python recipes/gkd_mix/trl_compare.py [--lmbdas 0 1 0.5] [--seeds 0 1 2]
        [--study recipes/gkd_mix/results.json] [--out outputs/trl_crosscheck]

Writes ``recipes/gkd_mix/trl_crosscheck.json`` and prints the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from verl_frontier.arguments import PROBABILITY, SEED, ArgumentParser, output_dir, write_text_atomic
from verl_frontier.studies import machine_lock
from verl_frontier.studies.report import decode_scores
from verl_frontier.studies.stats import pooled_mcnemar_exact, t_interval

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARM_OF_LAMBDA = {0.0: "kd_teacher_sequences", 0.5: "mix_lambda_0.5", 1.0: "on_policy_64x1"}


def trl_run(world: Path, lmbda: float, seed: int, steps: int, lr: float, out: Path) -> dict:
    """The TRL run's JSON (run it first when missing)."""
    path = out / f"gkd_l{lmbda:g}_s{seed}.json"
    if not path.exists():
        python = REPO / ".venv-trl" / "bin" / "python"
        if not python.exists():
            raise SystemExit("error: .venv-trl is missing (see benchmarks/README.md: TRL lives in its own venv)")
        cmd = [str(python), str(HERE / "trl_crosscheck.py"), "--world", str(world), "--steps", str(steps),
               "--seed", str(seed), "--lmbda", f"{lmbda:g}", "--beta", "0", "--lr", f"{lr:g}",
               "--out", str(path)]  # fmt: skip
        print("$ " + " ".join(cmd), flush=True)
        with machine_lock():
            subprocess.run(cmd, check=True, cwd=REPO)
    return json.loads(path.read_text())


def side(scores: list[list[int]]) -> dict:
    finals = [sum(s) / len(s) for s in scores]
    return {"per_seed": finals, "mean": t_interval(finals)}


def paired(a: list[list[int]], b: list[list[int]]) -> dict:
    pooled = pooled_mcnemar_exact(list(zip(a, b)))
    return {"only_first": pooled["only_baseline"], "only_second": pooled["only_arm"], "p_value": pooled["p_value"],
            "per_seed_p": [r["p_value"] for r in pooled["per_seed"]]}  # fmt: skip


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmbdas", type=PROBABILITY, nargs="+", default=[0.0, 1.0, 0.5])
    parser.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2])
    parser.add_argument("--study", type=Path, default=HERE / "results.json", help="the gkd_mix study's results.json")
    parser.add_argument("--out", type=output_dir, default=REPO / "outputs" / "trl_crosscheck")
    args = parser.parse_args(argv)
    missing = [lm for lm in args.lmbdas if lm not in ARM_OF_LAMBDA]
    if missing:
        parser.error(f"argument --lmbdas: {missing[0]:g} has no study arm (one of {sorted(ARM_OF_LAMBDA)})")
    if len(args.seeds) < 2:
        parser.error("argument --seeds: at least 2 seeds (an interval over seeds)")
    if not args.study.is_file():
        parser.error(f"argument --study: {args.study} does not exist (run recipes/gkd_mix/reproduce.py first)")

    from verl_frontier.studies import full_world
    from verl_frontier.studies.report import load_results

    study = load_results(args.study)
    world = full_world()
    steps = study["budget"]["amount"] // 64
    base = decode_scores(study["initial_scores"])
    rows = {}
    for lmbda in args.lmbdas:
        arm = study["arms"].get(ARM_OF_LAMBDA[lmbda])
        if arm is None:
            parser.error(f"argument --lmbdas: the study has no arm {ARM_OF_LAMBDA[lmbda]}")
        lr = float(study["lr_sweep"]["learning_rates"][ARM_OF_LAMBDA[lmbda]])
        ours = [decode_scores(arm["runs"][str(s)]["final_scores"]) for s in args.seeds]
        trl = []
        for seed in args.seeds:
            run = trl_run(world, lmbda, seed, steps, lr, args.out)
            if run["eval"]["num_problems"] != len(base):
                raise SystemExit(f"error: TRL run lambda {lmbda:g} seed {seed} was evaluated on another set")
            trl.append([int(s) for s in run["eval"]["greedy_scores"]])
        rows[f"{lmbda:g}"] = {
            "study_arm": ARM_OF_LAMBDA[lmbda], "lr": lr, "steps": steps,
            "trl": side(trl), "verl": side(ours),
            "trl_vs_verl": paired(ours, trl), "trl_vs_base": paired([base] * len(trl), trl),
        }  # fmt: skip
    payload = {"base_accuracy": sum(base) / len(base), "seeds": args.seeds, "budget": study["budget"], "rows": rows}
    write_text_atomic(HERE / "trl_crosscheck.json", json.dumps(payload, indent=2) + "\n")
    print(f"TRL GKD vs our verl arms, {study['budget']['description']}, held-out set ({len(base)} problems), "
          f"base {payload['base_accuracy']:.3f}\n")  # fmt: skip
    header = ("lambda", "verl arm", "verl mean [95 % CI]", "TRL mean [95 % CI]", "TRL-only / verl-only, pooled p",
              "TRL vs base p")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|")
    for lmbda, row in rows.items():
        v, t = row["verl"]["mean"], row["trl"]["mean"]
        print(f"| {lmbda} | {row['study_arm']} | {v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}] | "
              f"{t['mean']:.3f} [{t['low']:.3f}, {t['high']:.3f}] | {row['trl_vs_verl']['only_second']} / "
              f"{row['trl_vs_verl']['only_first']}, p = {row['trl_vs_verl']['p_value']:.2g} | "
              f"{row['trl_vs_base']['p_value']:.2g} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
