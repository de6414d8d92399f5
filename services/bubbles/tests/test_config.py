"""Configuration presets, overrides and seeds."""

import pytest

from nightshift.bubbles.config import PRESETS, BubblesConfig, data_seeds, preset


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_presets_round_trip_through_json(name) -> None:
    config = preset(name)
    assert BubblesConfig.from_dict(config.to_dict()) == config


def test_paper_preset_is_the_seed_configuration() -> None:
    paper = PRESETS["paper"]
    assert (paper.backbone, paper.learning_rate, paper.weight_decay, paper.grad_clip) == ("vgg16", 1e-4, 1e-3, 10.0)
    assert (paper.epochs, paper.patience, paper.window_nms_iou, paper.field_nms_iou) == (300, 15, 0.45, 0.3)


def test_overrides_parse_json_and_reject_unknown_fields() -> None:
    config = preset("tiny").with_overrides({"train_fields": "5", "window_px": "[150]", "backbone": "vgg16"})
    assert (config.train_fields, config.window_px, config.backbone) == (5, (150,), "vgg16")
    with pytest.raises(ValueError, match="not a bubbles config field"):
        preset("tiny").with_overrides({"colour": "1"})
    with pytest.raises(ValueError, match="backbone 'resnet': expected"):
        preset("tiny").with_overrides({"backbone": "resnet"})
    with pytest.raises(ValueError, match="preset 'huge'"):
        preset("huge")


def test_window_larger_than_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="window_px"):
        BubblesConfig(field_px=200, window_px=(300,))


def test_data_seeds_are_disjoint() -> None:
    assert len(set(data_seeds(7).values())) == 3
