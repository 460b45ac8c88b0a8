"""ORBIT's multi-episode trial (``envs/multi_episode_env.py`` of the ORBIT code), pure Python.

One trial = one task seed played repeatedly in one growing chat:

* every episode resets the inner environment with the *same* seed (same word, board, deck, maze, ...);
* the first observation of episode k is prefixed with the header (default
  ``"[Episode k] New episode begins."`` plus a newline);
* when an episode ends, its terminal observation is followed, in the same observation, by
  ``"\\n\\n"`` + the next episode's header and initial observation;
* episode success = the inner step ``terminated`` (not truncated) with reward > 0; the step reward of the
  wrapper is ``success_reward`` on that step, else 0, so the trial reward is
  ``success_reward x (number of successful episodes)``;
* the trial ends when the total step budget ``num_episodes x max_turns`` is spent (ORBIT: episodes that
  finish early leave room for more episodes), or, with ``max_episodes`` set, after that many episodes.
"""

from __future__ import annotations

import math
from typing import Any

from .envs.base import TextEnv, check_float, check_int

DEFAULT_HEADER = "[Episode {k}] New episode begins."
SYSTEM_PROMPT = (
    "You are solving the same task across multiple episodes with a fixed total step budget. Each episode resets "
    "the environment but keeps the task identical. Leverage information gathered from earlier episodes to succeed "
    "faster. Think briefly and respond with actions inside \\boxed{} each turn. Overlong responses will be penalized."
)


class MultiEpisodeEnv:
    """Wraps a :class:`TextEnv`. ``reset(seed) -> (obs, info)``; ``step(action) -> (obs, reward, terminated,
    truncated, info)`` where ``terminated`` means ``max_episodes`` episodes were played and ``truncated``
    means the step budget ran out; either ends the trial."""

    def __init__(
        self,
        env: TextEnv,
        num_episodes: int = 3,
        max_episodes: int | None = None,
        header: str = DEFAULT_HEADER,
        success_reward: float = 1.0,
    ):
        owner = type(self).__name__
        if not isinstance(env, TextEnv):
            raise TypeError(f"{owner}: env must be a TextEnv, got {type(env).__name__}")
        self.env = env
        self.num_episodes = check_int(owner, "num_episodes", num_episodes, low=1)
        self.max_episodes = None if max_episodes is None else check_int(owner, "max_episodes", max_episodes, low=1)
        if not isinstance(header, str):
            raise TypeError(f"{owner}: header must be a str, got {header!r}")
        try:
            header.format(k=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{owner}: header must be a format string with only {{k}}, got {header!r} ({exc})"
            ) from None
        self.header = header
        self.success_reward = check_float(owner, "success_reward", success_reward, low=0.0, low_open=True)
        self.total_step_cap = self.num_episodes * env.max_turns

    def _format(self, obs: str, episode_index: int) -> str:
        return f"{self.header.format(k=episode_index + 1)}\n{obs}"

    def reset(self, seed: int) -> tuple[str, dict]:
        self.seed = int(seed)
        self.total_steps = 0
        self.episode_index = 0
        self.episode_step = 0
        self.episode_successes: list[bool] = []
        self.episode_lengths: list[int] = []
        self.invalid_actions = 0
        self.done = False
        obs, info = self.env.reset(self.seed)
        return self._format(obs, 0), self._info(info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.done:
            return "The trial is over.", 0.0, True, False, self._info({})
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total_steps += 1
        self.episode_step += 1
        self.invalid_actions += bool(info.get("invalid_action", False))
        success = bool(terminated and not truncated and reward > 0)
        shaped = self.success_reward if success else 0.0
        episode_done = terminated or truncated
        if episode_done:
            self.episode_successes.append(success)
            self.episode_lengths.append(self.episode_step)
        out_of_budget = self.total_steps >= self.total_step_cap
        all_played = self.max_episodes is not None and len(self.episode_successes) >= self.max_episodes
        if not episode_done and out_of_budget:  # the running episode is cut: attempted, not successful
            self.episode_successes.append(False)
            self.episode_lengths.append(self.episode_step)
        self.done = out_of_budget or (episode_done and all_played)
        if episode_done and not self.done:
            next_obs, _ = self.env.reset(self.seed)
            self.episode_index += 1
            self.episode_step = 0
            obs = f"{obs}\n\n{self._format(next_obs, self.episode_index)}"
        term = self.done and not out_of_budget
        trunc = self.done and out_of_budget
        return obs, shaped, term, trunc, self._info(info, episode_done=episode_done, success=success)

    def _info(self, base: dict, **extra: Any) -> dict:
        info = dict(base)
        info.update(
            episode_index=self.episode_index,
            episode_step=self.episode_step,
            total_steps=self.total_steps,
            step_cap=self.total_step_cap,
            episode_successes=list(self.episode_successes),
            **extra,
        )
        return info

    @property
    def success_count(self) -> int:
        return sum(self.episode_successes)

    def metrics(self, num_report: int | None = None) -> dict[str, float]:
        """Per-trial metrics with a fixed key set: ``episode_{k}_success`` / ``episode_{k}_steps`` for
        k = 1..num_report (default ``num_episodes``; an episode never reached counts as a failure that used
        ``max_turns`` steps, as in ORBIT's early-termination branch), plus ``success_count``, ``any_success``,
        ``num_episodes_played``, ``total_steps`` and ``invalid_actions``."""
        num_report = self.num_episodes if num_report is None else num_report
        out: dict[str, float] = {}
        for k in range(num_report):
            played = k < len(self.episode_successes)
            out[f"episode_{k + 1}_success"] = float(self.episode_successes[k]) if played else 0.0
            out[f"episode_{k + 1}_steps"] = float(self.episode_lengths[k] if played else self.env.max_turns)
        out["success_count"] = float(self.success_count)
        out["any_success"] = float(self.success_count > 0)
        out["num_episodes_played"] = float(len(self.episode_successes))
        out["total_steps"] = float(self.total_steps)
        out["invalid_actions"] = float(self.invalid_actions)
        return out


def build_trial(extra_info: dict) -> tuple[MultiEpisodeEnv, int]:
    """The trial a data row describes (keys written by :mod:`verl_frontier.orbit.data`): ``env``, ``seed``,
    optional ``num_episodes`` (3), ``max_turns`` (the env's default), ``max_episodes`` (None),
    ``episode_header``, ``env_kwargs`` (a JSON object string). Returns (wrapper, seed)."""
    import json

    from .envs import make_env

    def get(key, default=None):
        value = extra_info.get(key, default)
        if value is None or (isinstance(value, float) and math.isnan(value)):  # a missing parquet value
            return default
        return value

    def count(key, default=None):
        """An integer field; parquet may hold it as an integral float (a column with missing values)."""
        value = get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return value if value is None else check_int("extra_info", key, value, low=1)

    for key in ("env", "seed"):
        if get(key) is None:
            raise ValueError(f"extra_info: {key} is missing")
    env_kwargs = get("env_kwargs", "{}")
    try:
        env_kwargs = json.loads(env_kwargs) if isinstance(env_kwargs, str) else dict(env_kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"extra_info: env_kwargs must be a JSON object, got {env_kwargs!r} ({exc})") from None
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"extra_info: env_kwargs must be a JSON object, got {env_kwargs!r}")
    max_turns = count("max_turns")
    if max_turns is not None:
        env_kwargs["max_turns"] = max_turns
    env = make_env(str(extra_info["env"]), **env_kwargs)
    wrapper = MultiEpisodeEnv(
        env,
        num_episodes=count("num_episodes", 3),
        max_episodes=count("max_episodes"),
        header=str(get("episode_header", DEFAULT_HEADER)),
    )
    seed = get("seed")
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    return wrapper, check_int("extra_info", "seed", seed, low=0)
