"""The networks: shapes, label scaling, and the ensemble file saved and loaded safely."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.core.devices import configure_tensorflow
from nightshift.inclination.config import build_config
from nightshift.inclination.model import (
    build_classifier, build_ensemble, build_regressor, load_ensemble, scale_inclination, unscale_inclination,
    vgg_backbone,
)


def test_label_scaling_is_the_seeds() -> None:
    np.testing.assert_allclose(scale_inclination(np.array([45.0, 67.5, 90.0])), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(unscale_inclination(scale_inclination(np.array([50.0, 77.0]))), [50.0, 77.0], rtol=1e-6)


def test_backbone_halves_the_image_per_block() -> None:
    backbone = vgg_backbone(filters=(4, 8, 16), convs_per_block=2, name="b")
    assert backbone(np.zeros((2, 64, 64, 3), np.float32)).shape == (2, 8, 8, 16)


def test_twins_output_a_tanh_inclination_and_class_probabilities() -> None:
    config = build_config(preset="tiny")
    images = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    inclination = np.asarray(build_regressor(config=config)(images))
    probabilities = np.asarray(build_classifier(config=config)(images))
    assert inclination.shape == (3, 1) and (np.abs(inclination) < 1).all()
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_ensemble_saves_as_native_keras_and_loads_in_safe_mode(tmp_path) -> None:
    assert configure_tensorflow() in ("cpu",) or configure_tensorflow().startswith("gpu")
    config = build_config(preset="tiny")
    members = range(2)
    ensemble = build_ensemble([build_regressor(config=config, member=m) for m in members],
                              [build_classifier(config=config, member=m) for m in members], image_size=64)
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    images = np.random.default_rng(1).random((4, 64, 64, 3)).astype(np.float32)
    before, after = ensemble.predict(images, verbose=0), load_ensemble(path).predict(images, verbose=0)
    assert after["inclination_scaled"].shape == (4, 2) and after["class_probabilities"].shape == (4, 4)
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)


def test_ensemble_needs_matching_twins() -> None:
    config = build_config(preset="tiny")
    with pytest.raises(ValueError, match="expected equal, non-zero counts"):
        build_ensemble([build_regressor(config=config)], [], image_size=64)


def test_the_paper_preset_networks_take_128_pixel_tiles() -> None:
    config = build_config(preset="paper")
    images = np.zeros((1, 128, 128, 3), np.float32)
    assert np.asarray(build_regressor(config=config)(images)).shape == (1, 1)
    assert np.asarray(build_classifier(config=config)(images)).shape == (1, 2)
