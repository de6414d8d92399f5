"""Tile statistics: per-band background, noise and missing-pixel fraction of each tile.

A classical, parameter-free data-quality task served through the same runtime as the science
services. It is the runtime's reference :class:`~nightshift.core.model.TaskModel` (the tests and the
foundation demo serve it) and a first look at a night's data: a band whose noise jumps or whose
tiles are mostly NaN shows up before any science model runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nightshift.core.model import TaskModel
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2

__all__ = ["TileStatisticsModel", "band_statistics"]

_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4): MAD of a Gaussian times this is its sigma


def band_statistics(band: np.ndarray) -> tuple[float, float, float]:
    """Background (median), noise (MAD scaled to a Gaussian sigma) and missing fraction of one band.

    NaN pixels are missing; a band with no finite pixel has NaN background and noise.
    """
    finite = band[np.isfinite(band)]
    missing = 1.0 - finite.size / band.size if band.size else 1.0
    if finite.size == 0:
        return float("nan"), float("nan"), missing
    median = float(np.median(finite))
    return median, float(_MAD_TO_SIGMA * np.median(np.abs(finite - median))), missing


class TileStatisticsModel(TaskModel):
    """Measure background, noise and missing fraction in every band of every tile.

    Parameters
    ----------
    bands : tuple of str
        Band names accepted, in order.
    """

    task = "tilestats"
    summary = "Per-band background (median), noise (MAD sigma) and missing-pixel fraction of each tile"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, bands: tuple[str, ...] = ("image",)) -> None:
        self.spec = TileSpec(bands=bands)
        self._model = results_pb2.ModelRef(name="tilestats-robust", version="1")

    def load(self) -> None:
        """Nothing to load: the statistics have no parameters."""

    def serving_model(self) -> results_pb2.ModelRef:
        return self._model

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        results = []
        for tile in tiles:
            result = results_pb2.TileResult(tile_id=tile.tile_id)
            for band, pixels in zip(tile.message.bands, tile.pixels):
                background, noise, missing = band_statistics(pixels.astype(np.float64))
                for quantity, value, unit in (
                    ("background", background, band.unit),
                    ("noise", noise, band.unit),
                    ("missing_fraction", missing, ""),
                ):
                    result.measurements.add(
                        tile_id=tile.tile_id, model=model, quantity=f"{band.name}.{quantity}", value=value, unit=unit
                    )
            results.append(result)
        return results
