"""verl glue for ORBIT: importing this module registers the ``orbit_agent`` agent loop with verl
(``verl.experimental.agent_loop.agent_loop.register``). Rows select it with ``agent_name="orbit_agent"``
(written by ``python -m verl_frontier.orbit.data``), or set
``actor_rollout_ref.rollout.agent.default_agent_loop=orbit_agent``."""

from __future__ import annotations

from verl_frontier.orbit import agent_loop  # noqa: F401  (registers "orbit_agent")

EXPECTED_REGISTRATIONS: list[tuple[str, str]] = [("agent_loop", agent_loop.AGENT_NAME)]
