"""The clusters night kit: a small simulated Planck HFI night for the demo, and its honest score.

``simulate_night`` writes what the nightly flow processes for this service: the service's own
simulated sky (:mod:`nightshift.clusters.simulate`, the shipped model's configuration: nside 1024,
the six HFI bands, PSZ2 analogues plus random clusters, all placed independently of the real
catalogues; a sky seed other than the training sky's) seen by a survey with partial coverage,
a disc of sky (by default inside the held-out test cell 7, far from the Galactic plane) whose
pixels outside are UNSEEN, one partial-sky HEALPix FITS file per band (``healpy.write_map``,
Galactic, RING). The ingest service cuts it into 64 x 64 gnomonic patches at 1.7 arcmin (the
service's tile) and skips patches without a usable pixel; patches across the disc's border keep
NaN outside it, which the service fills and never detects on (:mod:`nightshift.clusters.preprocess`).
Beside the maps: ``night.json`` (survey, bands, tiling, merge and cross-match radii), the real
cluster catalogues to cross-match with (when ``../shared/data/clusters`` is present) and the truth.

``score_night`` scores the night's merged catalogue against that truth as ``evaluate`` scores a
field: completeness (clusters inside the disc with a detection within the match radius, above
the headline S/N and overall) and purity (detections with an injected cluster within the radius).
It also says what the night's "known" labels mean here: the detections within the cross-match
radius of the kit's real catalogues, beside the number that chance alone gives (the fraction of
the disc within the radius of a catalogue cluster times the detections), which they should match.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from nightshift.clusters.catalogues import ReferenceCatalogue, chance_match_fraction, crossmatch, read_psz2, read_references
from nightshift.clusters.config import ClustersConfig, catalogue_dir
from nightshift.clusters.patches import BASE_NSIDE, SURVEY, measure_truth_snr
from nightshift.clusters.simulate import simulate_sky

__all__ = ["DEFAULT_SEED", "SKY_SEED_OFFSET", "DEFAULT_RADIUS_DEG", "OVERLAP_FRACTION", "night_config", "simulate_night", "score_night"]

DEFAULT_SEED = 0
"""Seed of the night; its sky is the simulator's seed ``seed + SKY_SEED_OFFSET``."""
SKY_SEED_OFFSET = 1
"""Night seed N simulates sky seed N + 1; a seed whose sky the shipped model trained on is refused."""
DEFAULT_RADIUS_DEG = 12.0
"""Radius of the observed disc: a few hundred tiles (see the README)."""
OVERLAP_FRACTION = 0.25
"""Least overlap of neighbouring patches: every point lies at least 8 px inside some patch."""
_REGION_CELL = 7  # the shipped model's test cell (nside 2, NESTED): no training patch came from it
_AREA_SAMPLE_NSIDE = 256  # pixel centres 14' apart sample the disc for the chance match rate
_TRUTH_MARGIN_DEG = 1.0  # clusters this far outside the disc still count for purity (their signal reaches in)


def night_config(sky_seed: int, overrides: dict[str, Any] | None = None) -> ClustersConfig:
    """The shipped model's configuration (its card) with the sky seed ``sky_seed`` and ``overrides``.

    Raises
    ------
    ValueError
        ``sky_seed`` is one of the skies the shipped model was trained on: its score would flatter it.
    """
    from nightshift.clusters.bundle import bundled_weights

    card = json.loads(bundled_weights().with_suffix(".json").read_text())
    trained = ClustersConfig.from_dict(card["config"])
    if sky_seed in trained.training_sky_seeds:
        raise ValueError(f"sky seed {sky_seed} is one of the shipped model's training skies {list(trained.training_sky_seeds)}: "
                         f"choose another night seed")
    return trained.with_overrides({**(overrides or {}), "seed": sky_seed})


def _region_centre() -> tuple[float, float]:
    lon, lat = hp.pix2ang(BASE_NSIDE, _REGION_CELL, nest=True, lonlat=True)
    return float(lon), float(lat)


def _separation_deg(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    vectors = hp.ang2vec(np.asarray(lon, float), np.asarray(lat, float), lonlat=True).reshape(-1, 3)
    return np.degrees(np.arccos(np.clip(vectors @ hp.ang2vec(lon0, lat0, lonlat=True), -1.0, 1.0)))


def _write_references(directory: Path) -> list[str]:
    """PSZ2 (Galactic), MCXC and redMaPPer (ICRS) as ``name`` + position ECSV files; none when the data are absent."""
    source = catalogue_dir()
    if source is None:
        return []
    try:
        psz2 = read_psz2(source)
        references = read_references(source)
    except (FileNotFoundError, OSError, KeyError, ValueError):
        return []
    directory.mkdir(parents=True, exist_ok=True)
    Table({"name": psz2.name, "glon": psz2.glon, "glat": psz2.glat},
          units={"glon": "deg", "glat": "deg"}).write(directory / "psz2.ecsv", overwrite=True)
    written = ["psz2"]
    for reference in references[1:]:
        name = reference.label.lower()
        Table({"name": reference.names, "ra": reference.coords.ra.deg, "dec": reference.coords.dec.deg},
              units={"ra": "deg", "dec": "deg"}).write(directory / f"{name}.ecsv", overwrite=True)
        written.append(name)
    return written


def simulate_night(
    out: Path, seed: int = DEFAULT_SEED, *, radius_deg: float = DEFAULT_RADIUS_DEG, overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a simulated night of the Planck HFI survey (partial sky) with its truth into ``out``.

    Parameters
    ----------
    out : Path
        Directory of the kit: ``night.json``, ``raw/<field>/<band>.fits``, ``reference/*.ecsv``
        (when the real catalogues are present) and ``truth/`` (``clusters.ecsv``, ``region.json``).
    seed : int
        Seed of the night: the sky is the simulator's seed ``seed + SKY_SEED_OFFSET``, never one of
        the shipped model's training skies (ValueError).
    radius_deg : float
        Radius of the observed disc, centred on the test cell 7.
    overrides : dict, optional
        Fields of the shipped model's configuration to replace (e.g. a small ``nside`` in tests).

    Returns
    -------
    dict
        Survey name, fields, files, truth objects (clusters inside the disc), seconds and the sky's nside.
    """
    start = time.perf_counter()
    out = Path(out)
    config = night_config(seed + SKY_SEED_OFFSET, overrides)
    directory = catalogue_dir()
    sky = simulate_sky(config, read_psz2(directory) if directory is not None else None)
    lon0, lat0 = _region_centre()
    field = f"l{lon0:03.0f}b{lat0:+03.0f}".replace("+", "p").replace("-", "m")
    inside = np.zeros(hp.nside2npix(config.nside), dtype=bool)
    inside[hp.query_disc(config.nside, hp.ang2vec(lon0, lat0, lonlat=True), math.radians(radius_deg))] = True

    raw = out / "raw" / field
    raw.mkdir(parents=True, exist_ok=True)
    for band, values in zip(config.bands, sky.maps):
        masked = np.where(inside, values, hp.UNSEEN).astype(np.float32)
        hp.write_map(str(raw / f"{band.name}.fits"), masked, coord="G", column_names=[band.name],
                     column_units=band.unit, dtype=np.float32, partial=True, overwrite=True)

    # truth: clusters whose centre is observed (scored for completeness), and those just outside (purity)
    separation = _separation_deg(sky.truth.glon, sky.truth.glat, lon0, lat0)
    near = sky.truth.select(separation <= radius_deg + _TRUTH_MARGIN_DEG)
    near = measure_truth_snr(dataclasses.replace(sky, truth=near), config)
    observed = inside[hp.ang2pix(config.nside, near.glon, near.glat, lonlat=True)]
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    Table({"glon": near.glon, "glat": near.glat, "m500_msun": near.m500_msun, "z": near.z,
           "theta500_arcmin": near.theta500_arcmin, "y5r500_arcmin2": near.y5r500_arcmin2, "snr": near.snr,
           "psz2_analogue": near.psz2_analogue.astype(str), "inside": observed},
          units={"glon": "deg", "glat": "deg", "m500_msun": "solMass", "theta500_arcmin": "arcmin",
                 "y5r500_arcmin2": "arcmin2"}).write(truth_dir / "clusters.ecsv", overwrite=True)
    region = {"glon": lon0, "glat": lat0, "radius_deg": radius_deg, "nside": config.nside, "seed": seed, "sky_seed": config.seed,
              "match_radius_arcmin": config.match_radius_arcmin, "headline_snr": config.headline_snr,
              "threshold": config.threshold}
    (truth_dir / "region.json").write_text(json.dumps(region, indent=2) + "\n")

    references = _write_references(out / "reference")
    night = {
        "survey": {
            "name": SURVEY,
            "bands": [{"name": b.name, "wavelength_um": b.wavelength_um, "unit": b.unit} for b in config.bands],
            "tiling": {"kind": "healpix", "patch_px": config.patch_px, "pixel_scale_arcmin": config.pixel_scale_arcmin,
                       "overlap_fraction": OVERLAP_FRACTION, "validation_cells": [], "test_cells": [],
                       "frame": "galactic"},
        },
        "service": {"duplicate_radius_arcsec": config.merge_radius_arcmin * 60.0,
                    "crossmatch_radius_arcsec": config.match_radius_arcmin * 60.0},
    }
    (out / "night.json").write_text(json.dumps(night, indent=2) + "\n")
    return {"survey": SURVEY, "fields": 1, "files": len(config.bands), "truth_objects": int(observed.sum()),
            "truth_above_headline_snr": int((observed & (near.snr >= config.headline_snr)).sum()),
            "nside": config.nside, "sky_seed": config.seed, "radius_deg": radius_deg, "references": references,
            "seconds": round(time.perf_counter() - start, 2)}


def _fraction(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if len(hits) else None


def _kit_references(directory: Path) -> list[ReferenceCatalogue]:
    """The real catalogues :func:`_write_references` wrote, in cross-match priority order; none when absent."""
    references = []
    for label in ("PSZ2", "MCXC", "redMaPPer"):
        path = directory / f"{label.lower()}.ecsv"
        if not path.exists():
            continue
        table = Table.read(path, format="ascii.ecsv")
        if "glon" in table.colnames:
            coords = SkyCoord(l=np.asarray(table["glon"], float) * u.deg, b=np.asarray(table["glat"], float) * u.deg,
                              frame="galactic").icrs
        else:
            coords = SkyCoord(ra=np.asarray(table["ra"], float) * u.deg, dec=np.asarray(table["dec"], float) * u.deg)
        references.append(ReferenceCatalogue(label, np.asarray(table["name"], dtype=str), coords))
    return references


def _real_catalogue_matches(kit: Path, region: dict[str, Any], det_lon: np.ndarray, det_lat: np.ndarray) -> dict[str, Any]:
    """Detections within the match radius of the kit's real catalogues, the chance rate over the disc, and the expectation."""
    references = _kit_references(kit / "reference")
    if not references:
        return {}
    radius = float(region["match_radius_arcmin"])
    centre = hp.ang2vec(region["glon"], region["glat"], lonlat=True)
    disc = hp.query_disc(_AREA_SAMPLE_NSIDE, centre, math.radians(region["radius_deg"]))
    rate = chance_match_fraction(*hp.pix2ang(_AREA_SAMPLE_NSIDE, disc, lonlat=True), references, radius_arcmin=radius)
    matches = int(crossmatch(det_lon, det_lat, references, radius_arcmin=radius).known.sum())
    return {"real_catalogue_matches": matches, "real_catalogue_chance_rate": rate,
            "real_catalogue_matches_expected_by_chance": rate * len(det_lon)}


def score_night(kit: Path, catalogue: Path) -> dict[str, Any]:
    """Score the night's merged cluster catalogue (FITS) against the kit's truth.

    Parameters
    ----------
    kit : Path
        The directory :func:`simulate_night` wrote.
    catalogue : Path
        The night's catalogue for this task: a FITS table with ``glon``, ``glat`` (deg) per
        detection (and ``label``; rows of other labels are ignored).

    Returns
    -------
    dict
        ``truth`` (clusters inside the observed disc), ``truth_above_headline_snr``,
        ``detections``, ``matched`` (detections with an injected cluster within the match radius),
        ``detected`` (truth clusters found), ``completeness`` (above the headline S/N),
        ``completeness_all``, ``purity`` (None when undefined), ``headline_snr``, ``match_radius_arcmin``;
        with the kit's real catalogues also ``real_catalogue_matches`` (the detections the night
        labels known), ``real_catalogue_chance_rate`` and ``real_catalogue_matches_expected_by_chance``:
        the simulated clusters are placed independently of those catalogues, so the matches are
        chance coincidences and should equal the expectation within Poisson noise.
    """
    from nightshift.clusters.evaluate import match_to_truth

    kit = Path(kit)
    region = json.loads((kit / "truth" / "region.json").read_text())
    truth = Table.read(kit / "truth" / "clusters.ecsv", format="ascii.ecsv")
    rows = Table.read(catalogue)
    if "label" in rows.colnames and len(rows):
        rows = rows[np.char.strip(np.asarray(rows["label"], dtype=str)) == "cluster"]
    det_lon, det_lat = np.asarray(rows["glon"], float), np.asarray(rows["glat"], float)
    radius = float(region["match_radius_arcmin"])
    inside = np.asarray(truth["inside"], bool)
    scored = truth[inside]
    detected, _ = match_to_truth(det_lon, det_lat, np.asarray(scored["glon"], float), np.asarray(scored["glat"], float),
                                 radius_arcmin=radius)
    _, true_detection = match_to_truth(det_lon, det_lat, np.asarray(truth["glon"], float), np.asarray(truth["glat"], float),
                                       radius_arcmin=radius)
    bright = np.nan_to_num(np.asarray(scored["snr"], float), nan=-np.inf) >= float(region["headline_snr"])
    return {
        "truth": len(scored), "truth_above_headline_snr": int(bright.sum()), "detections": len(rows),
        "matched": int(true_detection.sum()), "detected": int(detected.sum()),
        "completeness": _fraction(detected[bright]), "completeness_all": _fraction(detected),
        "purity": _fraction(true_detection), "headline_snr": float(region["headline_snr"]), "match_radius_arcmin": radius,
        **_real_catalogue_matches(kit, region, det_lon, det_lat),
    }
