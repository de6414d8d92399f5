"""Shared fixtures: one tiny simulated sky per test session (seconds at nside 256)."""

from __future__ import annotations

import pytest

from nightshift.clusters.config import get_config
from nightshift.clusters.datasets import simulated_sky
from nightshift.clusters.patches import build_splits


@pytest.fixture(scope="session")
def tiny_config():
    return get_config("tiny")


@pytest.fixture(scope="session")
def tiny_sky(tiny_config):
    return simulated_sky(tiny_config)


@pytest.fixture(scope="session")
def tiny_splits(tiny_sky, tiny_config):
    return build_splits(tiny_sky, tiny_config)


@pytest.fixture(scope="session")
def tiny_data(tiny_sky, tiny_splits):
    from nightshift.clusters.datasets import SimulatedData

    return SimulatedData(tiny_sky.truth, dict(tiny_splits))
