"""The config presets, overrides and input checks."""

from __future__ import annotations

import pytest

from nightshift.clusters.config import HFI_BANDS, PRESETS, ClustersConfig, get_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name: str) -> None:
    config = get_config(name)
    assert config.preset == name
    assert ClustersConfig.from_dict(config.to_dict()) == config
    assert config.band_names[:6] == tuple(b.name for b in HFI_BANDS)


def test_paper_preset_is_the_seed_configuration() -> None:
    paper = get_config("paper")
    assert (paper.nside, paper.patch_px, paper.pixel_scale_arcmin, paper.disk_radius_arcmin) == (2048, 64, 1.7, 2.5)
    assert paper.band_names[-1] == "y_map" and paper.filters == (64, 128, 256, 512, 1024)
    assert (paper.optimizer, paper.learning_rate, paper.batch_size, paper.epochs, paper.patience) == ("sgd", 1e-2, 20, 30, 12)
    assert paper.validation_cells == (10, 26, 39, 42) and paper.test_cells == (7,)


def test_overrides_are_parsed_as_json() -> None:
    config = get_config("tiny", overrides={"filters": "[4, 8]", "epochs": "2", "architecture": "attention_unet"})
    assert config.filters == (4, 8) and config.epochs == 2 and config.architecture == "attention_unet"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"loss": "hinge"}, "loss='hinge': expected one of"),
    ({"nside": 1000}, "nside=1000: expected a power of 2"),
    ({"test_cells": [10]}, "no cell shared with test_cells"),
    ({"patch_px": 63}, "divisible by"),
    ({"colour": 1}, "unknown config fields"),
    ({"training_skies": 0}, "training_skies=0: expected >= 1"),
    ({"evaluation_seeds": []}, r"evaluation_seeds=\(\): expected at least one sky seed"),
])
def test_bad_values_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_config("tiny", overrides=overrides)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="preset 'huge'"):
        get_config("huge")


def test_the_evaluation_protocol_replaces_the_skies_a_card_recorded() -> None:
    """The shipped card recorded skies 1 and 2, which since chose a design: an evaluation scores today's test skies."""
    recorded = ClustersConfig(evaluation_seeds=(1, 2), threshold=0.8)
    scored = recorded.with_evaluation_protocol()
    assert scored.evaluation_seeds == (4, 5) and scored.threshold == 0.8
    assert not set(scored.evaluation_seeds) & set(get_config("default").training_sky_seeds)
