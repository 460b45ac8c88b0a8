"""Science cross-check with TRL: train the tiny world's student with TRL's GKD, then greedy accuracy per problem.

Runs in TRL's own virtualenv (`.venv-trl`; trl 1.16 beside verl 0.9.1 breaks verl's FSDP model build) and never
imports verl: from this package it uses only `verl_frontier.arguments`, `verl_frontier.tinyworld.reward` (the
rule reward, `re` only) and `verl_frontier.evaluation.generate` (torch only), so the scoring and the greedy
decoding are the project's own (`frontier eval`'s).

Training, as `gkd_mix_tiny.yaml` by default: the world's teacher and student, rows of the teacher's concise
answers (`<world>/kd_concise/train.parquet`; `data/train.parquet` is accepted with lambda = 1, where no teacher
answer is used), 64 rows per step (`--samples` k > 1: 64/k prompts x k rows, as verl's rollout.n), temperature
1, at most 96 new tokens, AdamW (lr 1e-3, 10 warm-up steps then constant, weight decay 0.01, grad clip 1.0),
float32, one update per step, prompts in a seeded order (a fresh permutation each epoch).

* `--trainer gkd` (default): `trl.experimental.gkd.GKDTrainer`, `lmbda` and `beta` as given. TRL's lambda is a
  coin flip per *step* (with probability lambda the whole batch is the student's samples, else the teacher's
  answers), where gkd_mix puts a deterministic share lambda of each step's prompts on-policy.
* `--trainer distillation`: `trl.DistillationTrainer` (always on-policy; needs `--lmbda 1`).

beta is TRL's generalized-JSD coefficient: 0 = forward KL(teacher || student) (gkd_mix_tiny's `forward_kl_topk`
over the whole vocabulary), 1 = reverse KL, in between the generalized JSD. `--normalization token-mean`
(default) divides each step's summed divergence by that step's trained tokens (gkd_mix_tiny's
`loss_agg_mode: token-mean`); `trl` keeps GKDTrainer as shipped, which divides by the token count of the
dataset's answers in the batch even when the student's samples replaced them.

Writes `--out` (JSON): settings, step times (median after 2 warm-up steps), losses, which steps were on-policy,
and the evaluation: `greedy_accuracy` and `greedy_scores` (0/1 per problem, in the order of the evaluation
parquet, for `verl_frontier.evaluation.paired`), on `--eval` (default `<world>/heldout/test.parquet` when it
exists, else `data/test.parquet`), `--eval-limit` first rows, greedy, 256 new tokens.

    flock /tmp/verl-frontier-machine.lock .venv-trl/bin/python recipes/gkd_mix/trl_crosscheck.py \
        --steps 150 --seed 0 --lmbda 0.5 --beta 0 --out outputs/trl_crosscheck/gkd_l0.5_s0.json
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # GKDTrainer lives in trl.experimental
sys.path.insert(0, str(REPO))  # verl-free modules of verl_frontier only (verl is not installed in the TRL venv)

from verl_frontier.arguments import (  # noqa: E402
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    ArgumentParser,
    choice,
    output_dir,
    output_file,
    parquet_with,
    tiny_world,
    write_text_atomic,
)

WARMUP_STEPS = 2  # steps left out of the median step time


def default_world() -> Path:
    env = os.environ.get("FRONTIER_WORLD_DIR")
    return Path(env).expanduser() if env else REPO / ".world" / "full-seed0"


def _messages(prompt) -> list[dict]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def load_rows(path: Path, limit: int | None = None) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(path)
    if limit is not None:
        df = df.iloc[:limit]
    return df.to_dict(orient="records")


def train_rows(path: Path, steps: int, batch: int, samples: int, seed: int, need_answers: bool) -> list[dict]:
    """``steps * batch`` rows: ``batch // samples`` prompts per step, each ``samples`` times in a row; prompts in a
    seeded permutation, a new one each time the file is used up. ``messages`` = prompt + the teacher's answer
    (``extra_info.teacher_response``; with ``need_answers`` false, the reference solution or nothing)."""
    records = load_rows(path)
    prompts = []
    for row in records:
        extra = row.get("extra_info") or {}
        answer = extra.get("teacher_response")
        if answer is None:
            if need_answers:
                raise SystemExit(
                    f"error: {path} has no extra_info.teacher_response (the teacher's answers), which lambda < 1 "
                    "replays: use <world>/kd_concise/train.parquet (`python recipes/kd_uniform/reproduce.py` or "
                    "`make demo` writes it) or --lmbda 1"
                )
            answer = extra.get("reference", "")
        prompts.append({"messages": [*_messages(row["prompt"]), {"role": "assistant", "content": str(answer)}]})
    rng = random.Random(f"trl-crosscheck-{seed}")
    per_step = batch // samples
    order: list[int] = []
    while len(order) < steps * per_step:
        epoch = list(range(len(prompts)))
        rng.shuffle(epoch)
        order += epoch
    return [prompts[i] for i in order[: steps * per_step] for _ in range(samples)]


def score(row: dict, text: str) -> float:
    """The world's rule reward (``verl_frontier.tinyworld.reward``), as ``frontier eval`` scores a response."""
    from verl_frontier.tinyworld.reward import compute_score

    gt = row["reward_model"]["ground_truth"] if isinstance(row.get("reward_model"), dict) else None
    try:
        return float(compute_score(data_source=row.get("data_source"), solution_str=text, ground_truth=gt)["score"])
    except Exception:  # noqa: BLE001 - a malformed row scores 0, like frontier eval
        return 0.0


def evaluate_greedy(model, tokenizer, path: Path, limit: int | None, max_new_tokens: int) -> dict:
    from verl_frontier.evaluation.generate import generate

    rows = load_rows(path, limit)
    start = time.perf_counter()
    outs = generate(model, tokenizer, [_messages(r["prompt"]) for r in rows], greedy=True,
                    max_new_tokens=max_new_tokens, batch_size=256)  # fmt: skip
    scores = [score(r, o[0]["text"]) for r, o in zip(rows, outs)]
    return {
        "data": str(path),
        "num_problems": len(rows),
        "greedy_accuracy": statistics.fmean(scores) if scores else 0.0,
        "greedy_scores": [int(s) for s in scores],
        "greedy_mean_response_tokens": statistics.fmean(o[0]["num_tokens"] for o in outs) if outs else 0.0,
        "examples": [{"prompt": r["prompt"][-1]["content"], "response": o[0]["text"]} for r, o in zip(rows[:3], outs)],
        "seconds": round(time.perf_counter() - start, 1),
    }


def make_callback():
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.step_times: list[float] = []
            self.logs: list[dict] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_times.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                self.logs.append({"step": state.global_step, **logs})

    return Recorder()


def train(args, student, teacher, tokenizer) -> dict:
    from datasets import Dataset

    rows = train_rows(args.train, args.steps, args.batch_size, args.samples, args.seed, need_answers=args.lmbda < 1)
    recorder = make_callback()
    on_policy: list[int] = []  # per step: 1 = the student's samples, 0 = the teacher's answers
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(
            output_dir=tmp, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
            learning_rate=args.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=args.warmup_steps,
            weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, seed=args.seed,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            temperature=1.0, beta=args.beta,
        )  # fmt: skip
        if args.trainer == "distillation":
            from trl import DistillationConfig, DistillationTrainer

            config = DistillationConfig(**common, max_completion_length=args.max_new_tokens, top_k=0, top_p=1.0,
                                        shuffle_dataset=False)  # fmt: skip
            dataset = Dataset.from_list([{"prompt": r["messages"][:-1]} for r in rows])
            trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                                          processing_class=tokenizer, callbacks=[recorder])  # fmt: skip
        else:
            from trl.experimental.gkd import GKDConfig, GKDTrainer

            config = GKDConfig(**common, lmbda=args.lmbda, max_new_tokens=args.max_new_tokens,
                               train_sampling_strategy="sequential")  # fmt: skip
            dataset = Dataset.from_list(rows)
            trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                                 processing_class=tokenizer, callbacks=[recorder])  # fmt: skip
            if args.normalization == "token-mean":
                # num_items_in_batch (the dataset answers' token count, taken before on-policy sampling) is then
                # not computed, and generalized_jsd_loss averages over the step's own completion tokens
                trainer.model_accepts_loss_kwargs = False
            sample = trainer.generate_on_policy_outputs

            def recorded(model, inputs, generation_config):
                out = sample(model, inputs, generation_config)
                on_policy.append(trainer.state.global_step + 1)
                return out

            trainer.generate_on_policy_outputs = recorded
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    steady = recorder.step_times[WARMUP_STEPS:]
    losses = [log["loss"] for log in recorder.logs if "loss" in log]
    if args.trainer == "distillation":
        on_policy = list(range(1, args.steps + 1))
    return {
        "model": trainer.model,
        "summary": {
            "train_wall_s": round(wall, 1),
            "steps": len(recorder.step_times),
            "steady_step_s": round(statistics.median(steady), 4) if steady else None,
            "step_times_s": [round(t, 3) for t in recorder.step_times],
            "losses": [round(float(x), 5) for x in losses],
            "on_policy_steps": on_policy,
            "on_policy_frac": len(on_policy) / max(args.steps, 1),
            "train_rows": len(rows),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=tiny_world, default=None, help="tiny world dir [.world/full-seed0]")
    parser.add_argument("--train", type=parquet_with("prompt"), default=None,
                        help="training rows [<world>/kd_concise/train.parquet, else data/train.parquet]")  # fmt: skip
    parser.add_argument("--steps", type=NON_NEGATIVE_INT, default=150, help="0: evaluate the untrained student")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--trainer", type=choice("gkd", "distillation"), default="gkd")
    parser.add_argument("--lmbda", type=PROBABILITY, default=0.5, help="GKD: probability that a step is on-policy")
    parser.add_argument("--beta", type=PROBABILITY, default=0.0, help="0 forward KL, 1 reverse KL, else gen. JSD")
    parser.add_argument("--normalization", type=choice("token-mean", "trl"), default="token-mean")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="rows (sequences) per step")
    parser.add_argument("--samples", type=POSITIVE_INT, default=1, help="rows per prompt within a step")
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    parser.add_argument("--warmup-steps", type=NON_NEGATIVE_INT, default=10)
    parser.add_argument("--max-new-tokens", type=POSITIVE_INT, default=96)
    parser.add_argument("--eval", type=parquet_with("prompt", "reward_model"), default=None,
                        help="[<world>/heldout/test.parquet if it exists, else <world>/data/test.parquet]")  # fmt: skip
    parser.add_argument("--eval-limit", type=POSITIVE_INT, default=None, help="first N problems only")
    parser.add_argument("--eval-max-new-tokens", type=POSITIVE_INT, default=256)
    parser.add_argument("--save-model", type=output_dir, default=None, help="also save the trained student here")
    parser.add_argument("--out", type=output_file, required=True, help="result JSON")
    args = parser.parse_args(argv)
    if args.world is None:
        args.world = tiny_world(default_world())
    if args.train is None:
        kd = args.world / "kd_concise" / "train.parquet"
        args.train = kd if kd.is_file() else args.world / "data" / "train.parquet"
    if args.eval is None:
        heldout = args.world / "heldout" / "test.parquet"
        args.eval = heldout if heldout.is_file() else args.world / "data" / "test.parquet"
    if args.trainer == "distillation" and args.lmbda != 1.0:
        parser.error(f"argument --lmbda: DistillationTrainer is always on-policy: must be 1, got {args.lmbda}")
    if args.batch_size % args.samples:
        parser.error(f"argument --samples: must divide --batch-size {args.batch_size}, got {args.samples}")

    import torch
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.world / "student")
    student = AutoModelForCausalLM.from_pretrained(args.world / "student", dtype=torch.float32)
    summary = None
    if args.steps > 0:
        teacher = AutoModelForCausalLM.from_pretrained(args.world / "teacher", dtype=torch.float32)
        result = train(args, student, teacher, tokenizer)
        student, summary = result["model"], result["summary"]
        print("train", json.dumps({k: v for k, v in summary.items() if k not in ("step_times_s", "losses")}),
              flush=True)  # fmt: skip
    assert "verl" not in sys.modules, "the TRL cross-check must not import verl"
    if args.save_model is not None:
        student.save_pretrained(args.save_model)
        tokenizer.save_pretrained(args.save_model)
    evaluation = evaluate_greedy(student, tokenizer, args.eval, args.eval_limit, args.eval_max_new_tokens)
    print(f"greedy accuracy {evaluation['greedy_accuracy']:.4f} on {evaluation['num_problems']} problems "
          f"({evaluation['data']})", flush=True)  # fmt: skip
    payload = {
        "settings": {
            "trainer": {"gkd": "trl.experimental.gkd.GKDTrainer", "distillation": "trl.DistillationTrainer"}[
                args.trainer
            ],
            "world": str(args.world),
            "train": str(args.train),
            "steps": args.steps,
            "seed": args.seed,
            "lmbda": args.lmbda if args.trainer == "gkd" else 1.0,
            "beta": args.beta,
            "normalization": args.normalization if args.trainer == "gkd" else "token-mean",
            "batch_size": args.batch_size,
            "samples_per_prompt": args.samples,
            "lr": args.lr,
            "warmup_steps": args.warmup_steps,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 1.0,
            "eval_limit": args.eval_limit,
            "eval_max_new_tokens": args.eval_max_new_tokens,
        },
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
        "train": summary,
        "eval": evaluation,
    }
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
