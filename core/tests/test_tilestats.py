"""Tile statistics on arrays with known answers."""

from __future__ import annotations

import math

import numpy as np

from nightshift.core.tiles import decode_tile, make_tile
from nightshift.core.tilestats import TileStatisticsModel, band_statistics
from nightshift.v1 import tile_pb2


def test_gaussian_noise_is_measured_as_its_sigma() -> None:
    band = np.random.default_rng(0).normal(10.0, 3.0, size=(400, 400))
    background, noise, missing = band_statistics(band)
    assert abs(background - 10.0) < 0.03 and abs(noise - 3.0) < 0.03 and missing == 0.0


def test_constant_band_with_missing_pixels() -> None:
    band = np.full((4, 4), 2.0)
    band[0] = np.nan
    assert band_statistics(band) == (2.0, 0.0, 0.25)


def test_empty_and_fully_missing_bands() -> None:
    background, noise, missing = band_statistics(np.full((3, 3), np.nan))
    assert math.isnan(background) and math.isnan(noise) and missing == 1.0
    assert band_statistics(np.zeros((0, 0)))[2] == 1.0


def test_model_reports_three_quantities_per_band_with_units() -> None:
    model = TileStatisticsModel(bands=("g", "r"))
    model.load()
    pixels = np.stack([np.full((8, 8), 1.0), np.full((8, 8), 5.0)]).astype(np.float32)
    tile = make_tile(pixels, bands=[tile_pb2.Band(name="g", unit="adu"), tile_pb2.Band(name="r", unit="adu")],
                     survey="des", field="f")
    (result,) = model.infer([decode_tile(tile, spec=model.spec)], model.serving_model())
    values = {m.quantity: (m.value, m.unit) for m in result.measurements}
    assert values == {
        "g.background": (1.0, "adu"), "g.noise": (0.0, "adu"), "g.missing_fraction": (0.0, ""),
        "r.background": (5.0, "adu"), "r.noise": (0.0, "adu"), "r.missing_fraction": (0.0, ""),
    }
