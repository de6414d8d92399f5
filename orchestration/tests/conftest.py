"""Fixtures of the orchestration tests: a real local night (Prefect's test server is the root conftest's ``prefect_harness``).

``local_night`` is a real rclone S3 server with the ingest service and one tile-statistics service
per simulated survey running as processes started through their commands, exactly as the demo
starts them; the store's settings are in the environment, where the flow's tasks read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.launcher import LocalNight, ingest_command, tilestats_command
from nightshift.orchestration.simulate import SIMULATED_SURVEYS


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
