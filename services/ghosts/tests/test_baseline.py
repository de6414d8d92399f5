"""The classical residual baseline on known images."""

import numpy as np

from nightshift.ghosts.baseline import ResidualBaseline
from nightshift.ghosts.focalplane import GAP_LEVEL, ccd_map


def focal_plane(rng: np.random.Generator) -> np.ndarray:
    live = ccd_map() > 0
    gray = np.where(live, 50 + rng.normal(0, 10, live.shape), GAP_LEVEL)
    return np.repeat(gray[None], 3, axis=0).astype(np.float32)


def test_finds_a_diffuse_ring_and_nothing_in_pure_noise() -> None:
    rng = np.random.default_rng(0)
    baseline = ResidualBaseline()
    assert baseline.find(focal_plane(rng)) == []
    pixels = focal_plane(rng)
    y, x = np.mgrid[0:400, 0:400]
    inside = ((x - 200) ** 2 + (y - 150) ** 2 <= 25**2) & (ccd_map() > 0)
    pixels[:, inside] += 15.0
    found = baseline.find(pixels)
    assert found and found[0].label == "bright"  # the ring ranks first
    overlap = (found[0].mask & inside).sum() / (found[0].mask | inside).sum()
    assert overlap > 0.5 and 0 < found[0].score <= 1


def test_missing_pixels_are_ignored() -> None:
    pixels = focal_plane(np.random.default_rng(1))
    pixels[:, :, :100] = np.nan
    assert ResidualBaseline().find(pixels) == []
