"""Mastermind (ORBIT ``game:Mastermind-v0-random`` fixed to 3 distinct digits from 1-6), 3 turns per
episode. Feedback: black pegs (right digit, right place) and white pegs (right digit, wrong place). A
format error ends the episode (as in ORBIT's configuration)."""

from __future__ import annotations

import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_bool, check_int


def pegs(code: tuple[int, ...], guess: tuple[int, ...]) -> tuple[int, int]:
    """(black, white) pegs, multiset rule."""
    black = sum(c == g for c, g in zip(code, guess, strict=True))
    common = sum(min(code.count(d), guess.count(d)) for d in set(guess))
    return black, common - black


class MastermindEnv(TextEnv):
    name = "mastermind"
    default_max_turns = 3
    end_on_invalid = True

    def __init__(
        self, max_turns: int | None = None, code_length: int = 3, num_digits: int = 6, duplicates: bool = False
    ):
        super().__init__(max_turns=max_turns)
        owner = type(self).__name__
        self.code_length = check_int(owner, "code_length", code_length, low=1)
        self.num_digits = check_int(owner, "num_digits", num_digits, low=1, high=9)  # guesses are single digits
        self.duplicates = check_bool(owner, "duplicates", duplicates)
        if not self.duplicates and self.code_length > self.num_digits:
            raise ValueError(
                f"{owner}: code_length ({self.code_length}) > num_digits ({self.num_digits}) needs duplicates=True"
            )

    def _reset(self, rng: random.Random) -> str:
        digits = list(range(1, self.num_digits + 1))
        if self.duplicates:
            self.code = tuple(rng.choice(digits) for _ in range(self.code_length))
        else:
            self.code = tuple(rng.sample(digits, self.code_length))
        rule = "may repeat" if self.duplicates else "are all different"
        return (
            f"You are playing Mastermind. Find the secret code of {self.code_length} digits from 1 to "
            f"{self.num_digits} (the digits {rule}) within {self.max_turns} guesses. After each guess you get black "
            "pegs (right digit, right place) and white pegs (right digit, wrong place). Answer like \\boxed{1 2 3}."
        )

    def _apply(self, action: str) -> tuple[str, float, bool]:
        text = action.replace(",", " ").split()
        if len(text) == 1 and text[0].isdigit():
            text = list(text[0])
        if len(text) != self.code_length or not all(t.isdigit() and t.isascii() for t in text):
            raise InvalidAction(f"give {self.code_length} digits.")
        guess = tuple(int(t) for t in text)
        if not all(1 <= g <= self.num_digits for g in guess):
            raise InvalidAction(f"digits must be between 1 and {self.num_digits}.")
        black, white = pegs(self.code, guess)
        shown = " ".join(map(str, guess))
        if black == self.code_length:
            return f"At turn {self.turn}, you guessed [{shown}]. You cracked the code. You win!", SUCCESS_REWARD, True
        return (
            f"At turn {self.turn}, you guessed [{shown}]. This guess receives {black} black peg(s) and "
            f"{white} white peg(s).",
            0.0,
            False,
        )

    def sample_random_action(self, rng: random.Random) -> str:
        digits = rng.sample(range(1, self.num_digits + 1), self.code_length)
        return "\\boxed{" + " ".join(map(str, digits)) + "}"
