"""The simulator: its truth matches its images, it is deterministic, its shell statistics are the MWP's."""

from pathlib import Path

import numpy as np
import pytest

from nightshift.bubbles.config import preset
from nightshift.bubbles.realdata import CATALOGUE_FILE, DEFAULT_REAL_DIR
from nightshift.bubbles.simulate import MWP_SHELLS, field_tiles, fit_shell_statistics, simulate_field
from nightshift.bubbles.windows import Window

CONFIG = preset("tiny")


@pytest.fixture(scope="module")
def fields():
    return [simulate_field(CONFIG, 11, i) for i in range(4)]


def _ring_contrast(band: np.ndarray, x: float, y: float, radius: float) -> float:
    yy, xx = np.mgrid[: band.shape[0], : band.shape[1]]
    distance = np.hypot(xx - x, yy - y)
    rim = band[(distance > 0.8 * radius) & (distance < 1.2 * radius)]
    cavity = band[distance < 0.5 * radius]
    return float(np.median(rim) - np.median(cavity))


def test_bubbles_are_where_the_catalogue_says(fields) -> None:
    """An 8 um shell at each catalogued position and radius, and 24 um warm dust inside the clear ones."""
    rng = np.random.default_rng(0)
    truth_rims, random_rims, clear_excess, other_excess = [], [], [], []
    for field in fields:
        band8, band24 = field.pixels
        level8 = np.median(band8)
        for b in field.bubbles:
            truth_rims.append(_ring_contrast(band8, b.x_px, b.y_px, b.radius_px) / level8)
            x, y = rng.uniform(b.radius_px, band8.shape[0] - b.radius_px, 2)
            random_rims.append(_ring_contrast(band8, x, y, b.radius_px) / level8)
            inside = band24[int(b.y_px) - 2:int(b.y_px) + 3, int(b.x_px) - 2:int(b.x_px) + 3].mean() / np.median(band24)
            (clear_excess if b.clear else other_excess).append(inside)
    assert len(truth_rims) >= 8
    assert np.median(truth_rims) > 0.2 > np.median(random_rims)
    assert np.mean(np.array(truth_rims) > 0) > 0.8
    assert clear_excess and other_excess and np.median(clear_excess) > np.median(other_excess) + 0.5


def test_truth_sky_positions_follow_the_field_wcs(fields) -> None:
    field = fields[0]
    for b in field.bubbles:
        lon, lat = field.wcs.pixel_to_world_values(b.x_px, b.y_px)
        assert (lon, lat) == pytest.approx((b.glon_deg, b.glat_deg), abs=1e-9)
        assert b.radius_arcsec == pytest.approx(b.radius_px * CONFIG.pixel_scale_arcsec)
    assert field.header["CTYPE1"] == "GLON-CAR" and field.pixels.dtype == np.float32


def test_the_hard_sky_has_more_and_fainter_shells() -> None:
    from nightshift.bubbles.config import hard_test_config

    default = [b for i in range(4) for b in simulate_field(CONFIG, 11, i).bubbles]
    hard_config = hard_test_config(CONFIG)
    hard_fields = [simulate_field(hard_config, 11, i) for i in range(4)]
    hard = [b for f in hard_fields for b in f.bubbles]
    assert all(0.5 <= b.contrast <= 1.5 for b in default)
    assert all(0.15 <= b.contrast <= 1.5 for b in hard) and min(b.contrast for b in hard) < 0.5
    assert len(hard) > len(default)


def test_fields_are_deterministic_for_a_seed(fields) -> None:
    again = simulate_field(CONFIG, 11, 0)
    assert np.array_equal(again.pixels, fields[0].pixels) and again.bubbles == fields[0].bubbles
    assert not np.array_equal(simulate_field(CONFIG, 12, 0).pixels, fields[0].pixels)


def test_field_tiles_are_ingest_shaped_windows_with_their_wcs(fields) -> None:
    field = fields[0]
    tiles = field_tiles(field, CONFIG)
    assert {t.labels["window_px"] for t in tiles} == {str(w) for w in CONFIG.window_px}
    tile = tiles[0]
    assert [b.name for b in tile.bands] == ["irac4", "mips24"] and tile.bands[0].unit == "MJy/sr"
    assert tuple(tile.pixels.shape) == (2, 300, 300)
    window = Window(int(tile.labels["x_px"]), int(tile.labels["y_px"]), int(tile.labels["window_px"]))
    lon, lat = field.wcs.pixel_to_world_values(window.x0 + (window.size_px - 1) / 2, window.y0 + (window.size_px - 1) / 2)
    assert (tile.center.lon_deg, tile.center.lat_deg) == pytest.approx((float(lon), float(lat)))


def test_embedded_shell_statistics_are_those_fitted_to_the_mwp_catalogue() -> None:
    path = Path(DEFAULT_REAL_DIR) / CATALOGUE_FILE
    if not path.exists():
        pytest.skip(f"the MWP DR1 catalogue ({path}) is not available on this machine")
    fitted = fit_shell_statistics(path)
    assert fitted.log_radius_mean == pytest.approx(MWP_SHELLS.log_radius_mean, abs=1e-3)
    assert fitted.log_radius_sigma == pytest.approx(MWP_SHELLS.log_radius_sigma, abs=1e-3)
    assert fitted.thickness_quantiles == MWP_SHELLS.thickness_quantiles
    assert fitted.axis_ratio_quantiles == MWP_SHELLS.axis_ratio_quantiles
