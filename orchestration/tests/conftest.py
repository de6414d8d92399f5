"""Fixtures of the orchestration tests: Prefect against a temporary database, and a real local night.

``local_night`` is a real rclone S3 server with the ingest service and one tile-statistics service
per simulated survey running as processes started through their commands, exactly as the demo
starts them; the store's settings are in the environment, where the flow's tasks read them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.launcher import LocalNight, ingest_command, tilestats_command
from nightshift.orchestration.simulate import SIMULATED_SURVEYS


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect flows run against a temporary database and server for the session."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def local_night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNight]:
    """A local S3 server plus the ingest and tile-statistics services, as processes, for the session."""
    with LocalNight(tmp_path_factory.mktemp("night")) as night, pytest.MonkeyPatch.context() as patch:
        store = night.start_s3()
        for name, value in store.config.to_env().items():
            patch.setenv(name, value)
        commands = [ingest_command(), *(tilestats_command(f"tilestats-{s.name}", s.band_names) for s in SIMULATED_SURVEYS)]
        failed = night.start_services(commands, timeout_s=120)
        assert not failed, failed
        yield night


@pytest.fixture
def night_config(local_night: LocalNight) -> Callable[[], NightConfig]:
    """Makes the night's configuration: the simulated surveys and the services running now (targets change on restart)."""

    def make() -> NightConfig:
        services = tuple(ServiceEndpoint(name=name, target=s.target, timeout_s=30, batch_tiles=4)
                         for name, s in sorted(local_night.services.items()) if name != "ingest")
        return NightConfig(surveys=SIMULATED_SURVEYS, ingest_target=local_night.services["ingest"].target, services=services)

    return make
