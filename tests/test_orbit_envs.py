"""ORBIT text environments, the multi-episode trial and data prep: scripted optimal and random players with
outcomes computed by hand (binomial / combinatorial formulas), determinism, penalties, a no-raise property."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.orbit.envs import (
    HELDOUT_ENVS,
    INVALID_REWARD,
    TRAIN_ENVS,
    extract_boxed,
    list_envs,
    make_env,
)
from verl_frontier.orbit.envs.blackjack import hand_total
from verl_frontier.orbit.envs.mastermind import pegs
from verl_frontier.orbit.envs.rock_paper_scissors import ACTIONS, BEATS, COUNTER
from verl_frontier.orbit.envs.wordle import wordle_feedback
from verl_frontier.orbit.multi_episode import MultiEpisodeEnv, build_trial

ALL_ENVS = list_envs()
TURNS = {
    "rock_paper_scissors": 5,
    "minesweeper": 8,
    "hangman": 10,
    "wordle": 10,
    "blackjack": 4,
    "maze": 9,
    "mastermind": 3,
    "guess_number": 4,
}


def boxed(x) -> str:
    return f"I think... \\boxed{{{x}}}"


def play(env, seed, policy, rng=None):
    """Run one episode; policy(env, obs, rng) -> action text. Returns (success, turns, transcript)."""
    obs, _ = env.reset(seed)
    transcript = [obs]
    while True:
        obs, reward, term, trunc, info = env.step(policy(env, obs, rng))
        transcript.append((obs, reward, term, trunc))
        if term or trunc:
            return bool(term and reward > 0), env.turn, transcript


def random_policy(env, obs, rng):
    return env.sample_random_action(rng)


def assert_rate(successes: int, n: int, p: float, sigmas: float = 4.5):
    sd = math.sqrt(n * p * (1 - p))
    assert abs(successes - n * p) <= sigmas * sd + 1, (successes, n * p, sd)


# ---- generic contract ------------------------------------------------------------------------------------
def test_registry_and_turn_limits():
    assert set(TRAIN_ENVS) | set(HELDOUT_ENVS) | {"guess_number"} == set(ALL_ENVS)
    for name, turns in TURNS.items():
        assert make_env(name).max_turns == turns
    with pytest.raises(KeyError, match="unknown ORBIT environment"):
        make_env("nope")


def test_extract_boxed():
    assert extract_boxed("a \\boxed{x} b \\boxed{ y }") == "y"
    assert extract_boxed("\\boxed{a{b}c}") == "a{b}c"
    assert extract_boxed("\\boxed{ok} then \\boxed{unclosed") == "ok"
    assert extract_boxed("no box") is None and extract_boxed("\\boxed{") is None


@pytest.mark.parametrize("name", ALL_ENVS)
def test_determinism_by_seed(name):
    def transcript(seed):
        env = make_env(name)
        rng = random.Random(1)
        return [play(env, seed, random_policy, rng)[2] for _ in range(2)]  # two episodes, same seed

    assert transcript(11) == transcript(11)
    # different seeds give different tasks: the same action stream gets different transcripts
    runs = {json.dumps(play(make_env(name), s, random_policy, random.Random(1))[2]) for s in range(8)}
    assert len(runs) > 1


@pytest.mark.parametrize("name", ALL_ENVS)
def test_bad_actions_penalised_and_count_as_turns(name):
    env = make_env(name)
    env.reset(3)
    for bad in ("no box at all", "\\boxed{%%% nonsense %%%}"):
        if env.done:
            env.reset(3)
        before = env.turn
        obs, reward, term, trunc, info = env.step(bad)
        assert reward == INVALID_REWARD and info["invalid_action"], (name, bad, obs)
        assert obs.startswith("Invalid action") and env.turn == before + 1
        assert term == (name == "mastermind")  # ORBIT's Mastermind: a format error ends the episode


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(ALL_ENVS), seed=st.integers(0, 2**31 - 1), actions=st.lists(st.text(max_size=40), max_size=12)
)
def test_no_action_string_raises(name, seed, actions):
    env = make_env(name)
    env.reset(seed)
    for a in actions:
        for text in (a, f"\\boxed{{{a}}}"):
            obs, reward, term, trunc, info = env.step(text)
            assert isinstance(obs, str) and isinstance(reward, float) and isinstance(term, bool)
            assert not (term and trunc)
            if term or trunc:
                env.reset(seed)


# ---- guess the number ------------------------------------------------------------------------------------
def binary_search_policy():
    state = {}

    def policy(env, obs, rng):
        if env.turn == 0:
            state["lo"], state["hi"] = env.low, env.high
        elif obs.startswith("higher"):
            state["lo"] = state["mid"] + 1
        elif obs.startswith("lower"):
            state["hi"] = state["mid"] - 1
        state["mid"] = (state["lo"] + state["hi"]) // 2
        return boxed(state["mid"])

    return policy


def test_guess_number_optimal_and_random():
    env = make_env("guess_number")
    for seed in range(200):
        success, turns, _ = play(env, seed, binary_search_policy())
        assert success and turns <= math.ceil(math.log2(8 + 1))
    rng, n = random.Random(0), 3000
    wins = sum(play(env, s, random_policy, rng)[0] for s in range(n))
    assert_rate(wins, n, 1 - (7 / 8) ** 4)  # uniform guesses with replacement, 4 turns


# ---- rock paper scissors ---------------------------------------------------------------------------------
def test_rps_oracle_random_and_counter_dominant():
    env = make_env("rock_paper_scissors")
    for seed in range(50):  # peeks at the opponent's next move: wins every round
        success, turns, tr = play(env, seed, lambda e, o, r: boxed(COUNTER[e.next_opponent_action()]))
        assert success and turns == 5 and "5 wins" in tr[-1][0]
    rng, n = random.Random(0), 3000
    wins = sum(play(env, s, random_policy, rng)[0] for s in range(n))
    assert_rate(wins, n, 51 / 243)  # P(Bin(5, 1/3) >= 3)
    # beating the dominant action wins each round with probability p_dom: P(Bin(5, p_dom) >= 3)
    expected, wins = 0.0, 0
    for s in range(n):
        env.reset(s)
        dominant = max(env.distribution, key=env.distribution.get)
        p = env.distribution[dominant]
        assert p >= 0.4
        expected += sum(math.comb(5, k) * p**k * (1 - p) ** (5 - k) for k in (3, 4, 5))
        wins += play(env, s, lambda e, o, r, d=dominant: boxed(COUNTER[d]))[0]
    assert abs(wins - expected) <= 4.5 * math.sqrt(n * 0.25)


def test_rps_rules_and_episode_streams():
    assert all(BEATS[COUNTER[a]] == a for a in ACTIONS)
    env = make_env("rock_paper_scissors")
    env.reset(5)
    first = [env._draw() for _ in range(30)]
    env.reset(5)  # next episode of the same trial: same distribution, fresh opponent stream
    assert [env._draw() for _ in range(30)] != first
    counts = dict.fromkeys(ACTIONS, 0)
    env.reset(9)
    for _ in range(20000):
        counts[env._draw()] += 1
    for a in ACTIONS:
        assert abs(counts[a] / 20000 - env.distribution[a]) < 0.015


# ---- minesweeper -----------------------------------------------------------------------------------------
def min_reveals(env) -> int:
    """Fewest reveals that open every safe cell: one per zero region, one per numbered cell no zero touches."""
    zeros = {c for c, v in env.counts.items() if v == 0}
    regions, seen = 0, set()
    for z in zeros:
        if z in seen:
            continue
        regions += 1
        stack = [z]
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            stack.extend(n for n in env.neighbours(*c) if n in zeros)
    touched = {n for z in zeros for n in env.neighbours(*z) if n not in env.mines}
    lonely = [c for c, v in env.counts.items() if v > 0 and c not in touched]
    return regions + len(lonely)


def omniscient_minesweeper(env, obs, rng):
    safe = [c for c in env.counts if c not in env.revealed]
    safe.sort(key=lambda c: env.counts[c] != 0)  # zeros first (flood fill)
    return boxed(f"reveal {safe[0][0]} {safe[0][1]}")


def test_minesweeper_optimal_and_random():
    env = make_env("minesweeper")
    for seed in range(300):
        env.reset(seed)
        assert len(env.mines) == 5
        need = min_reveals(env)
        success, turns, _ = play(env, seed, omniscient_minesweeper)
        assert success == (need <= 8), (seed, need)
        if success:
            assert turns == need
    rng, n = random.Random(0), 4000
    boom = 0
    for s in range(n):
        env.reset(s)
        obs, reward, term, trunc, _ = env.step(env.sample_random_action(rng))
        boom += term and reward == 0.0
    assert_rate(boom, n, 5 / 25)  # the first random reveal is a mine with probability 5/25


def test_minesweeper_flag_and_repeat():
    env = make_env("minesweeper")
    env.reset(0)
    obs, r, *_ = env.step(boxed("flag 0 0"))
    assert r == 0.0 and obs.splitlines()[1].split()[1] == "F"
    safe = next(c for c in env.counts if env.counts[c] > 0)
    env.step(boxed(f"reveal {safe[0]} {safe[1]}"))
    obs, r, *_ = env.step(boxed(f"reveal {safe[0]} {safe[1]}"))
    assert r == INVALID_REWARD and "already revealed" in obs


# ---- hangman ---------------------------------------------------------------------------------------------
def test_hangman_optimal_and_random():
    env = make_env("hangman")
    for seed in range(100):
        env.reset(seed)
        letters = list(dict.fromkeys(env.word))
        success, turns, _ = play(env, seed, lambda e, o, r, L=letters: boxed(L[e.turn]))
        assert success and turns == len(letters)
        assert play(env, seed, lambda e, o, r: boxed(e.word))[:2] == (True, 1)
    rng, n = random.Random(0), 4000
    wins, expected = 0, 0.0
    for s in range(n):
        env.reset(s)
        d = len(set(env.word))
        expected += math.comb(10, d) / math.comb(26, d)  # all d letters among the first 10 of a random order
        order = rng.sample("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26)
        wins += play(env, s, lambda e, o, r, order=order: boxed(order[e.turn]))[0]
    assert abs(wins - expected) <= 4.5 * math.sqrt(expected) + 1


# ---- wordle ----------------------------------------------------------------------------------------------
def test_wordle_feedback_rules():
    assert wordle_feedback("CRANE", "CRANE") == "GGGGG"
    assert wordle_feedback("CRANE", "NACRE") == "YYYYG"
    assert wordle_feedback("ABBEY", "BOBBY") == "YXGXG"  # the green B first, then one B left for position 0
    assert wordle_feedback("SPEED", "EERIE") == "YYXXX"


def test_wordle_optimal_solver_and_random():
    env = make_env("wordle")
    for seed in range(60):
        assert play(env, seed, lambda e, o, r: boxed(e.word))[:2] == (True, 1)
    solved = 0
    for seed in range(60):  # a consistent-candidate solver that never peeks
        history = []

        def solver(e, o, r, history=history):
            if history:
                history[-1] = (history[-1][0], o.split("-> ")[-1][:5])
            cands = [w for w in e.words if all(wordle_feedback(w, g) == fb for g, fb in history)]
            history.append((cands[0], None))
            return boxed(cands[0])

        solved += play(env, seed, solver)[0]
    assert solved >= 57
    rng, n = random.Random(0), 3000
    wins = sum(play(env, s, random_policy, rng)[0] for s in range(n))
    assert_rate(wins, n, 1 - (1 - 1 / len(env.words)) ** 10)


# ---- blackjack -------------------------------------------------------------------------------------------
def best_hits(env):
    d = hand_total(env.dealer)
    for k in range(4):  # at most 3 hits, then stand: 4 turns
        for combo in itertools.combinations(range(len(env.slots)), k):
            p = hand_total(env.player + [env.slots[i] for i in combo])
            if d < p <= 21:
                return list(combo)
    return None


def test_blackjack_oracle_and_stand():
    env = make_env("blackjack")
    for seed in range(150):
        env.reset(seed)
        assert hand_total(env.dealer) >= 17 and len(env.slots) == 48
        plan = best_hits(env)
        stand_wins = hand_total(env.player) > hand_total(env.dealer)
        actions = [f"hit {i}" for i in (plan or [])] + ["stand"]
        success, turns, _ = play(env, seed, lambda e, o, r, a=actions: boxed(a[e.turn]))
        assert success == (plan is not None) and (not success or turns == len(actions))
        assert play(env, seed, lambda e, o, r: boxed("stand"))[0] == stand_wins
    seed = next(s for s in range(100) if not _busts(s))
    env.reset(seed)
    env.step(boxed("hit 3"))
    obs, r, term, *_ = env.step(boxed("hit 3"))
    assert r == INVALID_REWARD and "already drawn" in obs and not term


def _busts(seed):
    env = make_env("blackjack")
    env.reset(seed)
    return env.step(boxed("hit 3"))[2]


# ---- maze ------------------------------------------------------------------------------------------------
def test_maze_oracle_and_random():
    env = make_env("maze")
    for seed in range(150):
        env.reset(seed)
        path = env.shortest_path()
        assert 7 <= len(path) <= 8 and (env.width, env.height) in ((6, 6), (7, 6), (7, 7), (6, 7))
        success, turns, _ = play(env, seed, lambda e, o, r, p=path: boxed(p[e.turn]))
        assert success and turns == len(path)
    rng = random.Random(0)
    for s in range(500):
        success, turns, _ = play(env, s, random_policy, rng)
        assert not success or turns >= 7


# ---- mastermind ------------------------------------------------------------------------------------------
def test_mastermind_pegs_oracle_random():
    assert pegs((1, 2, 3), (1, 2, 3)) == (3, 0)
    assert pegs((1, 2, 3), (3, 1, 2)) == (0, 3)
    assert pegs((1, 2, 3), (1, 3, 4)) == (1, 1)
    assert pegs((1, 2, 3), (4, 5, 6)) == (0, 0)
    env = make_env("mastermind")
    codes = set()
    for seed in range(300):
        env.reset(seed)
        assert len(set(env.code)) == 3 and all(1 <= d <= 6 for d in env.code)
        codes.add(env.code)
        assert play(env, seed, lambda e, o, r: boxed("".join(map(str, e.code))))[:2] == (True, 1)
    assert len(codes) > 90  # 120 possible codes
    rng, n = random.Random(0), 4000
    wins = sum(play(env, s, random_policy, rng)[0] for s in range(n))
    assert_rate(wins, n, 1 - (119 / 120) ** 3)


# ---- multi-episode trial ---------------------------------------------------------------------------------
def test_multi_episode_headers_rewards_and_budget():
    trial = MultiEpisodeEnv(make_env("guess_number"), num_episodes=3)
    obs, _ = trial.reset(4)
    assert obs == "[Episode 1] New episode begins.\nGuess 1-8." and trial.total_step_cap == 12
    secret = trial.env.secret
    obs, r, term, trunc, info = trial.step(boxed(secret))
    assert r == 1.0 and not (term or trunc)
    assert obs == "correct!\n\n[Episode 2] New episode begins.\nGuess 1-8."
    # budget semantics (ORBIT): episodes continue until 12 steps are used
    wrong = 1 if secret != 1 else 2
    for _ in range(4):
        obs, r, term, trunc, info = trial.step(boxed(wrong))
    assert r == 0.0 and "[Episode 3]" in obs and info["episode_successes"] == [True, False]
    steps = 5
    while True:
        obs, r, term, trunc, info = trial.step(boxed(secret))
        steps += 1
        if term or trunc:
            break
    assert steps == 12 and trunc and not term and trial.success_count == 12 - 5 + 1
    m = trial.metrics()
    assert m["episode_1_success"] == 1.0 and m["episode_2_success"] == 0.0 and m["episode_2_steps"] == 4.0
    assert m["success_count"] == trial.success_count and m["num_episodes_played"] == 2 + 7


def test_multi_episode_max_episodes_and_truncation_is_not_success():
    trial = MultiEpisodeEnv(make_env("guess_number"), num_episodes=3, max_episodes=3, header="[Episode {k}]")
    obs, _ = trial.reset(0)
    secret = trial.env.secret
    seen = [obs]
    for _ in range(3):
        obs, r, term, trunc, _ = trial.step(boxed(secret))
        seen.append(obs)
    assert term and not trunc and trial.success_count == 3
    assert seen[1].endswith("[Episode 2]\nGuess 1-8.") and seen[2].endswith("[Episode 3]\nGuess 1-8.")
    assert seen[3] == "correct!"  # the last terminal observation is not followed by a header
    assert trial.step(boxed(secret))[2]  # stepping a finished trial does not raise
    # an episode cut by the turn limit is truncated, never a success, even when the last reward is positive
    blackjack = MultiEpisodeEnv(make_env("blackjack", max_turns=1), num_episodes=1)
    blackjack.reset(0)
    blackjack.step(boxed("hit 0"))
    assert blackjack.success_count == 0


def test_build_trial_from_extra_info():
    trial, seed = build_trial(
        {"env": "mastermind", "seed": 7, "num_episodes": 2, "max_turns": 5, "max_episodes": None, "env_kwargs": "{}"}
    )
    assert seed == 7 and trial.env.max_turns == 5 and trial.total_step_cap == 10 and trial.max_episodes is None


# ---- data prep -------------------------------------------------------------------------------------------
def test_data_rows_and_multitask_weights(tmp_path):
    from dataclasses import replace

    from verl_frontier.orbit import data

    cfg = replace(
        data.PRESETS["orbit"], train_envs={"wordle": 3.0, "hangman": 1.0}, train_size=2000, val_seeds_per_env=3
    )
    tasks = data.sample_train_tasks(cfg)
    share = sum(env == "wordle" for env, _ in tasks) / len(tasks)
    assert abs(share - 0.75) < 4.5 * math.sqrt(0.75 * 0.25 / 2000)
    assert len(set(tasks)) == len(tasks)  # every (env, seed) once
    paths = data.main(["--out", str(tmp_path), "--preset", "tiny", "--train-size", "10", "--val-seeds-per-env", "4"])
    import pandas as pd

    train, test = pd.read_parquet(paths["train"]), pd.read_parquet(paths["test"])
    assert len(train) == 10 and len(test) == 4
    row = train.iloc[0]
    assert row.agent_name == "orbit_agent" and row.data_source == "orbit/guess_number"
    assert [m["role"] for m in row.prompt] == ["user"] and row.prompt[0]["content"] == "[Episode 1]\nGuess 1-8."
    assert set(train.extra_info.map(lambda e: e["seed"])).isdisjoint(test.extra_info.map(lambda e: e["seed"]))
    trial, seed = build_trial(dict(row.extra_info))
    assert trial.reset(seed)[0] == row.prompt[0]["content"] and trial.max_episodes == 3
    with pytest.raises(ValueError, match="unknown environment"):
        data.build_rows(replace(cfg, train_envs={"chess": 1.0}))
