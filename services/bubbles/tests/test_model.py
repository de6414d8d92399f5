"""The SSD300 builds with the paper's priors for every preset, and its loss teaches from negatives too."""

import pytest
import torch

from nightshift.bubbles.config import FEATURE_MAPS, preset
from nightshift.bubbles.model import build_model, load_weights, prior_generator, save_weights


def _priors(model) -> int:
    model.eval()
    with torch.no_grad():
        images = torch.zeros(1, 2, 300, 300)
        maps = list(model.backbone(images).values())
        image_list = model.transform([images[0]])[0]
        return len(model.anchor_generator(image_list, maps)[0]), [tuple(m.shape[-2:]) for m in maps]


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_every_preset_has_the_paper_feature_maps_and_8732_priors(name) -> None:
    count, shapes = _priors(build_model(preset(name)))
    assert count == 8732
    assert shapes == [(s, s) for s in FEATURE_MAPS]


def test_prior_sizes_are_the_papers() -> None:
    assert [round(s * 300) for s in prior_generator().scales] == [30, 60, 111, 162, 213, 264, 315]


def test_detections_have_the_documented_shape_and_weights_round_trip(tmp_path) -> None:
    config = preset("tiny")
    model = build_model(config).eval()
    with torch.no_grad():
        output = model([torch.rand(2, 300, 300)])[0]
    assert output["boxes"].shape[1] == 4 and len(output["boxes"]) == len(output["scores"])
    path = save_weights(model, tmp_path / "w.safetensors")
    loaded = load_weights(path, config)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_an_image_without_bubbles_still_gives_a_classification_loss() -> None:
    model = build_model(preset("tiny")).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model([torch.rand(2, 300, 300), torch.rand(2, 300, 300)], [empty, empty])
    assert losses["classification"] > 0 and losses["bbox_regression"] == 0
