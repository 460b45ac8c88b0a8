"""Tiny Qwen2 models and their SFT loop (plain PyTorch on CPU).

AdamW, linear warmup + cosine decay, loss on response tokens (incl. eos) only, and every batch drawn
from a single (operands, style) cell so sequences in a batch have (nearly) equal length.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from . import tasks
from .tokenizer import char_ids


@dataclass(frozen=True)
class ModelSpec:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    batch_size: int  # problems per concise batch; verbose batches use batch_size // verbose_batch_div
    lr: float = 3e-3
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    verbose_frac: float = 0.2  # share of batches in the verbose style
    verbose_batch_div: int = 2


def make_model(spec: ModelSpec, tokenizer, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),  # verl pitfall: model vocab must equal len(tokenizer)
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_cache=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.eos_token_id
    return model


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class BatchMaker:
    """Draws SFT batches of training-side problems; one (operands, digits, style) cell per batch."""

    def __init__(self, tokenizer, cells: list[tuple[int, int]], cell_weights: list[float], seed: int):
        self.tok = tokenizer
        self.cells = cells
        self.weights = cell_weights
        self.rng = random.Random(seed)
        self.vocab = char_ids(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self.user = self.vocab["<|user|>"]
        self.assistant = self.vocab["<|assistant|>"]
        probe = "Compute 1+2. Be concise."
        assert self.prompt_ids(probe) == self._template_ids(probe), "fast prompt encoding != chat template"

    def _ids(self, text: str) -> list[int]:
        return [self.vocab[c] for c in text]

    def _template_ids(self, prompt: str) -> list[int]:
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, prompt: str) -> list[int]:
        # identical to the chat template (checked in __init__), without jinja per sample
        return [self.user] + self._ids(prompt) + [self.eos, self.assistant]

    def batch(self, size: int, style: str):
        k, d = self.rng.choices(self.cells, weights=self.weights)[0]
        seqs, starts = [], []
        for _ in range(size):
            p = tasks.sample_split_problem(self.rng, k, d, "train")
            pi = self.prompt_ids(tasks.prompt_text(p, style))
            ri = self._ids(tasks.response_text(p, style)) + [self.eos]
            seqs.append(pi + ri)
            starts.append(len(pi))
        width = max(len(s) for s in seqs)
        ids = torch.full((size, width), self.pad, dtype=torch.long)
        labels = torch.full((size, width), -100, dtype=torch.long)
        attn = torch.zeros((size, width), dtype=torch.long)
        for r, (s, st) in enumerate(zip(seqs, starts)):
            ids[r, : len(s)] = torch.tensor(s)
            labels[r, st : len(s)] = torch.tensor(s[st:])
            attn[r, : len(s)] = 1
        return ids, attn, labels


def lr_at(step: int, spec: TrainSpec) -> float:
    warm = max(1, int(spec.steps * spec.warmup_frac))
    if step < warm:
        return spec.lr * (step + 1) / warm
    prog = (step - warm) / max(1, spec.steps - warm)
    return spec.lr * (spec.min_lr_frac + (1 - spec.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))


def train(
    model, tokenizer, spec: TrainSpec, cells, cell_weights, seed: int, desc: str = "sft", progress=True, position=None
) -> dict:
    torch.manual_seed(seed)
    maker = BatchMaker(tokenizer, cells, cell_weights, seed)
    style_rng = random.Random(seed + 1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.steps, desc=desc, leave=True, mininterval=1.0, position=position)
    t0 = time.perf_counter()
    tokens = 0
    ema = None
    for step in range(spec.steps):
        verbose = style_rng.random() < spec.verbose_frac
        size = spec.batch_size // spec.verbose_batch_div if verbose else spec.batch_size
        ids, attn, labels = maker.batch(max(1, size), "verbose" if verbose else "concise")
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec)
        out = model(input_ids=ids, attention_mask=attn, labels=labels, use_cache=False)
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        tokens += int(attn.sum())
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{ema:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    dt = time.perf_counter() - t0
    return {
        "steps": spec.steps,
        "train_seconds": round(dt, 2),
        "tokens_per_second": round(tokens / dt),
        "final_loss_ema": round(ema or 0.0, 4),
        "train_spec": asdict(spec),
    }
