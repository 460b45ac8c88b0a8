"""Warm start for the tiny-world ORBIT run: SFT of the tiny student on scripted guess-the-number trials.

A char-level 145k-parameter student has never seen a multi-episode chat, so ORBIT's GRPO would start from
invalid actions. The warm start teaches the format and a *partial* meta-strategy:

* :class:`ScriptedGuesser`: binary search (guess the midpoint of the feasible range) inside every episode;
  at the start of episodes 2, 3, ... it reuses what earlier episodes revealed (the feasible range narrowed
  by every earlier higher/lower/correct) only with probability ``reuse_prob``, else it searches from the full
  range again. With 2 guesses per episode over 1..8 an episode searched from scratch succeeds 2 times in 8,
  an episode that reuses what is known succeeds far more often, so RL has something to improve;
* the trials are rendered by the real agent loop (``OrbitAgentLoop`` with a server that plays the scripted
  actions), so the SFT tokens are exactly the tokens verl's rollouts produce; the loss is on model-turn
  tokens (``response_mask`` = 1) only.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .envs.base import extract_boxed
from .multi_episode import build_trial


class ScriptedGuesser:
    """Guess-the-number player for one trial; ``act()`` gives the next action, ``observe()`` the feedback."""

    def __init__(self, low: int, high: int, reuse_prob: float, rng: random.Random):
        if not 0.0 <= reuse_prob <= 1.0:
            raise ValueError(f"reuse_prob must be in [0, 1], got {reuse_prob}")
        self.low, self.high, self.reuse_prob, self.rng = low, high, reuse_prob, rng
        self.known = (low, high)  # feasible range from every episode so far
        self.episode = -1
        self.reused: list[bool] = []
        self.new_episode()

    def new_episode(self) -> None:
        self.episode += 1
        reuse = self.episode > 0 and self.rng.random() < self.reuse_prob
        self.reused.append(reuse)
        self.range = self.known if reuse else (self.low, self.high)

    def act(self) -> str:
        lo, hi = self.range
        return f"\\boxed{{{(lo + hi) // 2}}}"

    def observe(self, guess: int, feedback: str) -> None:
        """Narrow both the episode's range and the cross-episode knowledge."""
        for name in ("range", "known"):
            lo, hi = getattr(self, name)
            if feedback.startswith("correct"):
                lo = hi = guess
            elif feedback.startswith("higher"):
                lo = max(lo, guess + 1)
            elif feedback.startswith("lower"):
                hi = min(hi, guess - 1)
            setattr(self, name, (lo, min(max(lo, hi), self.high)))


class ScriptedServer:
    """Stands in for verl's rollout server: plays the guesser's actions in a shadow copy of the trial (same
    row, same seed, deterministic) to know the feedback the agent loop's trial will give."""

    def __init__(self, tokenizer, extra_info: dict, reuse_prob: float, rng: random.Random):
        self.tokenizer = tokenizer
        self.trial, seed = build_trial(extra_info)
        self.trial.reset(seed)
        env = self.trial.env
        self.guesser = ScriptedGuesser(env.low, env.high, reuse_prob, rng)

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        action = self.guesser.act()
        _, _, _, _, info = self.trial.step(action)
        guess = int(extract_boxed(action))
        feedback = "correct" if info.get("success") else ("higher" if guess < self.trial.env.secret else "lower")
        self.guesser.observe(guess, feedback)
        if info.get("episode_done"):
            self.guesser.new_episode()
        ids = self.tokenizer.encode(action, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids[: sampling_params["max_tokens"]], log_probs=None, stop_reason="completed")


@dataclass
class Trial:
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    successes: list[float]
    reused: list[bool]


def scripted_trials(
    rows: list[dict], tokenizer, reuse_prob: float, seed: int, prompt_length: int, response_length: int
) -> list[Trial]:
    """One scripted trial per row (rows as written by ``verl_frontier.orbit.data``), rendered by the agent loop."""
    from verl_frontier.agent_loops import standalone_agent_loop

    from .agent_loop import OrbitAgentLoop

    rng = random.Random(seed)
    config = {"actor_rollout_ref": {"rollout": {"prompt_length": prompt_length, "response_length": response_length}}}

    async def play(row) -> Trial:
        server = ScriptedServer(tokenizer, row["extra_info"], reuse_prob, rng)
        loop = standalone_agent_loop(OrbitAgentLoop, server, tokenizer, config)
        out = await loop.run({}, raw_prompt=list(row["prompt"]), extra_info=row["extra_info"])
        info = out.extra_fields["reward_extra_info"]
        k = int(row["extra_info"].get("max_episodes") or row["extra_info"].get("num_episodes") or 3)
        return Trial(
            out.prompt_ids,
            out.response_ids,
            out.response_mask,
            [info[f"episode_{i + 1}_success"] for i in range(k)],
            server.guesser.reused[:k],
        )

    async def main():
        return [await play(row) for row in rows]

    return asyncio.run(main())


def sft(model, trials: list[Trial], pad_id: int, steps: int, batch_size: int, lr: float, seed: int) -> dict:
    """AdamW on the model-turn tokens of the scripted trials; the tiny world's SFT schedule (``lr_at``: 5 %
    linear warmup, cosine decay to 10 %)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    from verl_frontier.tinyworld.sft import TrainSpec, lr_at

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = TrainSpec(steps=steps, batch_size=batch_size, lr=lr, warmup_frac=0.05, min_lr_frac=0.1)
    model.train()
    losses = []
    start = time.perf_counter()
    for step in range(steps):
        batch = rng.sample(trials, min(batch_size, len(trials)))
        width = max(len(t.prompt_ids) + len(t.response_ids) for t in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, t in enumerate(batch):
            seq = t.prompt_ids + t.response_ids
            ids[row, : len(seq)] = torch.tensor(seq)
            attn[row, : len(seq)] = 1
            target = torch.tensor(t.response_ids)
            target[torch.tensor(t.response_mask) == 0] = -100
            labels[row, len(t.prompt_ids) : len(seq)] = target
        for group in opt.param_groups:
            group["lr"] = lr_at(step, schedule)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f"warm start step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    model.eval()
    return {"steps": steps, "final_loss": sum(losses[-20:]) / len(losses[-20:]), "seconds": time.perf_counter() - start}


def warm_start(
    student: str | Path,
    rows: list[dict],
    out: str | Path,
    reuse_prob: float = 0.3,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    prompt_length: int = 64,
    response_length: int = 256,
) -> dict:
    """SFT ``student`` on one scripted trial per row; saves model + tokenizer to ``out``; returns stats."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student)
    trials = scripted_trials(rows, tokenizer, reuse_prob, seed, prompt_length, response_length)
    model = AutoModelForCausalLM.from_pretrained(student, torch_dtype=torch.float32)
    stats = sft(model, trials, tokenizer.pad_token_id, steps, batch_size, lr, seed)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    k = len(trials[0].successes)
    stats.update(
        reuse_prob=reuse_prob,
        trials=len(trials),
        scripted_episode_success=[sum(t.successes[i] for t in trials) / len(trials) for i in range(k)],
        max_trial_tokens=max(len(t.prompt_ids) + len(t.response_ids) for t in trials),
    )
    (out / "warm_start.json").write_text(json.dumps(stats, indent=2))
    return stats
