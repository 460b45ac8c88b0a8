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
        self.max_turns = int(max_turns if max_turns is not None else self.default_max_turns)
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
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
