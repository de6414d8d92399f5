"""The detection rule, sky positions, merging across tiles and the catalogue files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from regions import Regions

from nightshift.clusters.catalogues import ReferenceCatalogue
from nightshift.clusters.detections import find_peaks
from nightshift.clusters.infer import (
    Detections, find_detections, merge_detections, predict_probabilities, sky_positions, write_detection_catalogue,
)
from nightshift.clusters.patches import patch_wcs
from nightshift.core.catalog import DETECTION_COLUMNS


def test_detection_rule_on_a_hand_made_map() -> None:
    maps = np.zeros((2, 16, 16))
    maps[0, 2, 2:5] = 0.95  # three adjacent pixels: a detection at (x=3, y=2)
    maps[0, 10, 10:12] = 0.99  # two pixels: too small
    maps[0, 12:15, 5] = 0.85  # below the threshold
    maps[1, 4:12, 4:12] = 0.97  # 64 pixels: radius capped
    found = find_detections(maps, threshold=0.9, min_pixels=3, max_radius_px=3.0)
    assert found.tile.tolist() == [0, 1]
    assert (found.x[0], found.y[0]) == pytest.approx((3.0, 2.0))
    assert found.n_pixels.tolist() == [3, 64] and found.radius_px[1] == 3.0
    assert found.score[0] == pytest.approx(0.95) and found.edge_px[0] == pytest.approx(2.0)
    assert len(find_detections(np.zeros((0, 8, 8)), threshold=0.9, min_pixels=3, max_radius_px=3)) == 0


def _blob(row: float, col: float, *, width_px: float = 2.5, size: int = 32) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.exp(-0.5 * ((rows - row) ** 2 + (cols - col) ** 2) / width_px**2)


def test_two_close_clusters_are_one_group_but_two_peaks() -> None:
    maps = (_blob(16, 12) + _blob(16, 20))[None]  # 8 px (13.6') apart: 0.72 between them, one group above 0.3
    groups = find_detections(maps, threshold=0.3, min_pixels=3, max_radius_px=10.0)
    peaks = find_peaks(maps, threshold=0.3, min_pixels=3, max_radius_px=10.0)
    assert len(groups) == 1
    assert len(peaks) == 2
    assert sorted(zip(peaks.x.tolist(), peaks.y.tolist())) == [(12.0, 16.0), (20.0, 16.0)]
    assert peaks.score.tolist() == pytest.approx([1.0, 1.0], abs=0.01)
    assert peaks.n_pixels.tolist() == [groups.n_pixels[0]] * 2  # each peak reports its group
    assert peaks.radius_px == pytest.approx(np.full(2, np.sqrt(groups.n_pixels[0] / (2 * np.pi))))


def test_a_saturated_plateau_is_one_peak_and_small_groups_are_dropped() -> None:
    maps = np.zeros((2, 16, 16))
    maps[0, 4:8, 4:8] = 1.0  # a plateau of equal values: one peak at its barycentre
    maps[0, 12, 12] = 0.95  # a single pixel: below min_pixels
    maps[1] = 0.2  # nothing above the threshold
    peaks = find_peaks(maps, threshold=0.5, min_pixels=3, max_radius_px=5.0)
    assert peaks.tile.tolist() == [0]
    assert (peaks.x[0], peaks.y[0]) == pytest.approx((5.5, 5.5))
    assert peaks.n_pixels.tolist() == [16] and peaks.edge_px[0] == pytest.approx(5.5)
    assert len(find_peaks(np.zeros((0, 8, 8)), threshold=0.5, min_pixels=1, max_radius_px=3)) == 0
    with pytest.raises(ValueError, match="expected"):
        find_peaks(np.zeros((8, 8)), threshold=0.5, min_pixels=1, max_radius_px=3)


def test_sky_positions_follow_the_tile_wcs_and_merging_keeps_the_central_copy() -> None:
    wcs = [patch_wcs(100.0, 30.0, patch_px=64, pixel_arcmin=1.7), patch_wcs(100.5, 30.0, patch_px=64, pixel_arcmin=1.7)]
    target = SkyCoord(l=100.3 * u.deg, b=30.0 * u.deg, frame="galactic")
    x0, y0 = wcs[0].world_to_pixel(target)
    x1, y1 = wcs[1].world_to_pixel(target)
    detections = Detections(
        tile=np.array([0, 1]), x=np.array([x0, x1 + 1.0]), y=np.array([y0, y1]), radius_px=np.ones(2),
        score=np.array([0.99, 0.95]), n_pixels=np.array([5, 5]),
        edge_px=np.array([min(x0, 63 - x0), min(x1, 63 - x1)]), glon=np.full(2, np.nan), glat=np.full(2, np.nan), mmf_snr=np.full(2, np.nan),
    )
    placed = sky_positions(detections, wcs)
    assert placed.glon[0] == pytest.approx(100.3, abs=1e-6) and placed.glat[0] == pytest.approx(30.0, abs=1e-6)
    merged = merge_detections(placed, radius_arcmin=4.0)
    assert len(merged) == 1 and merged.tile[0] == int(np.argmax(detections.edge_px))
    assert len(merge_detections(placed, radius_arcmin=1.0)) == 2


def test_catalogue_files_label_known_and_new(tmp_path, tiny_config) -> None:
    detections = Detections(
        tile=np.array([0, 0]), x=np.zeros(2), y=np.zeros(2), radius_px=np.array([2.0, 3.0]), score=np.array([0.9, 0.95]),
        n_pixels=np.array([4, 9]), edge_px=np.zeros(2), glon=np.array([10.0, 40.0]), glat=np.array([20.0, -40.0]), mmf_snr=np.array([6.5, np.nan]),
    )
    psz2 = ReferenceCatalogue("PSZ2", np.array(["PSZ2 G010.00+20.00"]),
                              SkyCoord(l=[10.02] * u.deg, b=[20.0] * u.deg, frame="galactic").icrs)
    paths = write_detection_catalogue(detections, [psz2], tiny_config, tmp_path / "found", tile_ids=["t0"],
                                      meta={"INPUT": "sky.fits"})
    assert [p.name for p in paths] == ["found.fits", "found.ecsv", "found.csv", "found_galactic.reg", "found_icrs.reg"]
    table = Table.read(paths[1])
    assert (table.meta["INPUT"], table.meta["THRESH"], table.meta["FRAME"]) == ("sky.fits", tiny_config.threshold, "galactic")
    assert list(pd.read_csv(paths[2], keep_default_na=False)["status"]) == ["known", "new"]
    assert table["status"].tolist() == ["known", "new"] and table["known_as"][0] == "PSZ2 G010.00+20.00"
    assert table["known_in"][0] == "PSZ2" and table.colnames[:len(DETECTION_COLUMNS)] == [c.name for c in DETECTION_COLUMNS]
    assert str(table["radius_arcsec"].unit) == "arcsec" and table["radius_arcsec"][0] == pytest.approx(2 * 102.0)
    assert table["mmf_snr"][0] == pytest.approx(6.5) and np.isnan(table["mmf_snr"][1])
    circles = Regions.read(paths[3], format="ds9")
    assert (circles[0].center.l.deg, circles[0].center.b.deg) == (pytest.approx(10.0), pytest.approx(20.0))
    assert circles[0].radius.to_value(u.arcsec) == pytest.approx(2 * 102.0)
    assert Regions.read(paths[4], format="ds9")[0].center.frame.name == "icrs"


def test_probabilities_are_zero_on_missing_pixels(tiny_config) -> None:
    from nightshift.clusters.model import build_model

    model = build_model(config=tiny_config)
    pixels = np.random.default_rng(0).normal(size=(2, 6, 64, 64)).astype(np.float32)
    pixels[0, 3, :5, :5] = np.nan
    probability = predict_probabilities(model, pixels, batch_size=1)
    assert probability.shape == (2, 64, 64) and np.all(probability[0, :5, :5] == 0.0) and probability[0, 10, 10] > 0
    assert predict_probabilities(model, np.zeros((0, 6, 64, 64))).shape == (0, 64, 64)


def test_field_detections_drop_tile_edges_and_the_galactic_plane(tiny_config) -> None:
    from nightshift.clusters.infer import tile_detections

    maps = np.zeros((2, 64, 64))
    maps[:, 30:33, 30:33] = 0.99  # central blob in both tiles
    maps[:, 1:4, 40:43] = 0.99  # blob touching the edge margin (centre 2 px from the edge)
    wcs = [patch_wcs(100.0, 45.0, patch_px=64, pixel_arcmin=1.7), patch_wcs(100.0, 3.0, patch_px=64, pixel_arcmin=1.7)]
    kept = tile_detections(maps, wcs, tiny_config)
    assert kept.tile.tolist() == [0]  # the second tile lies within 10 deg of the plane
    assert (kept.x[0], kept.y[0]) == pytest.approx((31.0, 31.0))


def test_the_union_catalogue_adds_the_mmf_peaks_above_its_snr(tiny_config) -> None:
    """mmf_union_snr: the MMF's peaks above it join the U-Net's detections; one cluster found by both is one row."""
    import dataclasses

    from nightshift.clusters.infer import field_detections, tile_detections
    from nightshift.clusters.matched_filter import MmfMaps

    probability = np.zeros((2, 64, 64))
    probability[0, 30:33, 30:33] = 0.99  # the U-Net's cluster, also an MMF peak
    snr = np.zeros((2, 64, 64))
    snr[0, 31, 32] = 7.0
    snr[1, 20, 40] = 6.0  # the MMF alone: joins at S/N > 5.5
    snr[1, 45, 20] = 5.0  # below the union's S/N
    mmf = MmfMaps(snr, np.full(snr.shape, 4.0), np.zeros(snr.shape), np.ones((2, 1)), (4.0,))
    wcs = [patch_wcs(100.0, 45.0, patch_px=64, pixel_arcmin=1.7), patch_wcs(110.0, 45.0, patch_px=64, pixel_arcmin=1.7)]
    union = dataclasses.replace(tiny_config, mmf_union_snr=5.5)
    assert len(field_detections(probability, wcs, tiny_config)) == 1  # the U-Net alone
    found = tile_detections(probability, wcs, union, mmf=mmf)
    assert sorted(zip(found.tile.tolist(), found.x.tolist(), found.y.tolist())) == [(0, 31.0, 31.0), (0, 32.0, 31.0), (1, 40.0, 20.0)]
    assert found.mmf_snr.tolist() == [7.0, 7.0, 6.0]  # the U-Net's detection carries the S/N measured at it
    assert np.isnan(tile_detections(probability, wcs, tiny_config).mmf_snr).all()  # no MMF run: not measured
    merged = field_detections(probability, wcs, union, mmf=mmf)
    assert sorted(merged.tile.tolist()) == [0, 1]  # the U-Net's and the MMF's copy of one cluster merged
    with pytest.raises(ValueError, match="MMF maps"):
        tile_detections(probability, wcs, union)
    peaks = dataclasses.replace(tiny_config, candidate_extraction="peaks")
    assert len(field_detections(probability, wcs, peaks)) == 1
