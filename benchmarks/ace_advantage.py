"""ACE advantage cost vs verl's ``grpo`` on one large step: 8,192 groups x 8 rollouts = 65,536 rollouts.

Both go through verl's own ``verl.trainer.ppo.ray_trainer.compute_advantage`` on the same DataProto contents,
as the trainers call it: ``adv_estimator="grpo"`` (verl's estimator) and ``adv_estimator="ace"`` with
``base_estimator=grpo`` (verl's estimator, then ACE's modulation from ``old_log_probs``/``ref_log_prob``
through the verl_frontier hook). Runs are interleaved (grpo, ace, grpo, ace, ...) and the medians compared;
the ACE-only part (:func:`verl_frontier.ace.advantage.ace_advantages` on given base advantages) is timed too.
Target: ACE / grpo <= 1.2.

    python benchmarks/ace_advantage.py [--groups 8192] [--n 8] [--length 512] [--repeats 11]
        [--out benchmarks/results/ace_advantage.json]
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_file, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.2


def make_inputs(groups: int, n: int, length: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    bs = groups * n
    lengths = torch.randint(1, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(torch.int64)
    rewards = torch.zeros(bs, length)
    rewards[torch.arange(bs), lengths - 1] = torch.randint(0, 2, (bs,), generator=gen).float()
    old = -torch.rand(bs, length, generator=gen) * 2
    ref = old + 0.1 * torch.randn(bs, length, generator=gen)
    uids = np.array([f"uid-{i // n}" for i in range(bs)], dtype=object)
    return {"token_level_rewards": rewards, "response_mask": mask, "old_log_probs": old, "ref_log_prob": ref}, uids


def data_proto(tensors: dict, uids):
    from verl.protocol import DataProto

    return DataProto.from_dict(tensors=dict(tensors), non_tensors={"uid": uids})


def timed(fn) -> float:
    gc.collect()  # a collection inside one timed call would land on whichever estimator happened to trigger it
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=POSITIVE_INT, default=8192)
    parser.add_argument("--n", type=POSITIVE_INT, default=8)
    parser.add_argument("--length", type=POSITIVE_INT, default=512)
    parser.add_argument("--repeats", type=POSITIVE_INT, default=11)
    parser.add_argument("--out", type=output_file, default=str(REPO / "benchmarks" / "results" / "ace_advantage.json"))
    args = parser.parse_args(argv)

    from omegaconf import OmegaConf
    from verl.trainer.ppo import ray_trainer

    import verl_frontier.ace.verl_plugin  # noqa: F401 - registers `ace` and installs the hook
    from verl_frontier.ace.advantage import ace_advantages

    tensors, uids = make_inputs(args.groups, args.n, args.length)
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "ace": {"base_estimator": "grpo", "alpha": 1.0}})

    def run(name):
        data = data_proto(tensors, uids)
        seconds = timed(lambda: ray_trainer.compute_advantage(data, name, norm_adv_by_std_in_grpo=True, config=config))
        return seconds, data.batch["advantages"]

    run("grpo"), run("ace")  # warm-up
    times = {"grpo": [], "ace": []}
    for _ in range(args.repeats):
        for name in ("grpo", "ace"):
            seconds, advantages = run(name)
            times[name].append(seconds)
    base = run("grpo")[1]
    only = [
        timed(lambda: ace_advantages(base, tensors["old_log_probs"], tensors["ref_log_prob"], tensors["response_mask"]))
        for _ in range(args.repeats)
    ]
    grpo_s, ace_s, only_s = (statistics.median(x) for x in (times["grpo"], times["ace"], only))
    ratio = ace_s / grpo_s
    result = {
        "rollouts": args.groups * args.n,
        "groups": args.groups,
        "n": args.n,
        "response_length": args.length,
        "repeats": args.repeats,
        "grpo_median_s": grpo_s,
        "ace_median_s": ace_s,
        "ace_modulation_only_median_s": only_s,
        "ratio_ace_over_grpo": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "grpo_s": times["grpo"],
        "ace_s": times["ace"],
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    print(
        f"{result['rollouts']:,} rollouts x {args.length} tokens: verl grpo {grpo_s:.3f} s, ACE(grpo) {ace_s:.3f} s "
        f"(modulation alone {only_s:.3f} s); ratio {ratio:.3f} (target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
