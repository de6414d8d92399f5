"""Preprocessing on known arrays."""

import numpy as np
import pytest
import torch

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.preprocess import (
    augment, display_pixels, draw_augmentation, image_to_pixels, pixels_to_tensor, sky_and_noise, survey_to_display,
    training_target,
)
from nightshift.ghosts.simulate import nominal_pedestal, stretch


def test_image_to_pixels() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    pixels = image_to_pixels(image)
    assert pixels.shape == (3, 2, 3) and pixels.dtype == np.float32
    assert pixels[1, 0, 2] == image[0, 2, 1]
    assert image_to_pixels(np.full((2, 2), 7, np.uint8)).tolist() == [[[7.0, 7.0], [7.0, 7.0]]] * 3
    with pytest.raises(ValueError, match=r"image shape \(2, 2, 4\)"):
        image_to_pixels(np.zeros((2, 2, 4), np.uint8))


def test_pixels_to_tensor_scales_and_fills_missing_with_the_gap_level() -> None:
    pixels = np.array([[[0.0, 255.0], [np.nan, 300.0]]] * 3, np.float32)
    tensor = pixels_to_tensor(pixels)
    assert tensor.dtype == torch.float32
    assert tensor[0].flatten().tolist() == pytest.approx([0.0, 1.0, 23 / 255, 1.0])
    with pytest.raises(ValueError, match=r"expected \(3, H, W\)"):
        pixels_to_tensor(np.zeros((1, 2, 2), np.float32))


def test_training_target_and_augmentation_move_boxes_with_masks() -> None:
    mask = np.zeros((4, 6), bool)
    mask[0:2, 0:3] = True
    target = training_target([Artefact("rays", mask)], 4, 6)
    assert target["labels"].tolist() == [3] and target["boxes"].tolist() == [[0.0, 0.0, 3.0, 2.0]]
    image = torch.zeros((3, 4, 6))
    _, masks, boxes = augment(image, target["masks"], ["hflip"])
    assert boxes.tolist() == [[3.0, 0.0, 6.0, 2.0]]
    _, masks, boxes = augment(image, target["masks"], ["vflip"])
    assert boxes.tolist() == [[0.0, 2.0, 3.0, 4.0]]
    rotated, masks, boxes = augment(image, target["masks"], ["rot270"])
    assert rotated.shape == (3, 6, 4) and boxes.tolist() == [[2.0, 0.0, 4.0, 3.0]]
    assert training_target([], 4, 6)["boxes"].shape == (0, 4)
    with pytest.raises(ValueError, match="augmentation 'spin'"):
        augment(image, target["masks"], ["spin"])


def test_draw_augmentation_uses_the_seeds_operations() -> None:
    drawn = {draw_augmentation(np.random.default_rng(i)) for i in range(64)}
    assert () in drawn and ("hflip", "vflip", "rot270") in drawn


def test_linear_flux_is_put_on_the_display_scale() -> None:
    """Electrons (sky 2000, noise 3) with a faint disk become the simulator's display of the same light."""
    rng = np.random.default_rng(0)
    light = rng.normal(0.0, 1.0, (400, 400)).astype(np.float32)
    y, x = np.mgrid[0:400, 0:400]
    light[np.hypot(x - 150, y - 220) < 40] += 4.0
    flux = (2000.0 + 3.0 * light).astype(np.float32)
    flux[:, :10] = np.nan  # off the detector
    sky, noise = sky_and_noise(flux)
    assert sky == pytest.approx(2000.0, abs=0.3) and noise == pytest.approx(3.0, rel=0.03)
    display = survey_to_display(np.stack([flux] * 3))
    expected = np.clip(nominal_pedestal() + stretch(light), 0, 255)
    assert display.shape == (3, 400, 400) and display.dtype == np.float32
    assert np.isnan(display[:, :, :10]).all()
    assert np.abs(display[0, :, 10:] - expected[:, 10:]).max() < 2.0  # within 2 of 255 levels everywhere
    assert np.nanmin(display) >= 0 and np.nanmax(display) <= 255


def test_display_pixels_dispatches_on_the_band_unit() -> None:
    pixels = np.full((3, 400, 400), 40.0, np.float32)
    pixels[:, 0, 0] = 60.0
    assert np.array_equal(display_pixels(pixels, ["8-bit", "", "8-BIT"]), pixels)  # display levels used as given
    stretched = display_pixels(pixels * 100, ["electron", "8-bit", "electron"])
    assert np.array_equal(stretched[1], pixels[1] * 100)
    assert stretched[0, 200, 200] == pytest.approx(nominal_pedestal()[200, 200], abs=0.01)  # the sky at the pedestal
    with pytest.raises(ValueError, match="one per band"):
        display_pixels(pixels, ["electron"])
    with pytest.raises(ValueError, match="without any finite pixel"):
        display_pixels(np.full((3, 400, 400), np.nan, np.float32), ["electron"] * 3)
