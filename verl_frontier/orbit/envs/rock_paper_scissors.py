"""Rock-Paper-Scissors against a hidden biased opponent (ORBIT ``rps_env_adapter``).

Per seed the opponent has a fixed "polarized" distribution: a dominant action (uniform over the three) with
probability ``p_dom = min_dom + (1 - min_dom) * t``, ``t ~ Beta(2, 2)``, the rest split between the other two
actions by ``Dirichlet(1, 1)``. The opponent's moves are i.i.d. from it; their random stream differs between
episodes of a trial (ORBIT draws them unseeded) but is reproducible: it is seeded by (seed, episode index).
An episode is ``rounds`` (5) rounds; it succeeds iff the win rate is >= 0.5 (3 wins of 5).
"""

from __future__ import annotations

import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_float, check_int

ACTIONS = ("rock", "paper", "scissors")
BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}  # key beats value
COUNTER = {v: k for k, v in BEATS.items()}  # the action that beats the key


def opponent_distribution(seed: int, min_dom: float = 0.4) -> dict[str, float]:
    """The hidden per-seed opponent distribution (probabilities over ACTIONS)."""
    rng = random.Random(seed * 7919 + 17)
    dominant = rng.randrange(3)
    t = rng.betavariate(2.0, 2.0)
    p_dom = min_dom + (1.0 - min_dom) * t
    g1, g2 = rng.gammavariate(1.0, 1.0), rng.gammavariate(1.0, 1.0)
    split = g1 / (g1 + g2) if g1 + g2 > 0 else 0.5
    others = [i for i in range(3) if i != dominant]
    probs = [0.0, 0.0, 0.0]
    probs[dominant] = p_dom
    probs[others[0]] = (1.0 - p_dom) * split
    probs[others[1]] = (1.0 - p_dom) * (1.0 - split)
    return dict(zip(ACTIONS, probs, strict=True))


class RockPaperScissorsEnv(TextEnv):
    name = "rock_paper_scissors"
    default_max_turns = 5

    def __init__(self, max_turns: int | None = None, rounds: int | None = None, min_dom: float = 0.4):
        super().__init__(max_turns=max_turns)
        owner = type(self).__name__
        # every round takes a turn: more rounds than turns could never finish an episode
        self.rounds = check_int(owner, "rounds", rounds if rounds is not None else self.max_turns, 1, self.max_turns)
        self.min_dom = check_float(owner, "min_dom", min_dom, low=0.0, high=1.0)

    def _reset(self, rng: random.Random) -> str:
        self.distribution = opponent_distribution(self.seed, self.min_dom)
        self._cum = []
        acc = 0.0
        for a in ACTIONS:
            acc += self.distribution[a]
            self._cum.append(acc)
        self._opp_rng = random.Random(self.seed * 1_000_003 + self.num_resets)
        self.wins = self.losses = self.draws = 0
        self.round = 0
        return (
            "You are playing a multi-turn Rock-Paper-Scissors game against an adversary. The adversary's moves "
            "are sampled from a fixed (hidden) distribution determined by the game. "
            f"Each episode has {self.rounds} rounds; you succeed if you win at least half of them. "
            "Output your action (rock, paper or scissors) within \\boxed{...}."
        )

    def next_opponent_action(self) -> str:
        """The opponent's next move without consuming it (for oracle players in tests)."""
        state = self._opp_rng.getstate()
        move = self._draw()
        self._opp_rng.setstate(state)
        return move

    def _draw(self) -> str:
        u = self._opp_rng.random()
        for a, c in zip(ACTIONS, self._cum, strict=True):
            if u < c:
                return a
        return ACTIONS[-1]

    def _apply(self, action: str) -> tuple[str, float, bool]:
        move = action.strip().lower()
        if move not in BEATS:
            # an illegal move still uses up the round: it counts as a loss
            self.round += 1
            self.losses += 1
            self._draw()
            if self.round >= self.rounds:
                return self._finish(f"'{action[:20]}' is not rock, paper or scissors; you lose this round.")
            raise InvalidAction(f"'{action[:20]}' is not rock, paper or scissors; you lose this round.")
        opp = self._draw()
        self.round += 1
        if BEATS[move] == opp:
            self.wins += 1
            result = "You win"
        elif BEATS[opp] == move:
            self.losses += 1
            result = "You lose"
        else:
            self.draws += 1
            result = "You draw"
        text = f"The adversary played {opp}. {result}."
        if self.round >= self.rounds:
            return self._finish(text)
        return text, 0.0, False

    def _finish(self, text: str) -> tuple[str, float, bool]:
        success = 2 * self.wins >= self.rounds
        summary = f"{text} Episode over: {self.wins} wins, {self.losses} losses, {self.draws} draws."
        return summary, (SUCCESS_REWARD if success else 0.0), True

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{{rng.choice(ACTIONS)}}}"
