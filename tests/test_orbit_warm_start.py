"""The ORBIT tiny-world warm start: the scripted guess-the-number player, its trials as the real agent loop
renders them, and the SFT on model-turn tokens."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

import pytest

pytest.importorskip("verl")

from verl_frontier.orbit.data import PRESETS, build_rows  # noqa: E402
from verl_frontier.orbit.multi_episode import build_trial  # noqa: E402
from verl_frontier.orbit.warm_start import ScriptedGuesser, scripted_trials, sft  # noqa: E402
from verl_frontier.tinyworld.tokenizer import build_tokenizer  # noqa: E402

TOK = build_tokenizer()


def rows(n=64):
    cfg = replace(PRESETS["tiny"], env_kwargs={"guess_number": {"low": 1, "high": 8, "max_turns": 2}}, train_size=n)
    train, _ = build_rows(cfg)
    return train


def secret(row):
    trial, seed = build_trial(row["extra_info"])
    trial.reset(seed)
    return trial.env.secret


def test_guesser_binary_search_and_reuse_by_hand():
    g = ScriptedGuesser(1, 8, reuse_prob=1.0, rng=random.Random(0))
    assert g.act() == "\\boxed{4}"
    g.observe(4, "higher")
    assert g.act() == "\\boxed{6}"
    g.observe(6, "lower")  # secret is 5, episode over (2 turns)
    g.new_episode()
    assert g.act() == "\\boxed{5}"  # reused: the known range is 5..5
    g = ScriptedGuesser(1, 8, reuse_prob=0.0, rng=random.Random(0))
    g.observe(4, "higher")
    g.new_episode()
    assert g.act() == "\\boxed{4}"  # no reuse: searches from scratch


def test_no_reuse_succeeds_exactly_on_the_binary_search_midpoints_and_full_reuse_always_later():
    trials_rows = rows(96)
    none = scripted_trials(trials_rows, TOK, 0.0, 0, 64, 256)
    full = scripted_trials(trials_rows, TOK, 1.0, 0, 64, 256)
    for row, t0, t1 in zip(trials_rows, none, full, strict=True):
        hit = float(secret(row) in (4, 2, 6))  # guesses 4, then 2 (lower) or 6 (higher)
        assert t0.successes == [hit, hit, hit]
        assert t1.successes[0] == hit and t1.successes[1:] == [1.0, 1.0]


def test_reuse_probability_is_respected():
    trials = scripted_trials(rows(400), TOK, 0.3, 1, 64, 256)
    decisions = [r for t in trials for r in t.reused[1:]]  # episode 1 never reuses
    assert all(not t.reused[0] for t in trials)
    share = sum(decisions) / len(decisions)
    sd = math.sqrt(0.3 * 0.7 / len(decisions))
    assert abs(share - 0.3) < 4 * sd, share


def test_trial_tokens_mask_only_the_model_turns_and_replay_to_the_same_outcome():
    for row, t in zip(rows(16), scripted_trials(rows(16), TOK, 0.5, 2, 64, 256), strict=True):
        model_text = TOK.decode([i for i, m in zip(t.response_ids, t.response_mask, strict=True) if m])
        actions = re.findall(r"\\boxed\{\d\}", model_text)
        assert model_text == (TOK.eos_token.join(actions) + TOK.eos_token)
        env_text = TOK.decode([i for i, m in zip(t.response_ids, t.response_mask, strict=True) if not m])
        assert "[Episode 2]" in env_text and "[Episode 3]" in env_text and "\\boxed" not in env_text
        trial, seed = build_trial(row["extra_info"])
        trial.reset(seed)
        for action in actions:
            trial.step(action)
        assert [float(s) for s in trial.episode_successes] == t.successes


def test_sft_lowers_the_loss_on_model_turns():
    import torch

    from verl_frontier.tinyworld.sft import ModelSpec, make_model

    model = make_model(ModelSpec(32, 1, 2, 64, 512), TOK, seed=0)
    trials = scripted_trials(rows(32), TOK, 0.3, 0, 64, 256)

    def loss():
        t = trials[0]
        ids = torch.tensor([t.prompt_ids + t.response_ids])
        labels = ids.clone()
        labels[0, : len(t.prompt_ids)] = -100
        labels[0, len(t.prompt_ids) :][torch.tensor(t.response_mask) == 0] = -100
        with torch.no_grad():
            return model(input_ids=ids, labels=labels).loss.item()

    before = loss()
    stats = sft(model, trials, TOK.pad_token_id, steps=40, batch_size=8, lr=3e-3, seed=0)
    assert loss() < 0.5 * before and stats["steps"] == 40


# ---------------------------------------------------------------------------------------------------------
# frontier eval on ORBIT rows
# ---------------------------------------------------------------------------------------------------------


def test_orbit_eval_plays_trials_with_a_scripted_generator(monkeypatch, tmp_path):
    """A generator that always answers \\boxed{4}: every episode succeeds iff the secret is 4; pass@k follows."""
    import verl_frontier.evaluation.generate as gen_mod
    from verl_frontier.evaluation.passk import pass_at_k
    from verl_frontier.orbit.evaluate import evaluate_orbit, write_outputs

    calls = []

    def fake_generate(model, tokenizer, prompts, **kwargs):
        calls.append(len(prompts))
        return [[{"text": "\\boxed{4}", "num_tokens": 10, "finished": True}] for _ in prompts]

    monkeypatch.setattr(gen_mod, "generate", fake_generate)
    task_rows = rows(24)
    model = type("M", (), {"config": type("C", (), {"max_position_embeddings": 512})()})()
    result = evaluate_orbit(model, TOK, task_rows, n=3, temperature=0.6)
    hits = [float(secret(r) == 4) for r in task_rows]
    share = sum(hits) / len(hits)
    assert result["episode_success"] == {"1": share, "2": share, "3": share}
    assert result["any_success"] == share and result["mean_success_count"] == 3 * share
    assert result["pass_at_k"]["1"] == pytest.approx(share)
    assert result["pass_at_k"]["3"] == pytest.approx(sum(pass_at_k(3, int(3 * h), 3) for h in hits) / len(hits))
    assert list(result["by_env"]) == ["guess_number"] and "heldout" not in result
    assert calls[0] == 24 * 3  # all trials batched per turn
    paths = write_outputs(result, tmp_path)
    assert paths["png"].stat().st_size > 0 and paths["json"].exists()


def test_orbit_eval_stops_a_trial_that_would_overflow_the_context(monkeypatch):
    import verl_frontier.evaluation.generate as gen_mod
    from verl_frontier.orbit.evaluate import evaluate_orbit

    monkeypatch.setattr(
        gen_mod, "generate", lambda m, t, prompts, **k: [[{"text": "\\boxed{1}", "num_tokens": 9}] for _ in prompts]
    )
    model = type("M", (), {"config": type("C", (), {"max_position_embeddings": 60})()})()
    result = evaluate_orbit(model, TOK, rows(8), n=1, temperature=1.0)
    assert result["overflow_rate"] == 1.0  # 60 positions hold the first turns only
