"""Peer comparison with TRL: steady step time of on-policy distillation, our verl recipe vs TRL, one CPU process.

Runs in TRL's own virtualenv (`.venv-trl`: trl 1.16 beside verl 0.9.1 breaks verl's FSDP model build), never
imports verl. Same tiny world teacher/student/tokenizer/train prompts, same step: 16 prompts x 4 student samples
(temperature 1, max 96 new tokens), full-vocabulary forward KL(teacher || student) on the student's own tokens,
AdamW lr 3e-4 (weight decay 0.01, grad clip 1.0, constant lr), float32, one optimizer update per step.

TRL side (in this process, one after the other):

* `distillation`: `trl.DistillationTrainer` (stable API in trl 1.16; the trainer TRL points on-policy GKD users
  to): always on-policy (there is no lambda: it is lambda = 1), beta = 0 = forward KL (TRL's generalized JSD:
  beta 0 forward KL, 1 reverse KL), chunked loss. It samples one completion per row, so every prompt is 4
  consecutive rows and the sampler does not shuffle: a 64-row batch is 16 prompts x 4 samples.
* `gkd`: `trl.experimental.gkd.GKDTrainer` with lmbda = 1 (every step on-policy), beta = 0, the same rows
  (assistant message = the world's reference solution; unused at lmbda = 1), a sequential sampler.

Baseline ("ours", measured in the same run): `recipes/paced_distill/paced_distill_tiny.yaml` with
`algorithm.paced.alpha=0 algorithm.paced.beta=0` (uniform on-policy forward KL, top-k 102 = the vocabulary)
through verl's real trainer on CPU (`+platform=cpu`), started as a subprocess of the project venv's python
(`--verl-python`); `timing_s/step` from verl's file logger.

Step time = median over the steps after 2 warm-up steps (TRL: wall time from `on_step_begin` to `on_step_end`,
i.e. generation + teacher + loss + backward + optimizer). Ratio = our step / TRL's step (target <= 1.5).
Run it alone on the machine (it holds no lock itself; the verl run it starts is not nested in one):

    flock /tmp/verl-frontier-machine.lock .venv-trl/bin/python benchmarks/trl_distill_step.py \
        [--world .world/full-seed0] [--steps 10] [--trl distillation,gkd] \
        [--out benchmarks/results/trl_distill_step.json]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # GKDTrainer lives in trl.experimental
sys.path.insert(0, str(REPO))  # verl_frontier.arguments only (stdlib); verl is not installed in the TRL venv

from verl_frontier.arguments import (  # noqa: E402
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    ArgumentParser,
    csv_choices,
    output_file,
    tiny_world,
    write_text_atomic,
)

TARGET_RATIO = 1.5  # our step / TRL's step
WARMUP_STEPS = 2
TRL_TRAINERS = ("distillation", "gkd")


def default_world() -> Path:
    env = os.environ.get("FRONTIER_WORLD_DIR")
    return Path(env).expanduser() if env else REPO / ".world" / "full-seed0"


def train_rows(world: Path, prompts: int, samples: int, steps: int, seed: int) -> list[dict]:
    """``steps`` batches of ``prompts`` distinct training prompts, each repeated ``samples`` times in a row:
    ``{"prompt": messages, "messages": messages + [reference answer]}`` (TRL samples one completion per row)."""
    import pandas as pd

    df = pd.read_parquet(world / "data" / "train.parquet")
    need = prompts * steps
    order = df.sample(frac=1.0, random_state=seed).index.tolist()
    order = (order * (need // len(order) + 1))[:need]  # wraps around on a small world
    rows = []
    for i in order:
        row = df.loc[i]
        prompt = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        answer = {"role": "assistant", "content": str(row["extra_info"]["reference"])}
        rows += [{"prompt": prompt, "messages": [*prompt, answer]}] * samples
    return rows


class StepTimer:
    """A TrainerCallback (built lazily: transformers is imported only when TRL runs) recording each optimizer
    step's wall time (on_step_begin -> on_step_end) and the trainer's logs."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.steps: list[float] = []
                self.logs: list[dict] = []
                self._t0 = None

            def on_step_begin(self, args, state, control, **kwargs):
                self._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.steps.append(time.perf_counter() - self._t0)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs:
                    self.logs.append({"step": state.global_step, **logs})

        return _Timer()


def common_args(output_dir: str, args) -> dict:
    """TrainingArguments shared by both TRL trainers: CPU, float32, no checkpointing/saving/reporting."""
    return dict(
        output_dir=output_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=args.prompts * args.samples, gradient_accumulation_steps=1,
        max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, seed=args.seed,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        temperature=1.0, beta=0.0,
    )  # fmt: skip


def run_trl(name: str, args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.world / "student")
    student = AutoModelForCausalLM.from_pretrained(args.world / "student", dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.world / "teacher", dtype=torch.float32)
    rows = train_rows(args.world, args.prompts, args.samples, args.steps, args.seed)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        if name == "distillation":
            from trl import DistillationConfig, DistillationTrainer

            config = DistillationConfig(
                **common_args(tmp, args), max_completion_length=args.max_new_tokens, top_k=0, top_p=1.0,
                shuffle_dataset=False,  # rows are already 16 prompts x 4 per batch, in a seeded order
            )  # fmt: skip
            dataset = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
            trainer = DistillationTrainer(
                model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                processing_class=tokenizer, callbacks=[timer],
            )  # fmt: skip
        else:
            from trl.experimental.gkd import GKDConfig, GKDTrainer

            config = GKDConfig(
                **common_args(tmp, args), lmbda=1.0, max_new_tokens=args.max_new_tokens,
                train_sampling_strategy="sequential",
            )  # fmt: skip
            dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
            trainer = GKDTrainer(
                model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                processing_class=tokenizer, callbacks=[timer],
            )  # fmt: skip
            generate = trainer.generate_on_policy_outputs

            def counted(model, inputs, generation_config):  # GKD logs no completion lengths: count them here
                ids, mask, labels = generate(model, inputs, generation_config)
                n_tokens = (labels != -100).sum().item()
                timer.logs.append({"completions/mean_length": n_tokens / max(labels.size(0), 1)})
                return ids, mask, labels

            trainer.generate_on_policy_outputs = counted
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    steady = timer.steps[WARMUP_STEPS:]
    lengths = [log["completions/mean_length"] for log in timer.logs if "completions/mean_length" in log]
    losses = [log["loss"] for log in timer.logs if "loss" in log]
    return {
        "trainer": {"distillation": "trl.DistillationTrainer", "gkd": "trl.experimental.gkd.GKDTrainer"}[name],
        "steps": len(timer.steps),
        "step_times_s": [round(t, 4) for t in timer.steps],
        "steady_step_s": round(statistics.median(steady), 4) if steady else None,
        "first_step_s": round(timer.steps[0], 3) if timer.steps else None,
        "train_wall_s": round(wall, 1),
        "mean_completion_tokens": round(statistics.fmean(lengths), 1) if lengths else None,
        "losses": [round(x, 4) for x in losses],
        "torch_threads": torch.get_num_threads(),
    }


def run_verl(args) -> dict:
    """Our uniform on-policy distillation step through verl (a subprocess of the project venv)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        metrics = out / "metrics.jsonl"
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics), "RAY_USAGE_STATS_ENABLED": "0",
               "FRONTIER_WORLD_DIR": str(args.world.resolve())}  # fmt: skip
        cmd = [
            str(args.verl_python), "-m", "verl.trainer.main_ppo",
            "--config-path", str(REPO / "recipes" / "paced_distill"), "--config-name", "paced_distill_tiny",
            "+platform=cpu", "algorithm.paced.alpha=0", "algorithm.paced.beta=0",
            f"trainer.use_v1={'true' if args.verl_trainer == 'v1' else 'false'}",
            f"data.seed={args.seed}", f"actor_rollout_ref.actor.optim.lr={args.lr}",
            f"data.max_response_length={args.max_new_tokens}", f"data.train_batch_size={args.prompts}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
            f"actor_rollout_ref.rollout.n={args.samples}",
            f"trainer.total_training_steps={args.steps}", "trainer.val_before_train=false", "trainer.test_freq=-1",
            "trainer.save_freq=-1", "trainer.resume_mode=disable", "trainer.logger=[console,file]",
            f"trainer.default_local_dir={out / 'ckpt'}",
        ]  # fmt: skip
        start = time.perf_counter()
        with open(out / "log.txt", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
        if proc.returncode != 0 or not records:
            tail = "\n".join((out / "log.txt").read_text().splitlines()[-25:])
            raise RuntimeError(f"verl run failed (exit {proc.returncode}):\n{tail}")
    steps = [r["data"] for r in sorted(records, key=lambda r: r["step"]) if "timing_s/step" in r["data"]]
    times = [d["timing_s/step"] for d in steps]
    steady = times[WARMUP_STEPS:]
    lengths = [d["response_length/mean"] for d in steps if "response_length/mean" in d]
    return {
        "trainer": f"verl {args.verl_trainer} trainer, paced_distill_tiny alpha=0 beta=0 (+platform=cpu)",
        "steps": len(times),
        "step_times_s": [round(t, 4) for t in times],
        "steady_step_s": round(statistics.median(steady), 4) if steady else None,
        "steady_timing_s": {  # medians of verl's own step breakdown over the same steps
            key: round(statistics.median(d[key] for d in steps[WARMUP_STEPS:]), 4)
            for key in sorted(steps[0])
            if key.startswith("timing_s/") and all(key in d for d in steps[WARMUP_STEPS:])
        }
        if steady
        else {},
        "first_step_s": round(times[0], 3) if times else None,
        "wall_s": round(wall, 1),
        "mean_completion_tokens": round(statistics.fmean(lengths), 1) if lengths else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=tiny_world, default=None, help="tiny world dir [.world/full-seed0]")
    parser.add_argument("--steps", type=POSITIVE_INT, default=10, help="steps per run (the first 2 are warm-up)")
    parser.add_argument("--prompts", type=POSITIVE_INT, default=16, help="prompts per step")
    parser.add_argument("--samples", type=POSITIVE_INT, default=4, help="student samples per prompt")
    parser.add_argument("--max-new-tokens", type=POSITIVE_INT, default=96)
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-4)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--trl", type=csv_choices(*TRL_TRAINERS), default=list(TRL_TRAINERS))
    parser.add_argument("--verl-python", type=Path, default=REPO / ".venv" / "bin" / "python",
                        help="python of the project venv (runs our verl baseline)")  # fmt: skip
    parser.add_argument("--verl-trainer", choices=["legacy", "v1"], default="legacy")
    parser.add_argument("--no-verl", action="store_true", help="skip our verl baseline (no ratio)")
    parser.add_argument("--out", type=output_file, default=REPO / "benchmarks" / "results" / "trl_distill_step.json")
    args = parser.parse_args(argv)
    if args.world is None:
        args.world = tiny_world(default_world())
    if args.steps <= WARMUP_STEPS:
        parser.error(f"argument --steps: must be > {WARMUP_STEPS} (the warm-up steps), got {args.steps}")
    if not args.no_verl and not Path(args.verl_python).is_file():
        parser.error(f"argument --verl-python: not found: {args.verl_python} (or pass --no-verl)")

    import torch
    import transformers
    import trl

    assert "verl" not in sys.modules, "the TRL benchmark must not import verl"
    results: dict = {"trl": {}}

    def loaded(run, *a) -> dict:  # the machine's load average around each run: timings need a quiet machine
        before = os.getloadavg()[0]
        res = run(*a)
        return {**res, "load_avg_1min_before_after": [round(before, 2), round(os.getloadavg()[0], 2)]}

    for name in args.trl:
        results["trl"][name] = loaded(run_trl, name, args)
        print(name, json.dumps(results["trl"][name]), flush=True)
    if not args.no_verl:
        results["ours"] = loaded(run_verl, args)
        print("ours", json.dumps(results["ours"]), flush=True)
    ratios = {}
    if "ours" in results and results["ours"]["steady_step_s"]:
        for name, res in results["trl"].items():
            if res["steady_step_s"]:
                ratios[f"ours_over_{name}"] = round(results["ours"]["steady_step_s"] / res["steady_step_s"], 3)

    print(f"\nsteady step (median of steps {WARMUP_STEPS + 1}..{args.steps}), {args.prompts} prompts x {args.samples}:")
    print("| run | steady step (s) | first step (s) | mean completion tokens |")
    print("|---|---|---|---|")
    for label, res in [*((f"TRL {k}", v) for k, v in results["trl"].items()), ("ours (verl)", results.get("ours"))]:
        if res:
            print(f"| {label} | {res['steady_step_s']} | {res['first_step_s']} | {res['mean_completion_tokens']} |")
    for key, ratio in ratios.items():
        print(f"ratio {key} = {ratio}  (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'missed'})")
    payload = {
        "target_ratio_ours_over_trl": TARGET_RATIO,
        "settings": {
            "world": str(args.world).replace(f"{REPO}/", ""),
            "steps": args.steps,
            "warmup_steps": WARMUP_STEPS,
            "prompts": args.prompts,
            "samples_per_prompt": args.samples,
            "max_new_tokens": args.max_new_tokens,
            "lr": args.lr,
            "seed": args.seed,
            "temperature": 1.0,
            "trl_beta": 0.0,
            "divergence": "forward KL(teacher || student)",
        },
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        **results,
        "ratios": ratios,
    }
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
