"""Test-time augmentation: every dihedral view is undone exactly, the 8-view mean is equivariant,
and the setting reaches stitched inference, the one-pass reference and the service."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nightshift.filaments.config import TEST_TIME_VIEWS, preset
from nightshift.filaments.infer import (DIHEDRAL_VIEWS, dihedral_mean, dihedral_view, predict_probability,
                                        predict_probability_one_pass)
from nightshift.filaments.model import build_unet


def _asymmetric(shape=(1, 1, 6, 6)) -> torch.Tensor:
    """No symmetry at all: every pixel a different value."""
    return torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape) ** 1.5


def test_views_are_the_eight_distinct_dihedral_maps_and_each_inverse_undoes_its_view() -> None:
    image = _asymmetric()
    seen = [dihedral_view(image, v) for v in range(len(DIHEDRAL_VIEWS))]
    assert all(not torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1:])  # 8 different images
    for view in range(len(DIHEDRAL_VIEWS)):
        assert torch.equal(dihedral_view(dihedral_view(image, view), view, inverse=True), image)
    # the first four are the flips: identity, left-right, up-down, half turn
    assert torch.equal(seen[1], image.flip(-1)) and torch.equal(seen[2], image.flip(-2))
    assert torch.equal(seen[3], image.flip(-1).flip(-2))


@pytest.mark.parametrize("views", TEST_TIME_VIEWS)
def test_a_pointwise_network_is_unchanged_by_any_number_of_views(views: int) -> None:
    # A per-pixel function commutes with every view, so the mean of the views transformed back is the
    # function itself; a view undone wrongly (e.g. a quarter turn the same way twice) moves pixels of
    # this asymmetric input and changes the result.
    image = _asymmetric()
    forward = lambda x: torch.sin(x / 7.0)  # noqa: E731
    torch.testing.assert_close(dihedral_mean(forward, image, views), forward(image))


def test_a_wrong_inverse_would_be_caught() -> None:
    image = _asymmetric()
    forward = lambda x: torch.sin(x / 7.0)  # noqa: E731
    wrong = sum(dihedral_view(forward(dihedral_view(image, v)), v) for v in range(8)) / 8  # view applied twice
    assert not torch.allclose(wrong, forward(image))


def _tiny_network():
    config = preset("tiny")
    torch.manual_seed(0)
    return build_unet(levels=config.levels, base_channels=config.base_channels).eval(), config


def test_eight_views_of_a_turned_map_are_the_turned_eight_view_map() -> None:
    network, config = _tiny_network()
    rng = np.random.default_rng(3)
    image = rng.lognormal(np.log(1e22), 0.4, (128, 128)).astype(np.float32)  # stride 32: a symmetric grid of windows
    for views, equivariant in ((8, True), (1, False)):
        views_config = config.with_overrides({"test_time_views": views})
        base = predict_probability(network, image, views_config)
        for turns, flip in ((1, False), (2, False), (0, True), (3, True)):
            def move(a: np.ndarray) -> np.ndarray:
                return np.rot90(a[:, ::-1] if flip else a, turns).copy()
            moved = predict_probability(network, move(image), views_config)
            close = np.allclose(moved, move(base), atol=1e-5)
            assert close == equivariant, (views, turns, flip, float(np.abs(moved - move(base)).max()))


def test_views_change_the_stitched_and_one_pass_maps_and_stay_probabilities() -> None:
    network, config = _tiny_network()
    image = np.random.default_rng(4).lognormal(np.log(1e22), 0.4, (64, 96)).astype(np.float32)
    image[5, 7] = np.nan
    for function in (predict_probability, predict_probability_one_pass):
        maps = {v: function(network, image, config.with_overrides({"test_time_views": v})) for v in TEST_TIME_VIEWS}
        for v, probability in maps.items():
            assert probability.shape == image.shape and probability[5, 7] == 0
            assert probability.min() >= 0 and probability.max() <= 1
        assert all(np.abs(maps[v] - maps[1]).max() > 1e-4 for v in (2, 4, 8))


@pytest.mark.parametrize("views", [0, 3, 16])
def test_other_view_counts_are_rejected(views: int) -> None:
    with pytest.raises(ValueError, match="test_time_views"):
        preset("tiny", test_time_views=views)
