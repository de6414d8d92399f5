"""Whole-map inference: blending, instances with known geometry, sky positions and outlines, output
files read by astropy, pandas and astropy regions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from regions import PolygonPixelRegion, PolygonSkyRegion, Regions

from nightshift.filaments.config import preset
from nightshift.filaments.infer import (CATALOG_COLUMNS, contour_polygon, find_filaments, predict_probability,
                                        predict_probability_one_pass, skeleton_length_px, sky_filaments, write_outputs)
from nightshift.filaments.model import build_unet


class _Identity(torch.nn.Module):
    """A 'network' whose logit is the input itself, so blending can be checked exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0 + 2.0  # sigmoid(2) everywhere


def test_blended_probability_of_a_constant_network_is_constant_and_nan_is_zero() -> None:
    image = np.full((100, 150), 1e22, np.float32)
    image[10, 20] = np.nan
    probability = predict_probability(_Identity(), image, preset("tiny"))
    assert probability.shape == (100, 150)
    expected = 1 / (1 + np.exp(-2.0))
    assert probability[10, 20] == 0
    np.testing.assert_allclose(np.delete(probability.ravel(), 10 * 150 + 20), expected, rtol=1e-5)


def test_small_and_batched_maps() -> None:
    network = build_unet(levels=2, base_channels=2).eval()
    config = preset("tiny")
    assert predict_probability(network, np.ones((20, 30), np.float32), config).shape == (20, 30)
    batch = np.random.default_rng(0).uniform(1e21, 1e22, (3, 64, 80)).astype(np.float32)
    both = predict_probability(network, batch, config)
    np.testing.assert_allclose(both[1], predict_probability(network, batch[1], config), atol=1e-6)
    assert predict_probability(network, np.zeros((0, 64, 64), np.float32), config).shape == (0, 64, 64)


def test_one_window_is_the_one_pass_inference() -> None:
    config = preset("tiny")
    torch.manual_seed(0)
    network = build_unet(levels=config.levels, base_channels=config.base_channels).eval()
    rng = np.random.default_rng(1)
    window = rng.uniform(1e21, 1e22, (config.patch_px, config.patch_px)).astype(np.float32)
    window[3, 5] = np.nan
    np.testing.assert_allclose(predict_probability(network, window, config),
                               predict_probability_one_pass(network, window, config), atol=1e-6)
    assert predict_probability_one_pass(network, window[:50, :40], config).shape == (50, 40)


def test_skeleton_length_of_known_shapes() -> None:
    line = np.zeros((20, 40), bool)
    line[9:12, 5:35] = True  # a 3-pixel-thick horizontal bar: skeleton about 28 pixels long
    assert 24 <= skeleton_length_px(line) <= 30
    diagonal = np.eye(10, dtype=bool)
    assert skeleton_length_px(diagonal) == pytest.approx(9 * np.sqrt(2))
    assert skeleton_length_px(np.zeros((5, 5), bool)) == 0


def test_find_filaments_measures_each_component() -> None:
    probability = np.zeros((50, 60), np.float32)
    probability[10:13, 5:45] = 0.9  # 120 pixels
    probability[30:33, 30:36] = 0.7  # 18 pixels
    probability[45, 1] = 0.95  # one pixel: below min_area
    column_density = np.full(probability.shape, 2e22, np.float32)
    column_density[11, 5] = np.nan
    roi, filaments = find_filaments(probability, column_density, threshold=0.5, min_area_px=10)
    assert [f.area_px for f in filaments] == [120, 18]
    assert not roi[45, 1] and roi.sum() == 138
    big = filaments[0]
    assert big.box == (5, 10, 45, 13)
    assert big.x == pytest.approx(24.5) and big.y == pytest.approx(11.0)
    assert big.mean_column_density_cm2 == pytest.approx(2e22)
    assert big.mean_probability == pytest.approx(0.9)
    assert big.properties() == {"area_px2": 120.0, "skeleton_length_px": big.skeleton_length_px, "mean_nh2_per_cm2": big.mean_column_density_cm2}
    xs, ys = zip(*big.outline)  # along the pixels' outer edges, half a pixel outside their centres
    assert (min(xs), max(xs), min(ys), max(ys)) == (4.5, 44.5, 9.5, 12.5)
    assert _polygon_area(big.outline) == pytest.approx(120, rel=0.01)
    assert find_filaments(np.zeros((8, 8)), np.ones((8, 8)), threshold=0.5, min_area_px=1)[1] == []


def _polygon_area(vertices) -> float:
    x, y = np.asarray(vertices, float).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_contour_polygon_follows_the_pixel_edges_with_corners_cut_by_a_quarter_pixel() -> None:
    region = np.zeros((6, 8), bool)
    region[0:3, 2:7] = True  # touches the top edge: still closed
    assert contour_polygon(region) == ((6.25, 2.5), (1.75, 2.5), (1.5, 2.25), (1.5, -0.25), (1.75, -0.5), (6.25, -0.5),
                                       (6.5, -0.25), (6.5, 2.25))
    cross = np.eye(60, dtype=bool)[:, ::-1] | (np.arange(60)[:, None] == 30)
    assert _polygon_area(contour_polygon(cross)) == pytest.approx(cross.sum(), rel=0.05)
    assert contour_polygon(np.zeros((4, 4), bool)) == ()


def _galactic_header(shape: tuple[int, int]) -> str:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    wcs.wcs.crval = [350.0, 0.0]
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    wcs.wcs.cdelt = [-11.5 / 3600, 11.5 / 3600]
    return wcs.to_header().tostring()


def test_sky_positions_follow_the_wcs() -> None:
    probability = np.zeros((40, 40), np.float32)
    probability[19:21, 10:30] = 1
    _, filaments = find_filaments(probability, np.ones_like(probability), threshold=0.5, min_area_px=1)
    sky = sky_filaments(filaments, _galactic_header((40, 40)))
    assert sky.frame == "galactic"
    assert sky.lon_deg[0] == pytest.approx(350.0, abs=1e-6) and sky.lat_deg[0] == pytest.approx(0.0, abs=1e-6)
    (outline,) = sky.outlines_deg  # 20 x 2 pixels of 11.5": a polygon 230" x 23" around the centre
    assert np.ptp(outline[:, 0]) * 3600 == pytest.approx(20 * 11.5, rel=1e-3) and np.ptp(outline[:, 1]) * 3600 == pytest.approx(2 * 11.5)
    assert sky_filaments(filaments, "") is None


def test_outputs_are_written_with_units(tmp_path) -> None:
    probability = np.zeros((40, 40), np.float32)
    probability[19:22, 10:30] = 0.8
    roi, filaments = find_filaments(probability, np.full((40, 40), 3e22), threshold=0.5, min_area_px=1)
    meta = {"MODEL": "filaments-unet5", "THRESH": 0.5, "INPUT": "field.fits"}
    paths = write_outputs(tmp_path / "field", probability, roi, filaments, _galactic_header((40, 40)), meta=meta)
    assert [p.name for p in paths] == ["field_probability.fits", "field_roi.fits", "field_filaments.fits", "field_filaments.ecsv",
                                       "field_filaments.csv", "field_filaments_galactic.reg", "field_filaments_icrs.reg"]
    for catalogue in (Table.read(paths[2]), Table.read(paths[3])):
        assert catalogue.colnames == CATALOG_COLUMNS and len(catalogue) == 1
        assert catalogue["mean_nh2_per_cm2"].unit == u.cm**-2 and catalogue["skeleton_length_px"].unit == u.pix
        assert catalogue["glon"][0] == pytest.approx(350.0, abs=1e-6) and catalogue["ra"].unit == u.deg
        assert (catalogue.meta["MODEL"], catalogue.meta["THRESH"], catalogue.meta["INPUT"], catalogue.meta["FRAME"]) == \
            ("filaments-unet5", 0.5, "field.fits", "galactic")
    assert list(pd.read_csv(paths[4]).columns) == CATALOG_COLUMNS
    for path, frame in zip(paths[5:], ("galactic", "icrs")):
        (polygon,) = Regions.read(path, format="ds9")
        assert isinstance(polygon, PolygonSkyRegion) and polygon.vertices.frame.name == frame and len(polygon.vertices) == 8
    for path in paths[:2]:
        header = fits.getheader(path)
        assert header["CTYPE1"] == "GLON-CAR" and header["MODEL"] == "filaments-unet5" and header["THRESH"] == 0.5
        assert u.Unit(header["BUNIT"]) == u.dimensionless_unscaled
    assert fits.getdata(paths[0]).dtype.kind == "f"
    with pytest.warns(UserWarning, match="field.fits: the map has no celestial WCS"):
        nowcs = write_outputs(tmp_path / "nowcs", probability, roi, filaments, meta=meta)
    assert nowcs[-1].name == "nowcs_filaments_image.reg" and np.isnan(Table.read(nowcs[3])["glon"][0])
    (polygon,) = Regions.read(nowcs[-1], format="ds9")
    assert isinstance(polygon, PolygonPixelRegion) and (min(polygon.vertices.x), max(polygon.vertices.x)) == (9.5, 29.5)


def test_output_maps_carry_the_input_header_but_not_its_data_keywords(tmp_path) -> None:
    header = fits.Header.fromstring(_galactic_header((40, 40)))
    header["OBJECT"], header["BUNIT"], header["BSCALE"], header["BZERO"] = "G350.0+0.0", "cm-2", 2.0, 1e21
    probability = np.full((40, 40), 0.25, np.float32)
    write_outputs(tmp_path / "field", probability, probability > 0.5, [], header.tostring(), meta={"MODEL": "filaments-unet5"})
    for name in ("field_probability.fits", "field_roi.fits"):
        written = fits.getheader(tmp_path / name)
        assert written["OBJECT"] == "G350.0+0.0" and written["CRVAL1"] == 350.0
        assert written["BUNIT"] == "" and not {"BSCALE", "BZERO"} & set(written) and "nightshift-filaments" in str(written["HISTORY"])
    np.testing.assert_array_equal(fits.getdata(tmp_path / "field_probability.fits"), probability)
    assert WCS(fits.getheader(tmp_path / "field_probability.fits")).has_celestial
