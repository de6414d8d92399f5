"""The simulator: its truth matches its images; seeded and reproducible."""

import numpy as np
import pytest

from nightshift.ghosts.focalplane import GAP_LEVEL, ccd_map
from nightshift.ghosts.simulate import SkyModel, simulate_dataset, simulate_exposure


@pytest.fixture(scope="module")
def exposures():
    return simulate_dataset(12, seed=3)


def test_images_have_the_real_form(exposures) -> None:
    for exposure in exposures:
        assert exposure.image.shape == (400, 400, 3) and exposure.image.dtype == np.uint8
        assert np.array_equal(exposure.image[..., 0], exposure.image[..., 2])
        gaps = ccd_map() == 0
        assert abs(np.median(exposure.image[..., 0][gaps]) - GAP_LEVEL) <= 1


def test_artefact_light_is_where_the_truth_masks_are() -> None:
    """The same exposures with every artefact's brightness set to zero differ only inside the truth masks."""
    dark = SkyModel(bright_level=(0.0, 0.0), faint_level=(0.0, 0.0), rays_level=(0.0, 0.0))
    live = ccd_map() > 0
    checked = 0
    for index in range(8):
        with_light = simulate_exposure(np.random.default_rng([11, index]))
        without = simulate_exposure(np.random.default_rng([11, index]), dark)
        difference = with_light.image[..., 0].astype(float) - without.image[..., 0].astype(float)
        if not with_light.artefacts:
            assert np.abs(difference).max() == 0
            continue
        union = np.logical_or.reduce([a.mask for a in with_light.artefacts])
        assert abs(difference[live & ~union].mean()) < 0.5  # JPEG ringing only
        for artefact in with_light.artefacts:
            assert difference[artefact.mask & live].mean() > 1.0, artefact.label
            checked += 1
    assert checked >= 8


def test_seeded_and_reproducible() -> None:
    first, again = simulate_exposure(np.random.default_rng([5, 1])), simulate_exposure(np.random.default_rng([5, 1]))
    assert np.array_equal(first.image, again.image)
    assert [a.label for a in first.artefacts] == [a.label for a in again.artefacts]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first.artefacts, again.artefacts))
    assert not np.array_equal(first.image, simulate_exposure(np.random.default_rng([5, 2])).image)


def test_clean_exposures_and_counts() -> None:
    clean = simulate_dataset(3, seed=1, sky=SkyModel(clean_fraction=1.0))
    assert all(e.artefacts == [] for e in clean)
    only_rays = simulate_dataset(3, seed=1, sky=SkyModel(clean_fraction=0.0, bright_ghosts=(0, 0), faint_ghosts=(0, 0), rays=(1, 1)))
    assert all([a.label for a in e.artefacts] == ["rays"] for e in only_rays)
    assert simulate_dataset(0, seed=1) == []
    with pytest.raises(ValueError, match="count -1"):
        simulate_dataset(-1, seed=1)
