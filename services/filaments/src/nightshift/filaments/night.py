"""The filaments service's night kit: a small simulated Hi-GAL night for the demo, and its honest score.

The demo night (``nightshift night``) never imports a service: it runs ``nightshift-filaments
simulate-night`` to get raw files of the service's survey with known truth, processes them with the
real nightly flow (ingest, the filaments service over gRPC, merged catalogue), then runs
``nightshift-filaments score-night`` to score the night's catalogue against that truth.

The night: ``fields`` square N(H2) maps from :func:`nightshift.filaments.simulate.simulate_maps` (the
simulator's normal settings, as the evaluation set), each written as a FITS file with a Galactic
plate-carree WCS at the Hi-GAL N(H2) pixel scale (the real cut-out's, when its header has a celestial
WCS; else :data:`DEFAULT_PIXEL_SCALE_ARCSEC`), on the Galactic plane at l = 351, 353, ... deg (the seed's
strip l = 349-356 deg). The ingest cuts windows of the served model's ``tile_px`` with the overlap of
the service's whole-map inference (``1 - stride_px / patch_px``).

Scoring, from the catalogue only: a catalogue row is a *hit* when its sky position lies within
:data:`HIT_RADIUS_PX` pixels of a true filament's spine (the row is the centroid of a filament piece the
model found in a tile; the centroid of a curved or truncated piece lies off the spine). Completeness is
the fraction of true filaments whose spine runs at least :data:`MIN_LENGTH_PX` pixels over pixels with
data that have at least one hit; purity is the fraction of rows that are hits (a hit on a shorter
filament is a hit too).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.core.tiles import window_origins

__all__ = ["SURVEY", "NIGHT_SEED_OFFSET", "DEFAULT_PIXEL_SCALE_ARCSEC", "DEFAULT_FIELDS", "DEFAULT_FIELD_PX",
           "DUPLICATE_RADIUS_PX", "HIT_RADIUS_PX", "MIN_LENGTH_PX", "night_pixel_scale_arcsec", "field_wcs",
           "night_tiling", "spine_length_px", "simulate_night", "score_night"]

SURVEY = "higal"
"""Survey name of the night's files (``raw/<night>/higal/<field>/nh2.fits``)."""
NIGHT_SEED_OFFSET = 2_000_003
"""The night's maps use ``seed + NIGHT_SEED_OFFSET``: never a training seed nor the held-out test seed."""
DEFAULT_PIXEL_SCALE_ARCSEC = 11.5
"""Hi-GAL N(H2) pixel side (the SPIRE 500 um grid of Molinari+2016): used when the real cut-out has no WCS
(the packaged one has none)."""
DEFAULT_FIELDS = 2
"""Fields in the default night."""
DEFAULT_FIELD_PX = 512
"""Side of each default field, in pixels: 9 overlapping 256-px tiles per field at overlap 0.5."""
DUPLICATE_RADIUS_PX = 4.0
"""Detections of one label from overlapping tiles closer than this (pixels) are one filament. A filament
piece wholly inside two overlapping tiles gets centroids within 1-2 px of each other (the tiles' 64-px
inference patches fall on the same grid, stride 32 dividing the tile step of 128), while two detections
in one tile (distinct pieces by construction) were never closer than 4 px in simulated nights."""
HIT_RADIUS_PX = 6.0
"""A catalogue row within this many pixels (69 arcsec at 11.5", about two 36" Hi-GAL beams) of a true
spine is a hit: the truth region is about 4 px wide and a piece's centroid lies off a curved spine."""
MIN_LENGTH_PX = 16.0
"""True filaments counted in the completeness run at least this long (pixels) over pixels with data:
a quarter of the model's 64-px patch, five 36" beams; shorter ones are hardly filaments."""

_FIRST_GLON_DEG = 351.0
_FIELD_SPACING_DEG = 2.0


def night_pixel_scale_arcsec(real_data_dir: Path | None = None) -> tuple[float, str]:
    """The night's pixel side in arcseconds and where it comes from.

    Returns
    -------
    (float, str)
        The real cut-out's pixel scale and ``"real cut-out header"`` when its header has a celestial
        WCS, else :data:`DEFAULT_PIXEL_SCALE_ARCSEC` and ``"default"``.
    """
    from nightshift.filaments.config import default_real_data_dir
    from nightshift.filaments.realdata import real_pixel_scale_arcsec

    scale = real_pixel_scale_arcsec(real_data_dir or default_real_data_dir())
    return (scale, "real cut-out header") if scale else (DEFAULT_PIXEL_SCALE_ARCSEC, "default")


def field_wcs(glon_deg: float, glat_deg: float, size_px: int, pixel_scale_arcsec: float):
    """A Galactic plate-carree (``GLON-CAR``/``GLAT-CAR``) WCS of a square field centred on (l, b).

    Returns
    -------
    astropy.wcs.WCS
        Longitude increasing to the left, as sky images are shown.
    """
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    wcs.wcs.crval = [glon_deg % 360.0, glat_deg]
    wcs.wcs.crpix = [(size_px + 1) / 2.0, (size_px + 1) / 2.0]
    wcs.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def night_tiling(config) -> dict[str, Any]:
    """The ingest tiling of the night for a model ``config``: windows of ``tile_px``, overlap of whole-map inference.

    Parameters
    ----------
    config : FilamentsConfig
        The served model's config (``tile_px``, ``patch_px``, ``stride_px``).
    """
    return {"kind": "fits", "window_px": [config.tile_px], "overlap_fraction": 1.0 - config.stride_px / config.patch_px,
            "output_px": 0}


def spine_length_px(spine: np.ndarray, usable: np.ndarray | None = None) -> float:
    """Length of a spine (n, 2) of (row, column) points, in pixels; with ``usable``, only the steps whose
    two ends lie on pixels with data."""
    steps = np.hypot(*np.diff(np.asarray(spine, float), axis=0).T)
    if usable is not None and len(spine) > 1:
        rows, cols = np.clip(np.rint(spine).astype(int), 0, np.array(usable.shape) - 1).T
        seen = usable[rows, cols]
        steps = steps[seen[1:] & seen[:-1]]
    return float(steps.sum())


def _served_config():
    from nightshift.filaments.config import FilamentsConfig
    from nightshift.filaments.model import bundled_weights

    return FilamentsConfig.from_dict(json.loads(bundled_weights().with_suffix(".json").read_text())["config"])


def simulate_night(out: Path, seed: int = 0, *, fields: int = DEFAULT_FIELDS, size_px: int = DEFAULT_FIELD_PX) -> dict[str, Any]:
    """Write a simulated Hi-GAL night into ``out``.

    Writes ``night.json`` (survey, tiling, the service's radii), ``raw/<field>/nh2.fits`` (N(H2) in
    cm-2, NaN where missing, Galactic WCS), and the truth: ``truth/<field>_mask.fits`` (the filament
    mask as uint8 with the field's WCS, and an ``USABLE`` extension: pixels with data),
    ``truth/spines.ecsv`` (every spine point in pixels and Galactic degrees), ``truth/filaments.ecsv``
    (one row per true filament: length, length over pixels with data, whether completeness counts
    it) and ``truth/truth.json`` (the scoring parameters).

    Parameters
    ----------
    out : Path
        The kit directory (created).
    seed : int
        Field ``i`` is simulated from ``(seed + NIGHT_SEED_OFFSET, i)``.
    fields : int
        Number of fields.
    size_px : int
        Side of each field, in pixels; at least the served model's ``tile_px``.

    Returns
    -------
    dict
        The summary printed by the command: survey, fields, files, tiles, truth_objects, seconds.
    """
    from astropy.io import fits
    from astropy.table import Table

    from nightshift.filaments.config import BAND, UNIT
    from nightshift.filaments.simulate import simulate_maps

    started = time.perf_counter()
    config = _served_config()
    if fields < 1:
        raise ValueError(f"fields={fields}: expected at least 1")
    if size_px < config.tile_px:
        raise ValueError(f"size_px={size_px}: expected at least the served model's tile_px = {config.tile_px}")
    out = Path(out)
    scale, scale_source = night_pixel_scale_arcsec()
    tiling = night_tiling(config)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    spine_rows: list[tuple] = []
    filament_rows: list[tuple] = []
    names = []
    for index, sky in enumerate(simulate_maps(fields, size_px, seed + NIGHT_SEED_OFFSET)):
        glon = (_FIRST_GLON_DEG + _FIELD_SPACING_DEG * index) % 360.0
        name = f"l{glon:03.0f}"
        names.append(name)
        wcs = field_wcs(glon, 0.0, size_px, scale)
        header = wcs.to_header()
        header["BUNIT"] = (UNIT, "H2 column density")
        header["TELESCOP"] = ("Herschel", "simulated Hi-GAL-like N(H2) map")
        header["OBJECT"] = name
        header["ORIGIN"] = "nightshift-filaments simulate-night"
        header["NSSEED"] = (seed, f"night seed (maps of seed {seed + NIGHT_SEED_OFFSET})")
        header["NSFIELD"] = (index, "field index in the night")
        (out / "raw" / name).mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(sky.column_density, header=header).writeto(out / "raw" / name / f"{BAND}.fits", overwrite=True)
        mask_header = wcs.to_header()
        mask_header["OBJECT"] = name
        fits.HDUList([fits.PrimaryHDU(sky.mask.astype(np.uint8), header=mask_header),
                      fits.ImageHDU(sky.usable.astype(np.uint8), header=mask_header, name="USABLE")]).writeto(
            out / "truth" / f"{name}_mask.fits", overwrite=True)
        for number, spine in enumerate(sky.spines):
            lon, lat = wcs.pixel_to_world_values(spine[:, 1], spine[:, 0])
            lon = np.mod(lon, 360.0)
            spine_rows += [(name, number, float(r), float(c), float(lo), float(la))
                           for (r, c), lo, la in zip(spine, lon, lat)]
            visible = spine_length_px(spine, sky.usable)
            middle = len(spine) // 2
            filament_rows.append((name, number, spine_length_px(spine), visible, visible >= MIN_LENGTH_PX,
                                  float(lon[middle]), float(lat[middle])))
    Table(rows=spine_rows, names=("field", "filament", "y_px", "x_px", "glon", "glat"),
          units=(None, None, "pix", "pix", "deg", "deg")).write(out / "truth" / "spines.ecsv", overwrite=True)
    filaments = Table(rows=filament_rows, names=("field", "filament", "length_px", "visible_length_px", "counted", "glon", "glat"),
                      units=(None, None, "pix", "pix", None, "deg", "deg"))
    filaments.write(out / "truth" / "filaments.ecsv", overwrite=True)
    truth = {"seed": seed, "fields": names, "size_px": size_px, "pixel_scale_arcsec": scale, "pixel_scale_source": scale_source,
             "hit_radius_arcsec": HIT_RADIUS_PX * scale, "min_length_px": MIN_LENGTH_PX}
    (out / "truth" / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    night = {
        "survey": {"name": SURVEY, "bands": [{"name": BAND, "wavelength_um": 0.0, "unit": UNIT}], "tiling": tiling},
        "service": {"duplicate_radius_arcsec": DUPLICATE_RADIUS_PX * scale, "crossmatch_radius_arcsec": 0.0},
    }
    (out / "night.json").write_text(json.dumps(night, indent=2) + "\n")
    per_axis = len(window_origins(size_px, config.tile_px, tiling["overlap_fraction"]))
    return {"survey": SURVEY, "fields": fields, "files": fields, "tiles": fields * per_axis**2,
            "truth_objects": int(np.sum(filaments["counted"])), "truth_all": len(filaments),
            "pixel_scale_arcsec": scale, "seconds": round(time.perf_counter() - started, 2)}


def score_night(kit: Path, catalogue: Path) -> dict[str, Any]:
    """Score the night's merged filament catalogue against the kit's truth, from the catalogue alone.

    Parameters
    ----------
    kit : Path
        The directory :func:`simulate_night` wrote.
    catalogue : Path
        The night's catalogue for the task (FITS table with ``glon``, ``glat`` in degrees).

    Returns
    -------
    dict
        ``truth`` (true filaments counted: long enough over pixels with data), ``truth_all``,
        ``detections`` (catalogue rows), ``hits`` (rows within the hit radius of a true spine),
        ``matched`` (counted filaments with a hit), ``completeness`` = matched / truth, ``purity`` =
        hits / detections (None without rows), ``hit_radius_arcsec``, ``min_length_px``.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky
    from astropy.table import Table

    truth = json.loads((Path(kit) / "truth" / "truth.json").read_text())
    spines = Table.read(Path(kit) / "truth" / "spines.ecsv", format="ascii.ecsv")
    filaments = Table.read(Path(kit) / "truth" / "filaments.ecsv", format="ascii.ecsv")
    rows = Table.read(catalogue)
    radius = truth["hit_radius_arcsec"] * u.arcsec
    hits, matched = 0, set()
    if len(rows) and len(spines):
        found = SkyCoord(np.asarray(rows["glon"], float) * u.deg, np.asarray(rows["glat"], float) * u.deg, frame="galactic")
        points = SkyCoord(np.asarray(spines["glon"], float) * u.deg, np.asarray(spines["glat"], float) * u.deg, frame="galactic")
        row_index, point_index, _, _ = search_around_sky(found, points, radius)
        hits = len(np.unique(row_index))
        matched = {(str(f), int(n)) for f, n in zip(spines["field"][point_index], spines["filament"][point_index])}
    counted = {(str(f), int(n)) for f, n, c in zip(filaments["field"], filaments["filament"], filaments["counted"]) if c}
    found_counted = len(counted & matched)
    return {
        "truth": len(counted), "truth_all": len(filaments), "detections": len(rows), "hits": hits, "matched": found_counted,
        "completeness": round(found_counted / len(counted), 4) if counted else None,
        "purity": round(hits / len(rows), 4) if len(rows) else None,
        "hit_radius_arcsec": truth["hit_radius_arcsec"], "min_length_px": truth["min_length_px"],
    }
