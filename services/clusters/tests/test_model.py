"""The U-Net family: shapes, the in-model scaling, losses on known cases, safe save/load."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.clusters.config import get_config
from nightshift.clusters.model import LOSSES, build_model, load_model, make_loss
from nightshift.clusters.preprocess import arcsinh_scale


@pytest.mark.parametrize("architecture", ["unet", "attention_unet", "unet_plus_plus"])
def test_every_architecture_maps_tiles_to_probabilities(architecture: str) -> None:
    config = get_config("tiny", overrides={"architecture": architecture, "filters": [4, 8, 16]})
    model = build_model(config=config)
    out = np.asarray(model(np.random.default_rng(0).normal(size=(2, 64, 64, 6)).astype("float32")))
    assert out.shape == (2, 64, 64, 1) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_scaling_layer_is_the_seed_preprocessing_and_survives_safe_loading(tmp_path) -> None:
    config = get_config("tiny")
    scales = np.array([1e-4, 1e-4, 2e-4, 5e-4, 0.3, 1.0])
    model = build_model(config=config, scales=scales)
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 6)).astype("float32") * scales.astype("float32")
    layer = model.get_layer("arcsinh_mad")
    expected = arcsinh_scale(np.moveaxis(x, -1, 1), scales)
    np.testing.assert_allclose(np.moveaxis(np.asarray(layer(x)), -1, 1), expected, rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model(str(path))
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="expected 6 positive values"):
        layer.set_scales([1.0, 2.0])


def test_tile_median_subtraction_ignores_band_levels_and_survives_safe_loading(tmp_path) -> None:
    from nightshift.clusters.preprocess import subtract_tile_medians

    model = build_model(config=get_config("tiny", overrides={"subtract_tile_median": True}))
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 6)).astype("float32")
    offsets = np.array([0.5, -2.0, 0.0, 3.0, 10.0, 40.0], "float32")  # e.g. a brighter dust level per band
    np.testing.assert_allclose(np.asarray(model(x + offsets)), np.asarray(model(x)), atol=1e-5)
    np.testing.assert_allclose(np.moveaxis(np.asarray(model.get_layer("tile_median")(x)), -1, 1),
                               subtract_tile_medians(np.moveaxis(x, -1, 1)), atol=1e-6)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(load_model(str(tmp_path / "m.keras"))(x)), np.asarray(model(x)), atol=1e-6)
    plain = build_model(config=get_config("tiny"))
    assert not np.allclose(np.asarray(plain(x + offsets)), np.asarray(plain(x)), atol=1e-3)


def test_losses_on_known_cases() -> None:
    truth = np.zeros((1, 4, 4, 1), "float32")
    truth[0, :2, :2] = 1.0
    perfect = truth.copy()
    inverted = 1.0 - truth
    for name in ("dice", "tversky", "focal_tversky"):
        assert float(make_loss(name)(truth, perfect)) == pytest.approx(0.0, abs=1e-4)
        assert float(make_loss(name)(truth, inverted)) > 0.8
    # Tversky index with alpha 0.7 on false negatives: TP=2, FN=2, FP=0 -> (2+1)/(2+1.4+1)
    half = truth.copy()
    half[0, 1, :2] = 0.0
    assert float(make_loss("tversky")(truth, half)) == pytest.approx(1 - 3 / 4.4, abs=1e-4)
    assert float(make_loss("binary_crossentropy")(truth, np.full_like(truth, 0.5))) == pytest.approx(np.log(2), abs=1e-5)
    assert float(make_loss("focal")(truth, perfect)) == pytest.approx(0.0, abs=1e-6)
    assert float(make_loss("combo")(truth, perfect)) < 0.01
    assert set(LOSSES) == {"binary_crossentropy", "focal", "dice", "tversky", "focal_tversky", "combo"}
    with pytest.raises(ValueError, match="loss 'l1'"):
        make_loss("l1")
