"""Fixtures for the end-to-end tests: a small tiny world, built once per session (about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_world(small_world_dir):
    return small_world_dir


@pytest.fixture(scope="session")
def shared_ray(tmp_path_factory):
    """One Ray cluster (with fake GPU slots) that every e2e verl run of the session joins as a new job."""
    import tempfile

    from verl_runner import SharedRay

    # Ray's socket paths must stay short: use a short temp dir, not pytest's deep one
    ray = SharedRay(Path(tempfile.mkdtemp(prefix="ray-e2e-")))
    yield ray  # started lazily by run_recipe, inside the machine lock (a start next to a busy run can time out)
    ray.stop()
