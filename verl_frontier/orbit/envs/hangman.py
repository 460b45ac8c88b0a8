"""Hangman with 3-letter words (ORBIT ``game:Hangman-v0-easy``): guess one letter or the whole word per turn,
10 turns, no life limit (GEM's rules). The secret word is drawn from the seed."""

from __future__ import annotations

import random
import string
from functools import cache
from importlib import resources

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_int


@cache
def load_words(filename: str) -> tuple[str, ...]:
    text = resources.files("verl_frontier.orbit.envs").joinpath("data", filename).read_text()
    return tuple(w.strip().upper() for w in text.split() if w.strip())


def word_lengths() -> tuple[int, ...]:
    """Word lengths with a word list (``data/words<N>.txt``)."""
    found = []
    for entry in resources.files("verl_frontier.orbit.envs").joinpath("data").iterdir():
        stem = entry.name.removeprefix("words").removesuffix(".txt")
        if entry.name.startswith("words") and entry.name.endswith(".txt") and stem.isdigit():
            found.append(int(stem))
    return tuple(sorted(found))


def words_of_length(owner: str, word_length) -> tuple[str, ...]:
    """The (non-empty) word list for ``word_length``; ValueError naming ``owner`` when there is none."""
    length = check_int(owner, "word_length", word_length, low=1)
    if length not in word_lengths():
        raise ValueError(f"{owner}: word_length must be one of {word_lengths()} (the word lists), got {length}")
    words = load_words(f"words{length}.txt")
    if not words:
        raise ValueError(f"{owner}: the word list for word_length {length} is empty")
    return words


class HangmanEnv(TextEnv):
    name = "hangman"
    default_max_turns = 10

    def __init__(self, max_turns: int | None = None, word_length: int = 3):
        super().__init__(max_turns=max_turns)
        self.words = words_of_length(type(self).__name__, word_length)
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
