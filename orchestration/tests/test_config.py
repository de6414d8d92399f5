"""The night configuration: validation with messages that name the value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nightshift.orchestration.config import NightConfig, ServiceEndpoint, check_night
from nightshift.orchestration.simulate import SIMULATED_SURVEYS


def test_night_must_be_a_date() -> None:
    assert check_night("2026-11-21") == "2026-11-21"
    with pytest.raises(ValueError, match="night='tonight': expected a date YYYY-MM-DD"):
        check_night("tonight")


def test_names_must_be_key_segments_and_limits_positive() -> None:
    with pytest.raises(ValidationError, match="it becomes part of object keys"):
        ServiceEndpoint(name="bad/name", target="x:1")
    with pytest.raises(ValidationError, match="max_concurrent_calls"):
        ServiceEndpoint(name="ok", target="x:1", max_concurrent_calls=0)


def test_config_round_trips_through_json() -> None:
    config = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="ingest:50051")
    assert NightConfig.model_validate_json(config.model_dump_json()) == config
    assert config.survey("planck") is SIMULATED_SURVEYS[1] and config.survey("sdss") is None
