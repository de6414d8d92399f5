"""The networks: shapes, label scaling, and the ensemble file saved and loaded safely."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.core.devices import configure_tensorflow
from nightshift.inclination.config import build_config
from nightshift.inclination.model import (
    build_classifier, build_ensemble, build_regressor, load_ensemble, range_cross_entropy, scale_inclination, unscale_inclination,
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


def test_the_bounded_head_never_leaves_45_to_90_deg_even_saturated() -> None:
    config = build_config(preset="tiny")
    regressor = build_regressor(config=config)
    output = regressor.get_layer("regressor_0_head").get_layer("regressor_0_head_output")
    kernel, bias = output.get_weights()
    images = np.random.default_rng(2).random((16, 64, 64, 3)).astype(np.float32)
    for sign in (1, -1):  # pre-activations of hundreds: tanh at +-1 exactly
        output.set_weights([sign * np.full_like(kernel, 1e3), sign * np.full_like(bias, 1e3)])
        degrees = unscale_inclination(np.asarray(regressor(images)))
        assert (degrees >= 45).all() and (degrees <= 90).all()
        np.testing.assert_allclose(degrees, 90.0 if sign > 0 else 45.0, atol=1e-3)


def test_range_cross_entropy_is_least_at_the_truth_and_keeps_its_gradient_where_tanh_saturates() -> None:
    import tensorflow as tf

    truth = scale_inclination(np.array([[80.0]]))
    candidates = np.linspace(-0.999, 0.999, 2001, dtype=np.float32)[:, None]
    losses = np.asarray(range_cross_entropy(np.repeat(truth, len(candidates), axis=0), candidates))
    assert unscale_inclination(candidates[np.argmin(losses), 0]) == pytest.approx(80.0, abs=0.05)
    # a prediction stuck at 89.8 deg for a galaxy at 80 deg: the gradient with respect to the
    # pre-activation z is 2 (p - u) for the cross-entropy, but MSE's is damped by 1 - tanh(z)^2
    z = tf.Variable([[np.arctanh(float(scale_inclination(np.array(89.8))))]], dtype=tf.float32)
    gradients = {}
    for name, loss in {"cross_entropy": range_cross_entropy, "mse": lambda t, y: tf.reduce_mean((t - y) ** 2, axis=-1)}.items():
        with tf.GradientTape() as tape:
            value = loss(truth, tf.tanh(z))
        gradients[name] = float(tape.gradient(value, z)[0, 0])
    p, u = (np.tanh(float(z[0, 0])) + 1) / 2, (float(truth[0, 0]) + 1) / 2
    assert gradients["cross_entropy"] == pytest.approx(2 * (p - u), rel=1e-3)
    assert abs(gradients["mse"]) < 0.05 * abs(gradients["cross_entropy"])


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
