"""The config: presets build, round-trip through JSON and reject bad values with a message."""

from __future__ import annotations

import pytest

from nightshift.filaments.config import PRESETS, FilamentsConfig, preset
from nightshift.filaments.model import unet_from_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_and_builds(name: str) -> None:
    config = preset(name)
    assert FilamentsConfig.from_dict(config.to_dict()) == config
    assert unet_from_config(config) is not None


def test_paper_preset_is_the_seeds_unet5() -> None:
    paper = preset("paper")
    assert (paper.levels, paper.base_channels, paper.patch_px, paper.batch_size, paper.loss) == (5, 64, 64, 64, "bce")
    assert paper.min_mask_fraction == 0.2 and paper.validation_fraction == 0.2


def test_overrides_parse_json_strings() -> None:
    config = preset("tiny", epochs="7", real_train_columns="[0, 100]", loss="bce")
    assert config.epochs == 7 and config.real_train_columns == (0, 100) and config.loss == "bce"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("loss", "focal", "loss='focal'"),
    ("patch_px", 60, "multiple of 2"),
    ("real_validation_columns", (150, 300), "overlaps"),
    ("stride_px", 0, "stride_px=0"),
])
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preset("default", **{field: value})


def test_unknown_preset_and_field() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown filaments config fields"):
        preset("tiny", colour="red")
