"""The inclination service's night kit: a simulated batch of galaxy images for the demo night, and its score.

``simulate_night`` writes what a survey would deliver for a batch of galaxies: the simulator's cut-outs
(the same distribution as the evaluation set: accepted at 45..90 deg, face-on and rejected galaxies)
laid edge to edge on a grid, one mosaic field per band (g, r, i) in calibrated fluxes (nanomaggies,
float32) with an ICRS TAN WCS. The survey's tiling cuts windows of exactly one cut-out (the model's
``image_size``, no overlap), so every ingested tile is one galaxy's cut-out, bit for bit, and the
service stretches it exactly as it stretches its own simulated galaxies. The truth table holds each
galaxy's sky position (its cut-out's centre), true inclination and label, and the axis-ratio
baseline's estimates on the same images.

``score_night`` matches the night's measurement catalogue (one row per tile) to the truth by sky
position and scores it as ``evaluate`` does: RMS and MAE of the inclination over accepted galaxies,
the reject ROC AUC, and the coverage of the one-sigma uncertainty, with the baseline beside it.

Each galaxy keeps the pixel scale the simulator drew for it (its field is twice its D25); the mosaic's
WCS has one nominal scale, the simulator's typical one, so positions on the mosaic are nominal too.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.inclination.baseline import baseline_estimates
from nightshift.inclination.config import InclinationConfig
from nightshift.inclination.evaluate import calibration, mae, rms, roc_auc
from nightshift.inclination.simulate import BANDS, D25_ARCSEC, FIELD_PER_D25, WAVELENGTH_UM, simulate_galaxies, stack_truth

__all__ = ["SURVEY", "FIELD", "UNIT", "DEFAULT_GALAXIES", "FIELD_CENTRE_DEG", "tan_wcs", "night_pixel_scale_arcsec",
           "simulate_night", "score_night"]

SURVEY = "sdss-galaxies"
FIELD = "mosaic-000"
UNIT = "nanomaggy"
DEFAULT_GALAXIES = 400          # a 20 x 20 mosaic: about 5 s to simulate, 10 s of bare-model CPU time
FIELD_CENTRE_DEG = (185.0, 15.0)  # ICRS (RA, Dec) of the mosaic's centre, in the SDSS footprint
SPLIT = "test"                  # the seed's held-out stream (training draws the train and validation streams)
TRUTH_FILE = "truth/galaxies.ecsv"
_CARD = Path(__file__).parent / "weights" / "inclinet.json"  # the shipped model's card (servicer.BUNDLED_CARD)


def tan_wcs(width: int, height: int, ra_deg: float, dec_deg: float, pixel_scale_arcsec: float):
    """A TAN WCS (ICRS) centred on an image of ``width`` x ``height`` pixels, north up and east left."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.cdelt = [-pixel_scale_arcsec / 3600, pixel_scale_arcsec / 3600]
    return wcs


def night_pixel_scale_arcsec(image_size: int) -> float:
    """The mosaic's nominal pixel scale: a cut-out of the geometric-mean D25 over ``image_size`` pixels."""
    return FIELD_PER_D25 * math.sqrt(D25_ARCSEC[0] * D25_ARCSEC[1]) / image_size


def _served_config() -> InclinationConfig:
    return InclinationConfig.from_dict(json.loads(_CARD.read_text())["config"])


def simulate_night(out: Path, seed: int = 0, *, galaxies: int = DEFAULT_GALAXIES) -> dict[str, Any]:
    """Write a night of simulated galaxy cut-outs as one g, r, i mosaic field, with its truth.

    Parameters
    ----------
    out : Path
        Directory of the kit: ``night.json``, ``raw/<field>/<band>.fits``, ``truth/galaxies.ecsv``.
    seed : int
        Seed of the simulator's held-out (``test``) stream.
    galaxies : int
        At least this many galaxies: the count is rounded up to fill a grid of ``ceil(sqrt(n))``
        columns with no empty cell.

    Returns
    -------
    dict
        The summary printed by ``simulate-night``: survey, fields, files, tiles, truth_objects, seconds.
    """
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table

    if galaxies < 1:
        raise ValueError(f"galaxies = {galaxies}: expected at least 1")
    started = time.perf_counter()
    config = _served_config()
    size = config.image_size
    columns = math.ceil(math.sqrt(galaxies))
    rows = math.ceil(galaxies / columns)
    n = rows * columns
    sims = simulate_galaxies(n, size=size, seed=seed, split=SPLIT, face_on_fraction=config.face_on_fraction,
                             reject_fraction=config.reject_fraction)
    mosaic = np.empty((len(BANDS), rows * size, columns * size), np.float32)
    x0, y0 = (np.arange(n) % columns) * size, (np.arange(n) // columns) * size
    for image, x, y in zip(sims.images, x0, y0):
        mosaic[:, y : y + size, x : x + size] = image
    scale = night_pixel_scale_arcsec(size)
    wcs = tan_wcs(columns * size, rows * size, *FIELD_CENTRE_DEG, scale)

    out = Path(out)
    field_dir = out / "raw" / FIELD
    field_dir.mkdir(parents=True, exist_ok=True)
    header = wcs.to_header()
    header["BUNIT"] = UNIT
    for band, plane in zip(BANDS, mosaic):
        header["FILTER"] = band
        fits.PrimaryHDU(plane, header=header).writeto(field_dir / f"{band}.fits", overwrite=True)

    # a cut-out's centre as the ingest computes a window's centre: 0-based pixel x0 + (size - 1) / 2
    centres = SkyCoord(wcs.pixel_to_world(x0 + (size - 1) / 2, y0 + (size - 1) / 2)).icrs
    baseline = baseline_estimates(sims.images)
    truth = Table({"galaxy": np.arange(n), "ra": centres.ra.deg, "dec": centres.dec.deg, "x_px": x0, "y_px": y0,
                   **stack_truth(sims.parameters),
                   "baseline_inclination_deg": baseline.inclination_deg, "baseline_axis_ratio": baseline.axis_ratio,
                   "baseline_reject_score": baseline.reject_score})
    truth["ra"].unit = truth["dec"].unit = "deg"
    truth.meta.update({"survey": SURVEY, "field": FIELD, "seed": seed, "split": SPLIT, "image_size": size,
                       "mosaic_pixel_scale_arcsec": scale, "match_radius_arcsec": size * scale / 4})
    (out / TRUTH_FILE).parent.mkdir(parents=True, exist_ok=True)
    truth.write(out / TRUTH_FILE, format="ascii.ecsv", overwrite=True)

    night = {
        "survey": {
            "name": SURVEY,
            "bands": [{"name": b, "wavelength_um": WAVELENGTH_UM[b], "unit": UNIT} for b in BANDS],
            "tiling": {"kind": "fits", "window_px": [size], "overlap_fraction": 0.0, "output_px": 0},
        },
        "service": {"duplicate_radius_arcsec": 0.0, "crossmatch_radius_arcsec": 0.0},
    }
    (out / "night.json").write_text(json.dumps(night, indent=2) + "\n")
    return {"survey": SURVEY, "fields": 1, "files": len(BANDS), "tiles": n, "truth_objects": n,
            "labels": {label: int((sims.labels == label).sum()) for label in sorted(set(sims.labels))},
            "seconds": round(time.perf_counter() - started, 2)}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def score_night(kit: Path, catalogue: Path) -> dict[str, Any]:
    """Score the night's inclination catalogue against the kit's truth.

    Catalogue rows (tile centres, ``ra``/``dec``) are matched to the truth galaxies (cut-out centres)
    within a quarter of a cut-out; each galaxy takes its nearest row.

    Parameters
    ----------
    kit : Path
        Directory written by :func:`simulate_night`.
    catalogue : Path
        The night's measurement catalogue (FITS table, one row per tile, with ``ra``, ``dec``,
        ``inclination``, ``inclination_err`` (deg) and ``reject_probability``; no ``inclination``
        column when nothing was measured).

    Returns
    -------
    dict
        ``truth`` (galaxies in the kit), ``rows`` (inclination rows), ``galaxies`` (truth galaxies
        matched), ``unmatched_rows``, ``accepted`` (matched accepted galaxies); on those, ``rms_deg``,
        ``mae_deg``, ``coverage_1sigma``, ``coverage_2sigma`` and the baseline's ``baseline_rms_deg``,
        ``baseline_mae_deg``; over all matched galaxies ``reject_auc`` and ``baseline_reject_auc``
        (None where undefined).
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    truth = Table.read(Path(kit) / TRUTH_FILE, format="ascii.ecsv")
    table = Table.read(catalogue)
    measured = np.ma.filled(np.asarray(table["inclination"], float), np.nan) if "inclination" in table.colnames else np.full(len(table), np.nan)
    table = table[np.isfinite(measured)]
    radius = float(truth.meta["match_radius_arcsec"]) * u.arcsec
    truth_sky = SkyCoord(np.asarray(truth["ra"], float), np.asarray(truth["dec"], float), unit="deg")
    row_of = np.full(len(truth), -1)
    unmatched_rows = len(table)
    if len(table):
        rows_sky = SkyCoord(np.asarray(table["ra"], float), np.asarray(table["dec"], float), unit="deg")
        nearest, separation, _ = truth_sky.match_to_catalog_sky(rows_sky)
        row_of = np.where(separation <= radius, nearest, -1)
        _, row_separation, _ = rows_sky.match_to_catalog_sky(truth_sky)
        unmatched_rows = int((row_separation > radius).sum())
    matched = row_of >= 0
    rows = table[row_of[matched]] if matched.any() else table[:0]
    found = truth[matched]
    value, sigma = np.asarray(rows["inclination"], float), np.asarray(rows["inclination_err"], float)
    reject = np.asarray(rows["reject_probability"], float)
    true_deg = np.asarray(found["inclination_deg"], float)
    accepted = (np.asarray(found["label"]).astype(str) == "accept") & (true_deg >= 45) & (true_deg <= 90)
    residual = value[accepted] - true_deg[accepted]
    baseline_residual = np.asarray(found["baseline_inclination_deg"], float)[accepted] - true_deg[accepted]
    cover = calibration(residual, sigma[accepted])
    figures = {
        "truth": len(truth), "rows": len(table), "galaxies": int(matched.sum()), "unmatched_rows": unmatched_rows,
        "accepted": int(accepted.sum()),
        "rms_deg": rms(residual), "mae_deg": mae(residual),
        "reject_auc": roc_auc(reject, ~accepted),
        "coverage_1sigma": cover["coverage_1sigma"], "coverage_2sigma": cover["coverage_2sigma"],
        "baseline_rms_deg": rms(baseline_residual), "baseline_mae_deg": mae(baseline_residual),
        "baseline_reject_auc": roc_auc(np.asarray(found["baseline_reject_score"], float), ~accepted),
    }
    return {name: _finite(v) if isinstance(v, float) else v for name, v in figures.items()}
