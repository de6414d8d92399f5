"""The configuration object and its presets."""

from __future__ import annotations

import pytest

from nightshift.inclination.config import PRESETS, InclinationConfig, build_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_round_trips_through_json(preset: str) -> None:
    config = build_config(preset=preset)
    assert config.preset == preset
    assert InclinationConfig.from_dict(config.to_dict()) == config


def test_presets_follow_the_seed_sizes() -> None:
    assert build_config(preset="default").image_size == 64
    paper = build_config(preset="paper")
    assert paper.image_size == 128 and paper.ensemble_size == 12 and paper.test_galaxies == 3314


def test_overrides_are_applied_and_lists_become_tuples() -> None:
    config = build_config(preset="tiny", epochs=7, filters=[2, 4])
    assert config.epochs == 7 and config.filters == (2, 4)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"image_size": 100}, "image_size = 100: expected 32, 64 or 128"),
    ({"epochs": 0}, "epochs = 0: expected an integer >= 1"),
    ({"filters": [8] * 7}, "at most log2"),
    ({"reject_fraction": 0.95}, "fractions summing below 1"),
    ({"augmented_copies": 17}, "augmented_copies = 17: expected 1..16"),
    ({"no_such_field": 1}, "unknown config fields \\['no_such_field'\\]"),
    ({"learning_rate": "fast"}, "learning_rate = 'fast': expected a float"),
    ({"regression_loss": "huber"}, "regression_loss = 'huber': expected one of"),
    ({"rotation": "random"}, "rotation = 'random': expected one of"),
])
def test_bad_values_are_refused_with_the_field_and_what_was_expected(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_config(preset="tiny", **overrides)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset 'huge': expected one of"):
        build_config(preset="huge")
