"""Fixtures for the end-to-end tests: a small tiny world, built once per session (about a second)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_world(small_world_dir):
    return small_world_dir
