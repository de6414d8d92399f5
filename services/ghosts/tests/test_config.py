"""The configuration and its presets."""

import pytest

from nightshift.ghosts.config import PRESETS, GhostsConfig, data_ranges, preset


def test_presets_are_as_documented() -> None:
    assert set(PRESETS) == {"tiny", "default", "paper"}
    paper = preset("paper")
    assert (paper.backbone, paper.image_size, paper.learning_rate, paper.score_threshold) == ("resnet50", 1024, 0.004, 0.8)
    assert paper.epochs == 75 and paper.heads_epochs == 15 and paper.stage_lr_factors == (0.1, 0.01, 0.001)
    assert (paper.train_images, paper.val_images, paper.test_images) == (1400, 300, 300)
    assert preset("default").backbone == "compact"


def test_round_trip_and_overrides() -> None:
    config = preset("default")
    assert GhostsConfig.from_dict(config.to_dict()) == config
    changed = config.with_overrides({"train_images": "8", "stage_epochs": "[1]", "stage_lr_factors": "[1.0]", "optimizer": "sgd"})
    assert (changed.train_images, changed.stage_epochs, changed.optimizer) == (8, (1,), "sgd")


@pytest.mark.parametrize(("values", "message"), [
    ({"backbone": "vgg"}, "backbone 'vgg'"),
    ({"stage_epochs": (1, 2, 3)}, "expected equal lengths"),
    ({"score_threshold": 1.5}, r"score_threshold 1.5: expected a value in \[0, 1\]"),
    ({"train_images": 0}, "train_images 0: expected a positive integer"),
])
def test_bad_values_are_refused(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        GhostsConfig(**values)


def test_unknown_preset_and_override_are_refused() -> None:
    with pytest.raises(ValueError, match="preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="override 'colour'"):
        preset("tiny").with_overrides({"colour": "1"})


def test_data_ranges_are_disjoint() -> None:
    ranges = sorted(data_ranges(preset("paper")).values())
    for (first, count), (next_first, _) in zip(ranges, ranges[1:]):
        assert first + count <= next_first
