"""ASGLD vs AdamW in the tiny world, on a run where the optimizer has something to do: the Distilling-the-
Essence offline KD of the tiny student (``recipes/essence``, full sequence, r = 1), which moves held-out greedy
accuracy by ~10 points in 96 steps (GRPO does not move the tiny student measurably, see the README).

The AdamW arm is the essence study's ``full_r1.0`` arm (same recipe, seed, steps, lr 3e-3, 415 held-out
problems); ``--optimizer AdamW --lr X`` runs verl's AdamW at another learning rate.

    python recipes/asgld_grpo/tiny_kd_compare.py [--optimizer ASGLD|ASG|AGLD|AdamW] [--lr 3e-3] [--steps 96]

Writes ``recipes/asgld_grpo/tiny_kd_compare.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from verl_frontier.arguments import POSITIVE_FLOAT, POSITIVE_INT, ArgumentParser, output_dir
from verl_frontier.studies import Arm, full_world, run_arm, write_json_atomic
from verl_frontier.tinyworld.paths import repo_root


def optimizer_overrides(name: str, lr: float) -> list[str]:
    if name == "AdamW":  # verl's default optimizer
        return [f"actor_rollout_ref.actor.optim.lr={lr}"]
    return [
        "actor_rollout_ref.actor.optim.optimizer_impl=verl_frontier.asgld.optimizers",
        f"actor_rollout_ref.actor.optim.optimizer={name}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        *ASGLD_SETTINGS,
    ]


ASGLD_SETTINGS = [
    "actor_rollout_ref.actor.optim.weight_decay=0.0",
    "actor_rollout_ref.actor.optim.override_optimizer_config={noise_scale:1e-3,noise_threshold:1e-4,rho:0.999,seed:0}",
]
COMMON = [
    "actor_rollout_ref.essence.segments=[prompt,cot,answer]",
    "actor_rollout_ref.essence.truncate_ratio=1.0",
    "data.val_max_samples=415",
]


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=POSITIVE_INT, default=96)
    parser.add_argument("--optimizer", default="ASGLD", choices=["AdamW", "ASG", "AGLD", "ASGLD"])
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-3)
    parser.add_argument("--out", type=output_dir, default=repo_root() / "outputs" / "asgld_kd_compare")
    args = parser.parse_args(argv)

    arm = Arm(f"{args.optimizer.lower()}_lr{args.lr:g}", "essence", "essence_tiny",
              COMMON + optimizer_overrides(args.optimizer, args.lr))  # fmt: skip
    path = Path(__file__).resolve().parent / "tiny_kd_compare.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    run = run_arm(arm, 0, args.out / arm.name, args.steps, args.steps, world=full_world())
    results[arm.name] = {"val_acc": {str(k): v for k, v in run["val_acc"].items()}, "wall_s": run["wall_s"]}
    write_json_atomic(path, results)
    print(arm.name, results[arm.name], flush=True)


if __name__ == "__main__":
    main()
