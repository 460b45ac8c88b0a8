"""The `hf` rollout engine against bare HF in one process: student sampling and teacher scoring of one
on-policy distillation step of the tiny world (16 prompts x 4 samples, <= 96 new tokens, temperature 1).

* generation: ``HFGenerationEngine.generate`` for the 64 requests sent concurrently (as verl's agent loop sends
  them) vs one ``model.generate`` of the same left-padded batch (KV cache, sampling, no log-probs);
* teacher scoring: the teacher engine's prompt log-probs (top-k = the whole vocabulary, verl's request shape:
  ``max_tokens=1, prompt_logprobs=k``) of the 64 prompt+response sequences vs one forward of the padded batch
  with ``log_softmax`` and ``topk``; plus the cost of handing the result to verl (pickling, as Ray does, and
  ``torch.tensor`` of it, as verl's teacher manager does).

Median of ``--repeats`` after one warm-up; targets: engine / bare <= 3 for both. Prints the ratios and writes a
JSON file.

    python benchmarks/hf_server_overhead.py [--repeats 5] [--out benchmarks/results/hf_server_overhead.json]
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import statistics
import time
from pathlib import Path

import torch

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_file, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"generate_ratio": 3.0, "teacher_ratio": 3.0}
PROMPTS, SAMPLES, MAX_NEW_TOKENS = 16, 4, 96


def _median_time(fn, repeats: int):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=POSITIVE_INT, default=5)
    parser.add_argument("--out", type=output_file, default=REPO / "benchmarks" / "results" / "hf_server_overhead.json")
    args = parser.parse_args(argv)

    import pyarrow.parquet as pq

    from verl_cpu.hf_engine import HFGenerationEngine
    from verl_frontier.studies import full_world

    world = full_world()
    rows = pq.read_table(world / "data" / "train.parquet").to_pylist()[:PROMPTS]
    student = HFGenerationEngine(str(world / "student"))
    teacher = HFGenerationEngine(str(world / "teacher"))
    tok, pad = student.tokenizer, student.pad_token_id
    prompts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows]
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    requests = [p for p in prompts for _ in range(SAMPLES)]
    sampling = {"temperature": 1.0, "max_tokens": MAX_NEW_TOKENS, "logprobs": True}

    async def engine_generate():
        return await asyncio.gather(*[student.generate(p, sampling) for p in requests])

    gen_engine_s, outs = _median_time(lambda: asyncio.run(engine_generate()), args.repeats)
    ids, mask = _left_pad(requests, pad)

    def bare_generate():
        with torch.inference_mode():
            return student.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                max_new_tokens=MAX_NEW_TOKENS, pad_token_id=pad,
            )  # fmt: skip

    gen_bare_s, _ = _median_time(bare_generate, args.repeats)

    sequences = [p + o.token_ids for p, o in zip(requests, outs)]
    k = teacher.vocab_size
    scoring = {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": k}

    async def engine_score():
        return await asyncio.gather(*[teacher.generate(s, scoring) for s in sequences])

    score_engine_s, scored = _median_time(lambda: asyncio.run(engine_score()), args.repeats)
    handoff_s, _ = _median_time(
        lambda: [torch.tensor(pickle.loads(pickle.dumps(o.extra_fields()))["prompt_logprobs"]) for o in scored],
        args.repeats,
    )
    seq_ids, seq_mask = _left_pad(sequences, pad)

    def bare_score():
        with torch.inference_mode():
            logits = teacher.model(
                input_ids=seq_ids, attention_mask=seq_mask, position_ids=(seq_mask.cumsum(-1) - 1).clamp(min=0)
            ).logits
            return torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)

    score_bare_s, _ = _median_time(bare_score, args.repeats)
    result = {
        "settings": {"prompts": PROMPTS, "samples": SAMPLES, "max_new_tokens": MAX_NEW_TOKENS, "topk": k,
                     "repeats": args.repeats, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "response_tokens": sum(len(o.token_ids) for o in outs),
        "generate_engine_s": round(gen_engine_s, 4), "generate_bare_s": round(gen_bare_s, 4),
        "generate_ratio": round(gen_engine_s / gen_bare_s, 2),
        "teacher_engine_s": round(score_engine_s, 4), "teacher_bare_s": round(score_bare_s, 4),
        "teacher_ratio": round(score_engine_s / score_bare_s, 2),
        "teacher_handoff_s": round(handoff_s, 4),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "targets": TARGETS,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    for key, target in TARGETS.items():
        print(f"{key}: {result[key]} (target <= {target}: {'met' if result[key] <= target else 'missed'})")
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
