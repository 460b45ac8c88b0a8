"""Batched HF ``generate`` on CPU (left padding), grouped by prompt length to avoid padding waste."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def encode_prompts(tokenizer, prompts: Sequence[list[dict]]) -> list[list[int]]:
    out = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    *,
    n: int = 1,
    greedy: bool = False,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 256,
    seed: int = 0,
) -> list[list[dict]]:
    """Generate ``n`` responses per prompt (chat messages). Returns, per prompt, a list of
    ``{"text": decoded response without special tokens, "num_tokens": generated tokens incl. eos,
    "finished": ended with eos}``."""
    model.eval()
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    encoded = encode_prompts(tokenizer, prompts)
    jobs = [(i, j) for i in range(len(encoded)) for j in range(n)]
    # group by prompt length: equal-length groups need no padding at all
    jobs.sort(key=lambda ij: (len(encoded[ij[0]]), ij[0], ij[1]))
    results: list[list[dict | None]] = [[None] * n for _ in encoded]
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        width = max(len(encoded[i]) for i, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, _) in enumerate(chunk):
            ids = encoded[i]
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attn[r, width - len(ids) :] = 1
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attn,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        if greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # seed per batch from our own generator: results do not depend on global RNG users
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            kwargs.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
        out = model.generate(**kwargs)
        new = out[:, width:]
        for r, (i, j) in enumerate(chunk):
            toks = new[r].tolist()
            finished = eos_id in toks
            if finished:
                toks = toks[: toks.index(eos_id) + 1]
            else:
                while toks and toks[-1] == pad_id and pad_id != eos_id:
                    toks.pop()
            results[i][j] = {
                "text": tokenizer.decode(toks, skip_special_tokens=True),
                "num_tokens": len(toks),
                "finished": finished,
            }
    return results  # type: ignore[return-value]
