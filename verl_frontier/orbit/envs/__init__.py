"""ORBIT's text environments (GEM gym-style API) and a registry to build them by name.

Training set: rock_paper_scissors, minesweeper, hangman, wordle, blackjack. Held-out: maze, mastermind.
Tiny world: guess_number. ``make_env(name, **kwargs)`` builds one; ``register_env`` adds another.
"""

from __future__ import annotations

from typing import Any

from .base import INVALID_REWARD, SUCCESS_REWARD, InvalidAction, TextEnv, extract_boxed
from .blackjack import BlackjackEnv
from .guess_number import GuessNumberEnv
from .hangman import HangmanEnv
from .mastermind import MastermindEnv
from .maze import MazeEnv
from .minesweeper import MinesweeperEnv
from .rock_paper_scissors import RockPaperScissorsEnv
from .wordle import WordleEnv

_REGISTRY: dict[str, type[TextEnv]] = {}

TRAIN_ENVS = ("rock_paper_scissors", "minesweeper", "hangman", "wordle", "blackjack")
HELDOUT_ENVS = ("maze", "mastermind")
TINY_ENVS = ("guess_number",)


def register_env(name: str, cls: type[TextEnv]) -> type[TextEnv]:
    """Register ``cls`` under ``name``; registering a different class under a taken name raises."""
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"environment {name!r} is already registered to {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def list_envs() -> list[str]:
    return sorted(_REGISTRY)


def make_env(name: str, **kwargs: Any) -> TextEnv:
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown ORBIT environment {name!r}; known: {list_envs()}") from None
    return cls(**kwargs)


for _cls in (
    RockPaperScissorsEnv,
    MinesweeperEnv,
    HangmanEnv,
    WordleEnv,
    BlackjackEnv,
    MazeEnv,
    MastermindEnv,
    GuessNumberEnv,
):
    register_env(_cls.name, _cls)

__all__ = [
    "HELDOUT_ENVS",
    "INVALID_REWARD",
    "SUCCESS_REWARD",
    "TINY_ENVS",
    "TRAIN_ENVS",
    "InvalidAction",
    "TextEnv",
    "extract_boxed",
    "list_envs",
    "make_env",
    "register_env",
]
