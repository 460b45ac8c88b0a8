"""Guess the number with higher/lower feedback: the tiny-world environment. The secret is drawn from the
seed in ``[low, high]`` (default 1..8), so what episode 1 found is reusable in episodes 2 and 3. Short
observations keep trials within a char-level model's context."""

from __future__ import annotations

import math
import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_int

#: guesses are answered as plain digits, at most 6 of them
MAX_NUMBER = 999_999


class GuessNumberEnv(TextEnv):
    name = "guess_number"
    default_max_turns = 4

    def __init__(self, max_turns: int | None = None, low: int = 1, high: int = 8):
        owner = type(self).__name__
        self.low = check_int(owner, "low", low, low=0, high=MAX_NUMBER)
        self.high = check_int(owner, "high", high, low=self.low, high=MAX_NUMBER)
        if max_turns is None:  # enough for binary search
            max_turns = max(1, math.ceil(math.log2(self.high - self.low + 2)))
        super().__init__(max_turns=max_turns)

    def _reset(self, rng: random.Random) -> str:
        self.secret = rng.randint(self.low, self.high)
        return f"Guess {self.low}-{self.high}."

    def _apply(self, action: str) -> tuple[str, float, bool]:
        text = action.strip()
        if not (text.isdigit() and text.isascii()) or len(text) > 6:
            raise InvalidAction("not a number.")
        guess = int(text)
        if not self.low <= guess <= self.high:
            raise InvalidAction(f"out of {self.low}-{self.high}.")
        if guess == self.secret:
            return "correct!", SUCCESS_REWARD, True
        return ("higher" if guess < self.secret else "lower"), 0.0, False

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{{rng.randint(self.low, self.high)}}}"
