"""Per-stage measurements of an HF checkpoint on CPU: parameters, on-disk size, generation latency, accuracy."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from .quantize import checkpoint_bytes


def load_model(path: str | Path):
    """Load an HF checkpoint (float or torchao-quantized) and its tokenizer for CPU inference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def count_stored_params(model) -> int:
    """Parameter count (logical elements; a quantized weight counts its float shape)."""
    return sum(p.numel() for p in model.parameters())


def calibration_texts(data_parquet: str | Path, tokenizer, limit: int = 256) -> list[str]:
    """Chat-formatted prompt + reference solution of the first ``limit`` rows (tiny world: ``extra_info.reference``;
    otherwise the ground truth) - the text the pruning scores are computed on."""
    from verl_frontier.evaluation.core import load_rows

    texts = []
    for row in load_rows(data_parquet, limit):
        prompt = tokenizer.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, tokenize=False)
        answer = (row.get("extra_info") or {}).get("reference") or str(row["reward_model"]["ground_truth"])
        texts.append(prompt + answer)
    return texts


@torch.no_grad()
def generation_latency(
    model, tokenizer, prompts: list[list[dict]], new_tokens: int = 32, threads: int = 1, warmup: int = 1
) -> dict:
    """Greedy HF ``generate`` of exactly ``new_tokens`` tokens for each prompt (batch 1, ``threads`` CPU threads).

    Returns the median seconds per prompt and milliseconds per generated token (median over prompts)."""
    from verl_frontier.evaluation.generate import encode_prompts

    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        encoded = encode_prompts(tokenizer, prompts)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs = dict(
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad,
        )
        for ids in encoded[:warmup]:
            model.generate(input_ids=torch.tensor([ids]), **kwargs)
        times = []
        for ids in encoded:
            t0 = time.perf_counter()
            out = model.generate(input_ids=torch.tensor([ids]), **kwargs)
            times.append(time.perf_counter() - t0)
            assert out.shape[1] - len(ids) == new_tokens
        med = statistics.median(times)
        return {"latency_s": med, "ms_per_token": 1000.0 * med / new_tokens, "prompts": len(encoded)}
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def generation_throughput(
    model, tokenizer, prompt: list[dict], batch_size: int = 64, new_tokens: int = 32, threads: int = 1, repeats: int = 3
) -> dict:
    """Greedy HF ``generate`` of exactly ``new_tokens`` tokens for ``batch_size`` copies of one prompt (no padding).

    Returns generated tokens per second (best of ``repeats``, after one warm-up): where batch-1 latency on a tiny
    model is bound by per-step Python overhead, a batch shows the cost of the matrix products."""
    from verl_frontier.evaluation.generate import encode_prompts

    if batch_size < 1 or new_tokens < 1:
        raise ValueError(f"batch_size and new_tokens must be >= 1, got {batch_size}, {new_tokens}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ids = torch.tensor(encode_prompts(tokenizer, [prompt])[0]).repeat(batch_size, 1)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, temperature=None,
                      top_p=None, top_k=None, pad_token_id=pad)  # fmt: skip
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
            best = min(best, time.perf_counter() - t0)
            assert out.shape == (batch_size, ids.shape[1] + new_tokens)
        return {"batch_size": batch_size, "tokens_per_s": batch_size * new_tokens / best}
    finally:
        torch.set_num_threads(old)


def greedy_accuracy(model, tokenizer, data_parquet: str | Path, limit: int | None = None, max_new_tokens: int = 96):
    """Greedy accuracy with the evaluation package's batched generator and the tiny world's reward."""
    from verl_frontier.evaluation.core import _score, load_reward_fn, load_rows
    from verl_frontier.evaluation.generate import generate

    rows = load_rows(data_parquet, limit)
    out = generate(model, tokenizer, [r["prompt"] for r in rows], greedy=True, max_new_tokens=max_new_tokens)
    reward = load_reward_fn(None)
    scores = [_score(reward, r, o[0]["text"]) for r, o in zip(rows, out)]
    return {"accuracy": sum(scores) / len(scores), "num_problems": len(scores)}


def measure_checkpoint(
    path: str | Path,
    data_parquet: str | Path,
    limit: int | None = None,
    latency_prompts: int = 8,
    new_tokens: int = 32,
    max_new_tokens: int = 96,
) -> dict:
    """All measurements of one stage's checkpoint (``params`` counts a quantized weight by its float shape)."""
    from verl_frontier.evaluation.core import load_rows

    model, tokenizer = load_model(path)
    prompts = [r["prompt"] for r in load_rows(data_parquet, latency_prompts)]
    lat = generation_latency(model, tokenizer, prompts, new_tokens=new_tokens)
    thr = generation_throughput(model, tokenizer, prompts[0], new_tokens=new_tokens)
    acc = greedy_accuracy(model, tokenizer, data_parquet, limit=limit, max_new_tokens=max_new_tokens)
    return {
        "path": str(path),
        "params": count_stored_params(model),
        "disk_bytes": checkpoint_bytes(path),
        **lat,
        **thr,
        **acc,
        "quantization": getattr(model.config, "quantization_config", None) is not None,
    }
