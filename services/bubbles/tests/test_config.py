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
    from nightshift.bubbles.night import NIGHT_SEED_OFFSET

    seeds = data_seeds(7)
    assert len(set(seeds.values())) == 4 and NIGHT_SEED_OFFSET + 7 not in seeds.values()


def test_the_hard_test_sky_changes_only_the_sky() -> None:
    from nightshift.bubbles.config import hard_test_config

    default = preset("default")
    hard = hard_test_config(default)
    assert hard.shell_contrast_range[0] < default.shell_contrast_range[0] and hard.bubbles_per_field > default.bubbles_per_field
    assert hard.bubble_separation == 0.0
    sky = ("bubbles_per_field", "shell_contrast_range", "clear_dust_range", "bubble_separation")
    assert {k: v for k, v in hard.to_dict().items() if k not in sky} == {k: v for k, v in default.to_dict().items() if k not in sky}
    with pytest.raises(ValueError, match="shell_contrast_range"):
        BubblesConfig(shell_contrast_range=(1.0, 0.5))
