"""The classical background-fit baseline on known images, and its tuning."""

import dataclasses
import json

import numpy as np

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.baseline import BaselineGrid, ResidualBaseline, significance_maps, tune_baseline
from nightshift.ghosts.crossval import BASELINE_RESULTS
from nightshift.ghosts.focalplane import GAP_LEVEL, ccd_map


def focal_plane(rng: np.random.Generator) -> np.ndarray:
    live = ccd_map() > 0
    y, x = np.mgrid[0:400, 0:400]
    vignetting = 15.0 * ((x - 200) ** 2 + (y - 200) ** 2) / 190**2
    gray = np.where(live, 55 - vignetting + rng.normal(0, 10, live.shape), GAP_LEVEL)
    return np.repeat(gray[None], 3, axis=0).astype(np.float32)


def disk(x0: float, y0: float, radius: float) -> np.ndarray:
    y, x = np.mgrid[0:400, 0:400]
    return ((x - x0) ** 2 + (y - y0) ** 2 <= radius**2) & (ccd_map() > 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_finds_a_diffuse_ring_and_nothing_in_pure_noise() -> None:
    rng = np.random.default_rng(0)
    baseline = ResidualBaseline()
    assert baseline.find(focal_plane(rng)) == []
    pixels = focal_plane(rng)
    inside = disk(200, 150, 25)
    pixels[:, inside] += 15.0
    found = baseline.find(pixels)
    assert found and found[0].label == "bright"  # the ring ranks first
    assert iou(found[0].mask, inside) > 0.5 and 0 < found[0].score <= 1


def test_a_ghost_larger_than_a_ccd_survives_a_fit_without_free_ccd_offsets() -> None:
    """Free per-CCD levels (as per-CCD medians are) absorb a ghost that covers CCDs whole; the smooth focal-plane fit does not."""
    pixels = focal_plane(np.random.default_rng(2))
    ghost = disk(230, 180, 60)  # covers several CCDs whole
    pixels[:, ghost] += 6.0
    smooth_only = ResidualBaseline(degree=2, ccd_offset_sigma=0.0).find(pixels)
    assert smooth_only and iou(smooth_only[0].mask, ghost) > 0.5
    free_offsets = ResidualBaseline(degree=2, ccd_offset_sigma=float("inf")).find(pixels)
    assert max((iou(a.mask, ghost) for a in free_offsets), default=0.0) < 0.2


def test_missing_pixels_are_ignored() -> None:
    pixels = focal_plane(np.random.default_rng(1))
    pixels[:, :, :100] = np.nan
    assert ResidualBaseline().find(pixels) == []


def test_tuning_keeps_the_best_training_figure_and_the_defaults_are_the_committed_tuning() -> None:
    rng = np.random.default_rng(3)
    pixels, truths = [], []
    for x0 in (150, 250):
        image, ghost = focal_plane(rng), disk(x0, 200, 55)
        image[:, ghost] += 8.0
        pixels.append(image)
        truths.append([Artefact("faint", ghost)])
    grid = BaselineGrid(degree=(2,), ccd_offset_sigma=(0.0, float("inf")), smoothing_px=(6.0,), threshold_sigma=(3.0,))
    tuned, search = tune_baseline(significance_maps(pixels, grid), truths, grid)
    assert search["train_class_ap50"] == max(t["class_ap50"] for t in search["trials"]) > 0.5
    assert tuned.ccd_offset_sigma == 0.0  # free offsets swallow the ghost
    committed = json.loads(BASELINE_RESULTS.read_text())["simulated"]["parameters"]
    defaults = {k: ("inf" if v == float("inf") else v) for k, v in dataclasses.asdict(ResidualBaseline()).items()}
    assert defaults == committed
