"""Batched inference: test-time views x ensemble members -> one inclination, its uncertainty and a
reject probability per galaxy; sky positions from each tile's WCS; duplicates merged; catalogues.

The value is the median over every (view, member) prediction, as IncliNET does; the uncertainty is
their standard deviation times a scale fitted on the validation set at training time (so that the
one-sigma interval holds 68 % of the validation errors); the reject probability is the mean of the
classifiers' P(reject or face-on) over views and members.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nightshift.core.catalog import Column, write_catalog
from nightshift.core.registry import smoke_input, weights_smoke
from nightshift.inclination.config import InclinationConfig
from nightshift.inclination.model import MAX_INCLINATION_DEG, MIN_INCLINATION_DEG, load_ensemble, unscale_inclination
from nightshift.inclination.preprocess import stretch, test_time_copies

__all__ = [
    "InclinationEstimates", "Predictor", "CATALOG_COLUMNS", "tile_centre_sky", "merge_duplicates", "write_measurements",
    "smoke_check",
]

MIN_SPREAD_DEG = 0.1  # floor of the spread: identical views still leave a model error

CATALOG_COLUMNS = [
    Column("name", "", "tile or file the galaxy was measured in"),
    Column("glon", "deg", "Galactic longitude of the tile centre"),
    Column("glat", "deg", "Galactic latitude of the tile centre"),
    Column("ra", "deg", "right ascension of the tile centre (ICRS)"),
    Column("dec", "deg", "declination of the tile centre (ICRS)"),
    Column("inclination", "deg", "inclination, 90 = edge-on (median over views and ensemble)"),
    Column("inclination_err", "deg", "one-sigma uncertainty from the spread over views and ensemble"),
    Column("reject_probability", "", "probability that the galaxy is not measurable (anomalous or face-on)"),
    Column("n_tiles", "", "overlapping tiles merged into this row"),
]


@dataclasses.dataclass(frozen=True)
class InclinationEstimates:
    """Per-galaxy results, each of shape (n,): degrees (90 = edge-on) and probabilities."""

    inclination_deg: np.ndarray
    uncertainty_deg: np.ndarray
    spread_deg: np.ndarray
    reject_probability: np.ndarray

    def __len__(self) -> int:
        return len(self.inclination_deg)


class Predictor:
    """A loaded ensemble with its configuration, run on flux tiles.

    Parameters
    ----------
    ensemble : keras.Model
        Output of :func:`~nightshift.inclination.model.build_ensemble` (or loaded from its file).
    config : InclinationConfig
        The configuration it was trained with (image size, test-time copies).
    uncertainty_scale : float
        Factor from the spread of predictions to a one-sigma uncertainty (fitted at training).
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, ensemble: keras.Model, *, config: InclinationConfig, uncertainty_scale: float = 1.0, batch_size: int = 256) -> None:
        if uncertainty_scale <= 0:
            raise ValueError(f"uncertainty_scale = {uncertainty_scale}: expected a positive factor")
        self.ensemble = ensemble
        self.config = config
        self.uncertainty_scale = float(uncertainty_scale)
        self.batch_size = batch_size

    @classmethod
    def from_card(cls, weights: str | Path, *, config: Mapping[str, Any], metrics: Mapping[str, float]) -> Predictor:
        """Load weights with the config and metrics recorded beside them (card or registry metadata)."""
        return cls(load_ensemble(weights), config=InclinationConfig.from_dict(config),
                   uncertainty_scale=float(metrics.get("uncertainty_scale", 1.0)))

    @classmethod
    def from_files(cls, weights: str | Path, card: str | Path) -> Predictor:
        """Load a weights file and its JSON card (``{"name", "metrics", "config", "data_seed"}``)."""
        info = json.loads(Path(card).read_text())
        return cls.from_card(weights, config=info["config"], metrics=info["metrics"])

    def predict_views(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw predictions of every view and member.

        Parameters
        ----------
        pixels : ndarray, shape (n, 3, size, size)
            Flux tiles in bands g, r, i; NaN = missing.

        Returns
        -------
        inclination_deg : ndarray, shape (n, views x members)
        reject_probability : ndarray, shape (n, views x members)
        """
        size = self.config.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(f"pixels of shape {pixels.shape}: expected (n, 3, {size}, {size})")
        n, copies = len(pixels), self.config.augmented_copies
        if n == 0:
            return np.zeros((0, 0)), np.zeros((0, 0))
        views = test_time_copies(stretch(pixels), copies).reshape(copies * n, size, size, 3)
        outputs = self.ensemble.predict(views, batch_size=self.batch_size, verbose=0)
        scaled = np.asarray(outputs["inclination_scaled"]).reshape(copies, n, -1)
        reject = np.asarray(outputs["class_probabilities"]).reshape(copies, n, -1, 2)[..., 1]
        as_rows = lambda a: a.transpose(1, 0, 2).reshape(n, -1)  # noqa: E731 - (view, galaxy, member) -> (galaxy, view x member)
        return as_rows(unscale_inclination(scaled)), as_rows(reject.astype(np.float64))

    def measure(self, pixels: np.ndarray) -> InclinationEstimates:
        """Inclination (median), uncertainty and reject probability of each tile (n, 3, size, size)."""
        inclination, reject = self.predict_views(np.asarray(pixels, dtype=np.float32))
        if len(inclination) == 0:
            empty = np.zeros(0)
            return InclinationEstimates(empty, empty, empty, empty)
        spread = np.maximum(inclination.std(axis=1), MIN_SPREAD_DEG)
        return InclinationEstimates(
            inclination_deg=np.median(inclination, axis=1),
            uncertainty_deg=self.uncertainty_scale * spread,
            spread_deg=spread,
            reject_probability=reject.mean(axis=1),
        )


def tile_centre_sky(wcs_header: str, size: int) -> tuple[float, float] | None:
    """(RA, Dec) in degrees of a tile's central pixel from its FITS WCS header; None without a WCS."""
    if not wcs_header.strip():
        return None
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(fits.Header.fromstring(wcs_header), naxis=2)
    if not wcs.has_celestial:
        return None
    sky = wcs.celestial.pixel_to_world((size - 1) / 2, (size - 1) / 2).icrs
    return float(sky.ra.deg), float(sky.dec.deg)


def merge_duplicates(rows: Sequence[Mapping[str, Any]], *, radius_arcsec: float) -> list[dict[str, Any]]:
    """Merge measurements of the same galaxy from overlapping tiles (centres within ``radius_arcsec``).

    A group's inclination is the inverse-variance weighted mean, its uncertainty the weighted-mean
    uncertainty, its reject probability the mean, its name and position the first row's, and
    ``n_tiles`` counts the tiles merged. Rows need ``ra``, ``dec`` (deg), ``inclination``,
    ``inclination_err`` (deg) and ``reject_probability``. No rows give no rows.
    """
    if radius_arcsec < 0:
        raise ValueError(f"radius_arcsec = {radius_arcsec}: expected >= 0")
    if not rows:
        return []
    ra, dec = np.radians([r["ra"] for r in rows]), np.radians([r["dec"] for r in rows])
    unit = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    separation_arcsec = np.degrees(np.arccos(np.clip(unit @ unit.T, -1, 1))) * 3600
    group = list(range(len(rows)))
    for a, b in zip(*np.nonzero(np.triu(separation_arcsec <= radius_arcsec, k=1))):
        root_a, root_b = _root(group, a), _root(group, b)
        group[max(root_a, root_b)] = min(root_a, root_b)
    merged = []
    for root in sorted({_root(group, k) for k in range(len(rows))}):
        members = [rows[k] for k in range(len(rows)) if _root(group, k) == root]
        weights = np.array([1 / max(m["inclination_err"], 1e-6) ** 2 for m in members])
        row = dict(members[0])
        row["inclination"] = float(np.average([m["inclination"] for m in members], weights=weights))
        row["inclination_err"] = float(1 / np.sqrt(weights.mean()))
        row["reject_probability"] = float(np.mean([m["reject_probability"] for m in members]))
        row["n_tiles"] = len(members)
        merged.append(row)
    return merged


def _root(group: list[int], k: int) -> int:
    while group[k] != k:
        k = group[k]
    return k


def write_measurements(rows: Sequence[Mapping[str, Any]], stem: str | Path, *, meta: Mapping[str, Any]) -> list[Path]:
    """Write a catalogue of merged measurements (the night's column names and units): FITS, ECSV, CSV and
    DS9 regions in Galactic and ICRS, with the provenance ``meta``. ``glon``/``glat`` come from ``ra``/``dec``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    galactic = SkyCoord([r["ra"] for r in rows] * u.deg, [r["dec"] for r in rows] * u.deg, frame="icrs").galactic
    rows = [{**r, "glon": float(lon), "glat": float(lat)} for r, lon, lat in zip(rows, galactic.l.deg, galactic.b.deg)]
    return write_catalog(rows, CATALOG_COLUMNS, stem, frame="icrs", lon="ra", lat="dec", label="name",
                         meta={**meta, "QUANTITY": "inclination"})


def _smoke_outputs(weights: Path, config: dict[str, Any]) -> tuple[np.ndarray, ...]:
    # Every view's and member's raw inclination and reject probability (before the median would hide a NaN), and
    # the pre-activations they imply: a diverged network can saturate tanh and softmax to finite ends (90 deg,
    # p = 0), whose pre-activations are infinite. A healthy one reaches neither: tanh is exactly 1 in float32
    # only beyond 9, a softmax probability exactly 0 only for logits ~90 apart.
    predictor = Predictor.from_card(weights, config=config, metrics={})
    size = predictor.config.image_size
    inclination, reject = predictor.predict_views(smoke_input(1, 3, size, size))
    scaled = 2 * (inclination - MIN_INCLINATION_DEG) / (MAX_INCLINATION_DEG - MIN_INCLINATION_DEG) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return inclination, reject, np.arctanh(scaled), np.log(reject)


smoke_check = weights_smoke(".keras", _smoke_outputs)
"""The registry's check of an inclination version before it becomes ``LATEST``: it loads and gives finite outputs."""
