"""Preprocessing on known arrays."""

import numpy as np
import pytest
import torch

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.preprocess import augment, draw_augmentation, image_to_pixels, pixels_to_tensor, training_target


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
