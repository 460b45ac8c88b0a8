"""Hangman with 3-letter words (ORBIT ``game:Hangman-v0-easy``): guess one letter or the whole word per turn,
10 turns, no life limit (GEM's rules). The secret word is drawn from the seed."""

from __future__ import annotations

import random
import string
from functools import cache
from importlib import resources

from .base import SUCCESS_REWARD, InvalidAction, TextEnv


@cache
def load_words(filename: str) -> tuple[str, ...]:
    text = resources.files("verl_frontier.orbit.envs").joinpath("data", filename).read_text()
    return tuple(w.strip().upper() for w in text.split() if w.strip())


class HangmanEnv(TextEnv):
    name = "hangman"
    default_max_turns = 10

    def __init__(self, max_turns: int | None = None, word_length: int = 3):
        super().__init__(max_turns=max_turns)
        self.words = tuple(w for w in load_words(f"words{int(word_length)}.txt"))
        self.word_length = int(word_length)

    def _reset(self, rng: random.Random) -> str:
        self.word = rng.choice(self.words)
        self.guessed: list[str] = []
        return (
            f"You are playing Hangman. Guess the secret {self.word_length}-letter word within {self.max_turns} "
            "turns. Each turn guess one letter or the whole word, e.g. \\boxed{E} or \\boxed{CAT}.\n"
            f"Word: {self.pattern()}"
        )

    def pattern(self) -> str:
        return " ".join(ch if ch in self.guessed else "_" for ch in self.word)

    def _apply(self, action: str) -> tuple[str, float, bool]:
        guess = action.strip().upper()
        if len(guess) == 1:
            if guess not in string.ascii_uppercase:
                raise InvalidAction(f"'{guess}' is not a letter.")
            if guess in self.guessed:
                raise InvalidAction(f"you already guessed '{guess}'.")
            self.guessed.append(guess)
            hit = guess in self.word
            if all(ch in self.guessed for ch in self.word):
                return f"Word: {self.pattern()}\nYou revealed the word {self.word}. You win!", SUCCESS_REWARD, True
            verdict = "is in the word" if hit else "is not in the word"
            return f"'{guess}' {verdict}. Word: {self.pattern()}", 0.0, False
        if len(guess) == self.word_length and guess.isalpha() and guess.isascii():
            if guess == self.word:
                return f"Correct, the word is {self.word}. You win!", SUCCESS_REWARD, True
            return f"'{guess}' is not the word. Word: {self.pattern()}", 0.0, False
        raise InvalidAction(f"guess one letter or a {self.word_length}-letter word.")

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{{rng.choice(string.ascii_uppercase)}}}"
