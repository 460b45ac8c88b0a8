"""ORBIT in the tiny world, through verl's real trainer on CPU: does multi-episode GRPO teach the tiny student
to reuse, in episodes 2-3, what episode 1 revealed?

Task: guess the number 1..8 with higher/lower feedback, **2 guesses per episode**, 3 episodes of the same
secret in one chat (``[Episode k]`` headers), trial reward = number of successful episodes. Searching from
scratch finds the secret in 2 guesses 3 times in 8 (guess 4, then 2 or 6); reusing the range narrowed by
earlier episodes finds it far more often (a perfect reuser: episodes 2-3 almost always).

1. data: ``verl_frontier.orbit.data`` (tiny preset, ``max_turns=2``; 512 training seeds, 64 held-out seeds);
2. warm start (``verl_frontier.orbit.warm_start``): SFT of the tiny student on scripted trials rendered by the
   real agent loop; the scripted player binary-searches and reuses earlier episodes only 30 % of the time;
3. ORBIT GRPO from the warm start (``orbit_tiny`` + overrides below), held-out validation before training and
   every ``--test-freq`` steps: n = 4 sampled trials (temperature 1) per held-out seed, per-episode success.

    python recipes/orbit/reproduce.py [--seeds 0] [--steps 40] [--out outputs/orbit_study] [hydra overrides...]

Writes ``<out>/results.json`` (resumable), prints a markdown table, saves ``recipes/orbit/orbit_tiny_world.png``
and ``recipes/orbit/results.json``.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, savefig_atomic
from verl_frontier.studies import Arm, Study, full_world, publish_results, run_study, study_parser

EPISODES = 3
VAL_N = 4
ENV = "guess_number"
EPISODE_KEYS = tuple(f"val-aux/orbit/{ENV}/episode_{k}_success/mean@{VAL_N}" for k in range(1, EPISODES + 1))
TRAIN_KEYS = ("critic/score/mean", "response_length/mean")
REUSE_PROB = 0.3


def data_config():
    from verl_frontier.orbit.data import PRESETS

    return replace(
        PRESETS["tiny"],
        env_kwargs={ENV: {"low": 1, "high": 8, "max_turns": 2}},
        train_size=512,
        val_seeds_per_env=64,
    )


def prepare(world: Path, warm_steps: int) -> tuple[Path, dict]:
    """Data and the warm-started student (cached in the world directory)."""
    from verl_frontier.orbit.data import build_rows, write
    from verl_frontier.orbit.warm_start import scripted_trials, warm_start

    data_dir = world / "orbit_reuse"
    cfg = data_config()
    if not (data_dir / "test.parquet").exists():
        write(cfg, data_dir)
    warm = data_dir / "warm_student"
    if not (warm / "warm_start.json").exists():
        train, _ = build_rows(cfg)
        warm_start(world / "student", train, warm, reuse_prob=REUSE_PROB, steps=warm_steps, seed=0)
    stats = json.loads((warm / "warm_start.json").read_text())
    # what the scripted players score on the held-out seeds (reference lines for the plot)
    from transformers import AutoTokenizer

    _, val = build_rows(cfg)
    tokenizer = AutoTokenizer.from_pretrained(warm)
    for name, q in (("scripted_reuse_0.3", REUSE_PROB), ("scripted_reuse_1.0", 1.0), ("scripted_no_reuse", 0.0)):
        trials = scripted_trials(val * 8, tokenizer, q, 1, 64, 256)
        stats[name] = [statistics.fmean(t.successes[k] for t in trials) for k in range(EPISODES)]
    return data_dir, stats


def arm(data_dir: Path) -> Arm:
    return Arm(
        "orbit_guess_reuse",
        "orbit",
        "orbit_tiny",
        [
            f"actor_rollout_ref.model.path={data_dir / 'warm_student'}",
            f"data.train_files={data_dir / 'train.parquet'}",
            f"data.val_files={data_dir / 'test.parquet'}",
            "data.max_response_length=256",
            "data.train_batch_size=8",
            "actor_rollout_ref.rollout.n=8",
            "actor_rollout_ref.actor.ppo_mini_batch_size=8",
            f"actor_rollout_ref.rollout.val_kwargs.n={VAL_N}",
            "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
            "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",
        ],
    )


def episode_curve(run: dict) -> dict[int, list[float]]:
    """step -> [episode-1, episode-2, episode-3 held-out success]."""
    out = {}
    for step, data in run["kept_metrics"].items():
        if all(k in data for k in EPISODE_KEYS):
            out[int(step)] = [float(data[k]) for k in EPISODE_KEYS]
    return out


def summary(results: dict, name: str) -> dict:
    runs = [run for key, run in results["runs"].items() if key.split("/")[0] == name]
    befores, afters = [], []
    for run in runs:
        curve = episode_curve(run)
        befores.append(curve[min(curve)])
        afters.append(curve[max(curve)])

    def mean_sd(values):
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    row = {"seeds": len(runs), "steps": runs[0]["steps"], "wall_s": statistics.fmean(r["wall_s"] for r in runs)}
    for label, table in (("before", befores), ("after", afters)):
        row[label] = [mean_sd([t[k] for t in table]) for k in range(EPISODES)]
        row[f"{label}_margin"] = mean_sd([t[-1] - t[0] for t in table])
    return row


def markdown(row: dict, stats: dict) -> str:
    lines = [
        "| policy | episode 1 | episode 2 | episode 3 | margin ep3 − ep1 |",
        "|---|---|---|---|---|",
    ]
    for label, name in (("scripted, no reuse", "scripted_no_reuse"), ("scripted, reuse 30 %", "scripted_reuse_0.3"),
                        ("scripted, always reuse", "scripted_reuse_1.0")):  # fmt: skip
        s = stats[name]
        lines.append(f"| {label} | {s[0]:.3f} | {s[1]:.3f} | {s[2]:.3f} | {s[2] - s[0]:+.3f} |")
    for label, key in (("warm-started student (step 0)", "before"), (f"after ORBIT, {row['steps']} steps", "after")):
        cells = " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in row[key])
        m, sd = row[f"{key}_margin"]
        lines.append(f"| {label} | {cells} | {m:+.3f} ± {sd:.3f} |")
    return "\n".join(lines)


def plot(results: dict, name: str, row: dict, stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ep, ax_curve) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(1, EPISODES + 1))
    for label, name_, style in (("scripted, no reuse", "scripted_no_reuse", ":"),
                                ("scripted, always reuse", "scripted_reuse_1.0", "--")):  # fmt: skip
        ax_ep.plot(xs, stats[name_], color="gray", ls=style, label=label)
    for label, key, color in (("warm start (before ORBIT)", "before", "C0"), ("after ORBIT", "after", "C3")):
        ax_ep.errorbar(xs, [m for m, _ in row[key]], yerr=[sd for _, sd in row[key]], marker="o", color=color,
                       label=label, capsize=3)  # fmt: skip
    ax_ep.set_xticks(xs)
    ax_ep.set_xlabel("episode index within the trial")
    ax_ep.set_ylabel("held-out success rate")
    ax_ep.set_ylim(0, 1.05)
    ax_ep.legend(fontsize=8)
    for key, run in results["runs"].items():
        if key.split("/")[0] != name:
            continue
        curve = episode_curve(run)
        steps = sorted(curve)
        for k in range(EPISODES):
            ax_curve.plot(steps, [curve[s][k] for s in steps], marker="o", color=f"C{k}",
                          label=f"episode {k + 1} ({key.split('/')[1]})")  # fmt: skip
    ax_curve.set_xlabel("ORBIT training step")
    ax_curve.set_ylabel("held-out success rate")
    ax_curve.legend(fontsize=7)
    fig.suptitle("ORBIT, tiny world: guess 1..8, 2 guesses per episode, 3 episodes (verl on CPU)")
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = study_parser(__doc__, "orbit", seeds=[0, 1, 2], steps=40, test_freq=10)
    parser.add_argument("--warm-steps", type=POSITIVE_INT, default=300)
    args, extra = parser.parse_with_overrides(argv)

    world = full_world()
    data_dir, stats = prepare(world, args.warm_steps)
    chosen = arm(data_dir)
    study = Study("orbit_tiny_world", [chosen], metric_keys=(*EPISODE_KEYS, *TRAIN_KEYS))
    results = run_study(study, args.seeds, args.out, args.steps, args.test_freq, world=world, extra=extra)
    row = summary(results, chosen.name)
    print(markdown(row, stats))
    here = Path(__file__).resolve().parent
    plot(results, chosen.name, row, stats, here / "orbit_tiny_world.png")
    publish_results(here, args.out, {"summary": row, "warm_start": stats})


if __name__ == "__main__":
    main()
