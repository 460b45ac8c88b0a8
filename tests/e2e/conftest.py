"""Fixtures for the end-to-end tests: a small tiny world, built once per session (about a second)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from verl_frontier.tinyworld import build

    out = tmp_path_factory.mktemp("world") / "small-seed0"
    build(out=out, seed=0, size="small", quiet=True, progress=False)
    return out
