"""The U-Net: shapes for every level count, the seed's 5 levels, weights round-trip through safetensors."""

from __future__ import annotations

import json

import pytest
import torch

from nightshift.filaments.config import preset
from nightshift.filaments.model import build_unet, bundled_weights, load_checkpoint, load_network, save_weights


@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_output_has_the_input_shape(levels: int) -> None:
    network = build_unet(levels=levels, base_channels=2).eval()
    assert network(torch.zeros(3, 1, 64, 64)).shape == (3, 1, 64, 64)


def test_paper_unet5_has_23_convolutions() -> None:
    network = build_unet(levels=5, base_channels=64)
    layers = [m for m in network.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    # 9 double convolutions, 4 up-convolutions and the 1x1 head: the seed's "23 layers"
    assert len(layers) == 23
    assert network.encoder[-1][0].out_channels == 1024


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="levels=0"):
        build_unet(levels=0)


def test_weights_round_trip(tmp_path) -> None:
    config = preset("tiny")
    torch.manual_seed(0)
    network = build_unet(levels=config.levels, base_channels=config.base_channels).eval()
    path = save_weights(network, tmp_path / "m.safetensors")
    loaded = load_network(path, config)
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(loaded(x), network(x))


def test_shipped_model_is_one_small_file_with_its_card() -> None:
    weights = bundled_weights()
    assert weights.stat().st_size <= 10 * 1024 * 1024
    card = json.loads(weights.with_suffix(".json").read_text())
    # what was set after training (the inference settings, a fine-tune) is said in the card
    assert {"name", "metrics", "config", "data_seed"} <= set(card) <= {"name", "metrics", "config", "data_seed",
                                                                       "inference_selection", "finetune"}
    assert "inference_selection" in card or (card["config"]["test_time_views"], card["config"]["threshold"]) == (1, 0.5)
    network, config, _ = load_checkpoint()
    assert config.name == card["name"] and not network.training
