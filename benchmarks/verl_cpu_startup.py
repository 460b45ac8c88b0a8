"""verl on CPU: time to first step, steady step time and peak memory (PSS) of the whole process tree.

Tiny GRPO (a ~0.4 M-parameter Qwen2, 4 prompts x n=4, 32 response tokens) through the real
`python -m verl.trainer.main_ppo +platform=cpu`, on the v1 and the legacy trainer, each run twice in this
process: with verl's default worker counts and v1 poll interval ("verl defaults", the baseline) and with
the `+platform=cpu` settings ("platform=cpu"). Prints the figures, their ratios to the baseline, and the
targets (ready <= 45 s, steady step <= 0.5 s, PSS <= 4 GiB).

    python benchmarks/verl_cpu_startup.py [--steps 6] [--out benchmarks/results/verl_cpu_startup.json]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_file, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ready_s": 45.0, "steady_step_s": 0.5, "peak_pss_gib": 4.0}

# verl 0.9.1's own defaults for what +platform=cpu trims (see verl_cpu/config/platform/cpu.yaml, patches.py)
VERL_DEFAULTS = [
    "actor_rollout_ref.rollout.agent.num_workers=8",
    "reward.num_workers=8",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=8",
    "data.dataloader_num_workers=8",
]


def make_world(root: Path) -> Path:
    """A 0.4 M-parameter Qwen2 student (random init) with the tiny-world tokenizer and data."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from verl_frontier.tinyworld import build
    from verl_frontier.tinyworld.tokenizer import build_tokenizer

    world = root / "world"
    build(out=world, seed=0, size="small", quiet=True, progress=False)
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=96, intermediate_size=384, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(world / "bench_student")
    tokenizer.save_pretrained(world / "bench_student")
    return world


def tree_pss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_once(world: Path, out: Path, legacy: bool, defaults: bool, steps: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics), "RAY_USAGE_STATS_ENABLED": "0"}
    if defaults:
        env["VERL_CPU_POLL_INTERVAL"] = "2.0"  # verl's ReplayBuffer default
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(REPO / "recipes" / "grpo_baseline"), "--config-name", "grpo_baseline_tiny",
        "+platform=cpu",
        f"actor_rollout_ref.model.path={world / 'bench_student'}",
        f"data.train_files={world / 'data' / 'train.parquet'}", f"data.val_files={world / 'data' / 'test.parquet'}",
        "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.rollout.n=4",
        "data.max_response_length=32", "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
        f"trainer.use_v1={not legacy}", f"trainer.total_training_steps={steps}", "trainer.val_before_train=false",
        "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.logger=[console,file]",
        f"trainer.default_local_dir={out / 'ckpt'}",
        *(VERL_DEFAULTS if defaults else []),
    ]  # fmt: skip
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
        root = psutil.Process(proc.pid)
        peak, ready, processes = 0, None, 0
        while proc.poll() is None:
            try:
                peak = max(peak, tree_pss(root))
                processes = max(processes, len(root.children(recursive=True)) + 1)
            except psutil.NoSuchProcess:
                pass
            if ready is None and metrics.exists() and metrics.stat().st_size > 0:
                ready = time.perf_counter() - start
            time.sleep(0.5)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    step_times = [r["data"]["timing_s/step"] for r in records if "timing_s/step" in r["data"]]
    gen_times = [r["data"]["timing_s/gen"] for r in records if "timing_s/gen" in r["data"]]
    return {
        "trainer": "legacy" if legacy else "v1",
        "settings": "verl defaults" if defaults else "platform=cpu",
        "returncode": proc.returncode,
        # ready to train = first metrics record minus the first step's own duration
        "ready_s": round(ready - step_times[0], 1) if ready and step_times else None,
        "first_step_s": round(step_times[0], 2) if step_times else None,
        "steady_step_s": round(statistics.median(step_times[1:]), 3) if len(step_times) > 1 else None,
        "steady_gen_s": round(statistics.median(gen_times[1:]), 3) if len(gen_times) > 1 else None,
        "peak_pss_gib": round(peak / 2**30, 2),
        "max_processes": processes,
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=POSITIVE_INT, default=6)
    parser.add_argument("--out", type=output_file, default=REPO / "benchmarks" / "results" / "verl_cpu_startup.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp))
        for legacy in (False, True):
            for defaults in (True, False):
                result = run_once(world, Path(tmp) / f"{legacy}-{defaults}", legacy, defaults, args.steps)
                results.append(result)
                print(json.dumps(result), flush=True)
    print("\n| trainer | settings | ready (s) | steady step (s) | gen (s) | peak PSS (GiB) | processes |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['trainer']} | {r['settings']} | {r['ready_s']} | {r['steady_step_s']} | {r['steady_gen_s']} "
            f"| {r['peak_pss_gib']} | {r['max_processes']} |"
        )
    print("\nratios platform=cpu / verl defaults (same run):")
    for trainer in ("v1", "legacy"):
        base = next(r for r in results if r["trainer"] == trainer and r["settings"] == "verl defaults")
        ours = next(r for r in results if r["trainer"] == trainer and r["settings"] == "platform=cpu")
        ok = ours["returncode"] == 0 and base["returncode"] == 0
        ratios = {
            key: round(ours[key] / base[key], 2) if ok and ours[key] and base[key] else None
            for key in ("ready_s", "steady_step_s", "peak_pss_gib")
        }
        verdict = {key: ours[key] is not None and ours[key] <= target for key, target in TARGETS.items()}
        print(f"  {trainer}: {ratios}  meets targets {TARGETS}: {verdict}")
    write_text_atomic(args.out, json.dumps({"targets": TARGETS, "results": results}, indent=2))


if __name__ == "__main__":
    main()
