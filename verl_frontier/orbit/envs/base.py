"""GEM-style text environments: ``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward, terminated,
truncated, info)``.

An action is the content of the *last* ``\\boxed{...}`` in the model's text. Every environment follows the
same contract (ORBIT / GEM games):

* a successful episode ends with ``terminated=True`` and ``reward == SUCCESS_REWARD`` (> 0);
* a failed terminal step gives ``terminated=True`` and ``reward == 0``;
* an episode that reaches ``max_turns`` without terminating is ``truncated`` (never a success);
* a malformed or illegal action gives a penalty observation and ``INVALID_REWARD``, counts as a turn, and
  never raises (environments with ``end_on_invalid`` end the episode instead, as ORBIT's Mastermind does);
* ``reset(seed)`` with the same seed gives the same task (secret word, board, deck, ...).
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any

SUCCESS_REWARD = 1.0
INVALID_REWARD = -0.1
BOXED = "\\boxed{"


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces balanced), stripped; None if absent
    or unclosed."""
    if not isinstance(text, str):
        return None
    start = text.rfind(BOXED)
    while start != -1:
        depth, i = 1, start + len(BOXED)
        n = len(text)
        while i < n:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(BOXED) : i].strip()
            i += 1
        start = text.rfind(BOXED, 0, start)  # unclosed: try an earlier one
    return None


def check_int(owner: str, name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int: an integer (not a bool; an integral numpy scalar is fine) in ``[low, high]``;
    else TypeError / ValueError naming ``owner``, the argument and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(
            part for part in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if part
        )
        raise ValueError(f"{owner}: {name} must be {bounds}, got {value}")
    return value


def check_float(
    owner: str, name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a finite float (a real number, not a bool) in ``[low, high]`` (``(low, high]`` with
    ``low_open``); else TypeError / ValueError naming ``owner``, the argument and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        bounds = " and ".join(part for part in ("finite", lo, hi) if part)
        raise ValueError(f"{owner}: {name} must be {bounds}, got {value!r}")
    return value


def check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


class InvalidAction(Exception):
    """Raised inside ``_apply`` for an illegal action; :meth:`TextEnv.step` turns it into a penalty."""


class TextEnv:
    """Base class. Subclasses implement ``_reset(rng) -> str`` (the task's initial observation; draw every
    task property from ``rng``) and ``_apply(action) -> (obs, reward, terminated)`` (raise InvalidAction for
    illegal actions)."""

    name: str = "text_env"
    default_max_turns: int = 10
    end_on_invalid: bool = False

    def __init__(self, max_turns: int | None = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(kwargs)}")
        turns = max_turns if max_turns is not None else self.default_max_turns
        self.max_turns = check_int(type(self).__name__, "max_turns", turns, low=1)
        self.seed: int | None = None
        self.turn = 0
        self.done = True
        self.num_resets = 0  # resets with the current seed (the episode index within a trial)

    # ---- gym API ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[str, dict]:
        if seed is None:
            seed = random.randrange(2**31)
        seed = int(seed)
        self.num_resets = self.num_resets + 1 if seed == self.seed else 0
        self.seed = seed
        self.turn = 0
        self.done = False
        obs = self._reset(random.Random(seed))
        return obs, {"seed": seed, "turn": 0, "max_turns": self.max_turns}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.done:
            return "The episode is over. Reset the environment.", 0.0, True, False, self._info(False, True)
        self.turn += 1
        content = extract_boxed(action)
        invalid = False
        if content is None:
            obs, reward, terminated = self._penalty("no action found; answer inside \\boxed{}.")
            invalid = True
        else:
            try:
                obs, reward, terminated = self._apply(content)
            except InvalidAction as exc:
                obs, reward, terminated = self._penalty(str(exc))
                invalid = True
        truncated = (not terminated) and self.turn >= self.max_turns
        if truncated:
            obs = f"{obs}\nYou have reached the maximum number of turns ({self.max_turns})."
        self.done = terminated or truncated
        return obs, reward, terminated, truncated, self._info(invalid, terminated and reward > 0)

    # ---- helpers ---------------------------------------------------------------------------------------
    def _penalty(self, message: str) -> tuple[str, float, bool]:
        if self.end_on_invalid:
            return f"Invalid action: {message} The episode ends.", INVALID_REWARD, True
        return f"Invalid action: {message}", INVALID_REWARD, False

    def _info(self, invalid: bool, success: bool) -> dict:
        return {"turn": self.turn, "max_turns": self.max_turns, "invalid_action": invalid, "success": success}

    def _reset(self, rng: random.Random) -> str:
        raise NotImplementedError

    def _apply(self, action: str) -> tuple[str, float, bool]:
        raise NotImplementedError

    def sample_random_action(self, rng: random.Random) -> str:
        """A uniformly random *well-formed* action (for random players and benchmarks)."""
        raise NotImplementedError
