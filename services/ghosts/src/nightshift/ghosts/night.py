"""The ghosts service's night kit: a small simulated DES night as the survey delivers it, and its score.

The demo night (``nightshift night``) runs every science service on a small simulated night through
their command lines. :func:`simulate_night` draws DES exposures from the service's simulator (the
same distribution as its held-out test set) and writes each as the survey delivers a calibrated
image: one FITS file per band (``R``, ``G``, ``B``, the three equal channels of the grey focal-plane
image), flux in electrons with the sky included, NaN off the live CCDs, and an ICRS TAN WCS at a
DES pointing (Dec -60 to -40 deg) with DECam's 0.263 arcsec pixels binned by 4096/58 (18.6 arcsec
per pixel, the 400 x 400 whole focal plane). The ingest cuts each exposure into exactly one 400 x 400
tile, which the service puts on its display scale (:func:`nightshift.ghosts.preprocess.display_pixels`).
The truth (each artefact's label, box, mask and sky position) goes into ``truth/truth.json``.

:func:`score_night` scores the night's merged catalogue: a row is a hit when its sky position lies
on a true artefact of the same label (inside its mask, or within ``match_distance_arcsec`` of it),
each artefact matched once, best score first; completeness and purity overall and per label.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.ghosts.artefacts import decode_rle, uncompressed_rle
from nightshift.ghosts.config import BANDS, CLASSES, TILE_SIZE
from nightshift.ghosts.focalplane import CCD_WIDTH_PX
from nightshift.ghosts.infer import sky_position
from nightshift.ghosts.simulate import OPTICAL_AXIS_PX, simulate_exposure

__all__ = [
    "SURVEY", "UNIT", "PIXEL_SCALE_ARCSEC", "NIGHT_FIRST_INDEX", "DEFAULT_EXPOSURES", "MAX_EXPOSURES",
    "DUPLICATE_RADIUS_ARCSEC", "MATCH_DISTANCE_ARCSEC", "exposure_header", "simulate_night", "score_night",
]

SURVEY = "des"
UNIT = "electron"
"""Unit of the FITS images: mean electrons per DECam pixel in each binned pixel (the sky included)."""
BINNING = 4096 / CCD_WIDTH_PX
"""DECam pixels per pixel of the 400 x 400 focal-plane image: a 4096-pixel CCD side is 58 image pixels."""
PIXEL_SCALE_ARCSEC = 0.263 * BINNING
"""Pixel scale of the focal-plane image: DECam's 0.263 arcsec pixels binned (about 18.6 arcsec)."""
NIGHT_FIRST_INDEX = 5_000_000
"""Exposure indices of the night (disjoint from the training, validation, test and benchmark ranges)."""
DEFAULT_EXPOSURES = 12
MAX_EXPOSURES = 24
"""Most exposures a night holds: their fields are placed without overlap in the DES footprint."""
DUPLICATE_RADIUS_ARCSEC = 20.0
"""About one image pixel: two instances of one label closer than this are one (tiles do not overlap)."""
MATCH_DISTANCE_ARCSEC = 40.0
"""About two image pixels: how far outside a true artefact's mask a detection still hits it."""
_SKY_ELECTRONS = (1000.0, 5000.0)  # sky level range of a 90 s DES exposure, electrons per DECam pixel
_MIN_SEPARATION_DEG = 4.0  # fields 400 px * 18.6 arcsec = 2.1 deg wide never overlap at this distance


def exposure_header(ra_deg: float, dec_deg: float) -> dict[str, Any]:
    """FITS WCS keywords of an exposure pointed at (``ra_deg``, ``dec_deg``): ICRS TAN, the optical axis at the pointing.

    The image's first array axis is FITS y; north is +y and east is -x.
    """
    scale = PIXEL_SCALE_ARCSEC / 3600.0
    return {
        "WCSAXES": 2, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg", "RADESYS": "ICRS",
        "CRVAL1": ra_deg, "CRVAL2": dec_deg, "CRPIX1": OPTICAL_AXIS_PX[0] + 1.0, "CRPIX2": OPTICAL_AXIS_PX[1] + 1.0,
        "CD1_1": -scale, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale,
    }


def _pointings(rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    """``count`` DES-footprint pointings (RA -60..60 deg, Dec -60..-40 deg) at least 4 deg apart."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    chosen: list[tuple[float, float]] = []
    for _ in range(200 * count):
        if len(chosen) == count:
            break
        ra = float(rng.uniform(-60.0, 60.0)) % 360.0
        dec = float(np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-60.0)), np.sin(np.radians(-40.0))))))
        if chosen:
            others = SkyCoord([c[0] for c in chosen] * u.deg, [c[1] for c in chosen] * u.deg)
            if others.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg.min() < _MIN_SEPARATION_DEG:
                continue
        chosen.append((round(ra, 6), round(dec, 6)))
    if len(chosen) < count:
        raise ValueError(f"could not place {count} fields {_MIN_SEPARATION_DEG} deg apart in the DES footprint")
    return chosen


def _survey_config(exposures: int) -> dict[str, Any]:
    """The night's survey as the orchestration's ``SurveyConfig`` (JSON)."""
    return {
        "name": SURVEY,
        "bands": [{"name": band, "wavelength_um": 0.0, "unit": UNIT} for band in BANDS],
        "tiling": {"kind": "fits", "window_px": [TILE_SIZE], "overlap_fraction": 0.0, "output_px": 0},
    }


def simulate_night(out: Path, seed: int = 7, *, exposures: int = DEFAULT_EXPOSURES) -> dict[str, Any]:
    """Write a simulated DES night (raw FITS files, night.json, truth) into ``out``.

    Exposure ``i`` is the simulator's ``default_rng([seed, 5_000_000 + i])`` (normal sky model);
    its linear light (in sky-noise units) becomes electrons as ``sky + noise * light`` with a sky
    level of 1000-5000 electrons per DECam pixel and the noise of the binned pixel,
    ``sqrt(sky) / 70.6``; pixels off the live CCDs are NaN. Each exposure is ``raw/<field>/<band>.fits``
    for the bands R, G, B (equal).

    Parameters
    ----------
    out : Path
        Output directory (created; existing kit files are overwritten).
    seed : int
        Seed of the exposures, their pointings and sky levels.
    exposures : int
        Number of exposures (fields), 1 to :data:`MAX_EXPOSURES`.

    Returns
    -------
    dict
        Summary: survey, fields, files, tiles, truth objects (overall and by label), seconds.
    """
    from astropy.io import fits

    if not 1 <= exposures <= MAX_EXPOSURES:
        raise ValueError(f"exposures {exposures}: expected 1 to {MAX_EXPOSURES}")
    started = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng([seed, NIGHT_FIRST_INDEX])
    pointings = _pointings(rng, exposures)
    fields, files = [], 0
    for offset, (ra, dec) in enumerate(pointings):
        index = NIGHT_FIRST_INDEX + offset
        exposure = simulate_exposure(np.random.default_rng([seed, index]), keep_linear=True)
        assert exposure.linear is not None
        sky = float(rng.uniform(*_SKY_ELECTRONS))
        noise = float(np.sqrt(sky) / BINNING)
        electrons = (sky + noise * exposure.linear).astype(np.float32)  # NaN stays NaN off the CCDs
        field = f"D{500_000 + offset:08d}"
        header = fits.Header(exposure_header(ra, dec))
        header["BUNIT"] = (UNIT, "mean electrons per DECam pixel")
        header["TELESCOP"], header["INSTRUME"], header["OBSERVAT"] = "CTIO 4.0-m telescope", "DECam", "CTIO"
        header["EXPNUM"] = (500_000 + offset, "exposure number (simulated)")
        header["BINNING"] = (round(BINNING, 4), "DECam pixels per image pixel")
        header["SKYLEVEL"] = (round(sky, 3), "[electron] sky level")
        header["SKYSIGMA"] = (round(noise, 5), "[electron] sky noise per binned pixel")
        header["SIMINDEX"] = (index, f"simulated exposure (seed {seed})")
        directory = out / "raw" / field
        directory.mkdir(parents=True, exist_ok=True)
        for band in BANDS:
            band_header = header.copy()
            band_header["CHANNEL"] = (band, "channel of the grey image (all equal)")
            fits.PrimaryHDU(electrons, band_header).writeto(directory / f"{band}.fits", overwrite=True)
            files += 1
        wcs_text = fits.Header(exposure_header(ra, dec)).tostring()
        artefacts = []
        for artefact in exposure.artefacts:
            x0, y0, x1, y1 = artefact.box
            position = sky_position(wcs_text, (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2)
            assert position is not None
            artefacts.append({
                "label": artefact.label, "box": list(artefact.box), "ra": position[0], "dec": position[1],
                "radius_arcsec": 0.5 * max(x1 - x0, y1 - y0) * PIXEL_SCALE_ARCSEC, "area_px": artefact.area_px,
                "rle": {"size": list(artefact.mask.shape), "counts": uncompressed_rle(artefact.mask)},
            })
        fields.append({"field": field, "index": index, "ra": ra, "dec": dec, "sky_electrons": sky, "wcs": wcs_text,
                       "shape": list(electrons.shape), "artefacts": artefacts})
    truth = {"survey": SURVEY, "seed": seed, "pixel_scale_arcsec": PIXEL_SCALE_ARCSEC,
             "match_distance_arcsec": MATCH_DISTANCE_ARCSEC, "fields": fields}
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "truth" / "truth.json").write_text(json.dumps(truth) + "\n")
    night = {"survey": _survey_config(exposures),
             "service": {"duplicate_radius_arcsec": DUPLICATE_RADIUS_ARCSEC, "crossmatch_radius_arcsec": 0.0}}
    (out / "night.json").write_text(json.dumps(night, indent=2) + "\n")
    by_label = {label: sum(a["label"] == label for f in fields for a in f["artefacts"]) for label in CLASSES}
    return {"survey": SURVEY, "fields": len(fields), "files": files, "tiles": len(fields),
            "truth_objects": sum(by_label.values()), "truth_by_label": by_label,
            "seconds": round(time.perf_counter() - started, 2)}


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _figures(truth: int, detections: int, matched: int) -> dict[str, Any]:
    return {"truth": truth, "detections": detections, "matched": matched,
            "completeness": _ratio(matched, truth), "purity": _ratio(matched, detections)}


def score_night(kit: Path, catalogue: Path) -> dict[str, Any]:
    """Score the night's merged ghosts catalogue against the kit's truth.

    Each row's (ra, dec) is placed on the exposure whose image it falls in (through the exposure's
    WCS); it hits a true artefact of the same label when it lies inside the artefact's mask or
    within ``match_distance_arcsec`` of it. Rows are taken by decreasing score, each artefact is
    matched at most once (the nearest mask, then the nearest box centre); a second row on a matched
    artefact counts against purity. Every artefact of the night's exposures counts as truth.

    Parameters
    ----------
    kit : Path
        The directory :func:`simulate_night` wrote.
    catalogue : Path
        The night's ghosts catalogue (FITS table with at least ``ra``, ``dec``, ``label``, ``score``).

    Returns
    -------
    dict
        ``truth``, ``detections``, ``matched``, ``completeness``, ``purity`` (None when undefined),
        ``match_distance_arcsec``, ``fields`` and the same figures per label under ``by_label``.
    """
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS
    from scipy import ndimage

    truth = json.loads((Path(kit) / "truth" / "truth.json").read_text())
    scale, tolerance = float(truth["pixel_scale_arcsec"]), float(truth["match_distance_arcsec"])
    table = Table.read(catalogue, format="fits")
    rows = [(float(r["score"]), str(r["label"]).strip(), float(r["ra"]), float(r["dec"]), i)
            for i, r in enumerate(table)] if len(table) else []
    rows.sort(key=lambda r: (-r[0], r[4]))
    ra = np.array([r[2] for r in rows], float)
    dec = np.array([r[3] for r in rows], float)
    finite = np.isfinite(ra) & np.isfinite(dec)

    # per row: (field number, x, y) of the exposure it falls in, or None
    placed: list[tuple[int, float, float] | None] = [None] * len(rows)
    for number, field in enumerate(truth["fields"]):
        height, width = field["shape"]
        wcs = WCS(fits.Header.fromstring(field["wcs"]))
        x, y = wcs.all_world2pix(np.where(finite, ra, 0.0), np.where(finite, dec, 0.0), 0) if rows else ([], [])
        for i in np.flatnonzero(finite & (np.asarray(x) > -0.5) & (np.asarray(x) < width - 0.5)
                                & (np.asarray(y) > -0.5) & (np.asarray(y) < height - 0.5)):
            placed[i] = (number, float(x[i]), float(y[i]))

    distance_maps: dict[tuple[int, int], np.ndarray] = {}

    def distance_arcsec(number: int, k: int, x: float, y: float) -> float:
        """Distance of pixel (x, y) to artefact k of field ``number``'s mask, in arcsec."""
        if (number, k) not in distance_maps:
            artefact = truth["fields"][number]["artefacts"][k]
            mask = decode_rle(artefact["rle"]["counts"], *artefact["rle"]["size"])
            distance_maps[number, k] = ndimage.distance_transform_edt(~mask)
        return float(distance_maps[number, k][round(y), round(x)]) * scale

    matched: set[tuple[int, int]] = set()
    hits = {label: 0 for label in CLASSES}
    for (_, label, *_), where in zip(rows, placed):
        if where is None:
            continue
        number, x, y = where
        candidates = []
        for k, artefact in enumerate(truth["fields"][number]["artefacts"]):
            if artefact["label"] != label or (number, k) in matched:
                continue
            distance = distance_arcsec(number, k, x, y)
            if distance <= tolerance:
                x0, y0, x1, y1 = artefact["box"]
                candidates.append((distance, float(np.hypot(x - (x0 + x1 - 1) / 2, y - (y0 + y1 - 1) / 2)), k))
        if candidates:
            matched.add((number, min(candidates)[2]))
            hits[label] += 1
    truths = {label: sum(a["label"] == label for f in truth["fields"] for a in f["artefacts"]) for label in CLASSES}
    found = {label: sum(r[1] == label for r in rows) for label in CLASSES}
    return {
        **_figures(sum(truths.values()), len(rows), sum(hits.values())),
        "match_distance_arcsec": tolerance, "fields": len(truth["fields"]),
        "by_label": {label: _figures(truths[label], found[label], hits[label]) for label in CLASSES},
    }
