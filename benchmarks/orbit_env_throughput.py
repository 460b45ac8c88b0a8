"""Environment steps per second for every ORBIT environment (one process, one core).

    python benchmarks/orbit_env_throughput.py [--seconds 1.0]

A random player sends well-formed ``\\boxed{...}`` actions (the text a model would produce, parsed by the
env); episodes are reset with a fresh seed when they end, and resets count in the time but not as steps.
Writes benchmarks/results/orbit_env_throughput.json. Target: >= 10,000 steps/s per core.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path

from verl_frontier.arguments import POSITIVE_FLOAT, ArgumentParser, output_file, write_text_atomic
from verl_frontier.orbit.envs import list_envs, make_env
from verl_frontier.orbit.multi_episode import MultiEpisodeEnv

TARGET = 10_000


def measure(name: str, seconds: float, multi_episode: bool = False) -> dict:
    env = make_env(name)
    rng = random.Random(0)
    actions = []
    env.reset(0)
    for _ in range(4096):  # pre-generate the action texts: measure the env, not the random player
        actions.append("Let me think. " + env.sample_random_action(rng))
    target = MultiEpisodeEnv(env) if multi_episode else env
    seed, steps, resets = 0, 0, 1
    target.reset(seed)
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for a in actions[steps % 4096 : steps % 4096 + 256] or actions[:256]:
            _, _, term, trunc, _ = target.step(a)
            steps += 1
            if term or trunc:
                seed += 1
                resets += 1
                target.reset(seed)
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "steps_per_second": round(steps / elapsed),
        "steps": steps,
        "episodes": resets,
        "seconds": round(elapsed, 3),
    }


def main(argv=None) -> dict:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=1.0)
    p.add_argument("--out", type=output_file, default=Path(__file__).parent / "results" / "orbit_env_throughput.json")
    args = p.parse_args(argv)
    envs = {name: measure(name, args.seconds) for name in list_envs()}
    trials = {name: measure(name, args.seconds, multi_episode=True) for name in list_envs()}
    result = {
        "what": "ORBIT env.step() calls per second, random well-formed boxed actions, 1 process",
        "target_steps_per_second": TARGET,
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
        },
        "envs": envs,
        "multi_episode_trials": trials,
        "all_envs_meet_target": all(v["steps_per_second"] >= TARGET for v in envs.values()),
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{'env':22s} {'steps/s':>10s} {'trial steps/s':>14s}")
    for name in envs:
        print(f"{name:22s} {envs[name]['steps_per_second']:>10,d} {trials[name]['steps_per_second']:>14,d}")
    return result


if __name__ == "__main__":
    main()
