"""Time saved by computing only on the frontier: Paced with ``algorithm.paced.drop_zero_weight`` on vs off.

Both runs are the same tiny recipe (``paced_distill_tiny``, forward KL, w = p(1-p)) through verl's real trainer
on CPU, same seed and steps, micro-batches of 4 rows in both; the legacy trainer, where zero-weight groups skip
both the teacher query (inside generation) and the backward pass. Reports per-step means over steps 2..N (step 1
includes warm-up) of verl's ``timing_s/gen`` (rollout + reward + teacher), ``timing_s/update_actor`` and
``timing_s/step``, the fraction of rows dropped before the backward pass and of rollouts whose teacher query was
skipped, and the on/off ratios.

    python benchmarks/paced_frontier_drop.py [--steps 6] [--trainer legacy|v1] [--out FILE.json]
"""

from __future__ import annotations

import json
import statistics

from verl_frontier.arguments import POSITIVE_INT, SEED, ArgumentParser, output_dir, output_file
from verl_frontier.studies import Arm, read_metrics, run_arm, write_json_atomic
from verl_frontier.tinyworld.paths import repo_root

#: one prompt group per micro-batch (n = 4), so a trimmed mini-batch still splits into micro-batches
MICRO = "ppo_micro_batch_size_per_gpu=4"
TIMINGS = ("timing_s/gen", "timing_s/update_actor", "timing_s/step")


def step_means(metrics: dict[int, dict], first: int = 2) -> dict[str, float]:
    steps = [data for step, data in sorted(metrics.items()) if step >= first and "timing_s/step" in data]
    out = {key: statistics.fmean(d[key] for d in steps) for key in TIMINGS if all(key in d for d in steps)}
    samples = sum(d.get("actor/paced/actor_samples", 0) for d in steps)
    if samples:
        skipped = sum(d.get("actor/paced/actor_teacher_skipped_samples", 0) for d in steps)
        out["teacher_skipped_frac_of_actor_rows"] = skipped / samples
    dropped = [d["paced/dropped_sample_frac"] for d in steps if "paced/dropped_sample_frac" in d]
    if dropped:
        out["dropped_sample_frac"] = statistics.fmean(dropped)
    out["zero_weight_prompt_frac"] = statistics.fmean(d["paced/zero_weight_prompt_frac"] for d in steps)
    return out


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=POSITIVE_INT, default=6)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--trainer", choices=["legacy", "v1"], default="legacy")
    parser.add_argument("--work", type=output_dir, default=repo_root() / "outputs" / "paced_frontier_drop")
    parser.add_argument(
        "--out", type=output_file, default=repo_root() / "benchmarks" / "results" / "paced_frontier_drop.json"
    )
    args = parser.parse_args(argv)

    from verl_frontier.tinyworld import build
    from verl_frontier.tinyworld.paths import world_dir

    world = world_dir("full", 0)
    build(out=world, seed=0, size="full")
    use_v1 = f"trainer.use_v1={'true' if args.trainer == 'v1' else 'false'}"
    results = {}
    for name, drop in (("drop_on", "true"), ("drop_off", "false")):
        overrides = [use_v1, f"algorithm.paced.drop_zero_weight={drop}", f"actor_rollout_ref.actor.{MICRO}"]
        arm = Arm(name, "paced_distill", "paced_distill_tiny", overrides)
        run = run_arm(arm, args.seed, args.work / name, args.steps, test_freq=-1, world=world,
                      extra=["trainer.val_before_train=false"])  # fmt: skip
        results[name] = {**step_means(read_metrics(args.work / name / "metrics.jsonl")), "wall_s": run["wall_s"]}
        print(name, json.dumps(results[name], indent=1), flush=True)
    on, off = results["drop_on"], results["drop_off"]
    ratios = {key: on[key] / off[key] for key in TIMINGS if key in on and key in off and off[key] > 0}
    payload = {"trainer": args.trainer, "steps": args.steps, "seed": args.seed, **results, "ratio_on_over_off": ratios}
    write_json_atomic(args.out, payload)
    print("ratio on/off:", {k: round(v, 3) for k, v in ratios.items()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
