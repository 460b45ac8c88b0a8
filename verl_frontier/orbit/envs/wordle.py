"""Wordle with 5-letter words (ORBIT ``game:Wordle-v0-hard``, 10 turns instead of GEM's 25).

Feedback per letter: G (right letter, right place), Y (in the word elsewhere), X (not in the word), with the
standard duplicate-letter rule (each secret letter is matched at most once, greens first). Any 5-letter
alphabetic guess is accepted (the shipped list is small); the secret word comes from the shipped list.
"""

from __future__ import annotations

import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv
from .hangman import words_of_length


def wordle_feedback(secret: str, guess: str) -> str:
    """'G'/'Y'/'X' per position (greens first, each secret letter used once)."""
    result = ["X"] * len(guess)
    remaining: dict[str, int] = {}
    for i, (s, g) in enumerate(zip(secret, guess, strict=True)):
        if s == g:
            result[i] = "G"
        else:
            remaining[s] = remaining.get(s, 0) + 1
    for i, g in enumerate(guess):
        if result[i] != "G" and remaining.get(g, 0) > 0:
            result[i] = "Y"
            remaining[g] -= 1
    return "".join(result)


class WordleEnv(TextEnv):
    name = "wordle"
    default_max_turns = 10

    def __init__(self, max_turns: int | None = None, word_length: int = 5):
        super().__init__(max_turns=max_turns)
        self.words = words_of_length(type(self).__name__, word_length)
        self.word_length = int(word_length)

    def _reset(self, rng: random.Random) -> str:
        self.word = rng.choice(self.words)
        return (
            f"You are playing Wordle. Guess the secret {self.word_length}-letter word within {self.max_turns} turns. "
            "After each guess you get one symbol per letter: G = right letter in the right place, Y = in the word "
            "but elsewhere, X = not in the word. Answer like \\boxed{CRANE}."
        )

    def _apply(self, action: str) -> tuple[str, float, bool]:
        guess = action.strip().upper()
        if len(guess) != self.word_length or not (guess.isalpha() and guess.isascii()):
            raise InvalidAction(f"guess a {self.word_length}-letter word.")
        fb = wordle_feedback(self.word, guess)
        if guess == self.word:
            return f"{guess}: {fb}. You guessed the word. You win!", SUCCESS_REWARD, True
        return f"Turn {self.turn}: {guess} -> {fb}", 0.0, False

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{{rng.choice(self.words)}}}"
