"""The bubbles service's night kit: a small simulated GLIMPSE/MIPSGAL night for the demo, and its score.

The demo night (``nightshift night``) runs every science service on a small simulated night and
scores each task's merged catalogue against the simulated truth, without importing any service:
it runs ``nightshift-bubbles simulate-night`` and ``nightshift-bubbles score-night`` as commands.

:func:`simulate_night` writes, from :mod:`nightshift.bubbles.simulate` with the shipped model's
configuration (the distribution of its held-out evaluation fields), a few Galactic-plane fields as a
survey delivers them (``raw/<field>/irac4.fits``, ``raw/<field>/mips24.fits``: MJy/sr, Galactic CAR
WCS), ``night.json`` (the survey ``glimpse`` with the ingest tiling that yields exactly the windows
:func:`~nightshift.bubbles.infer.detect_field` uses, resized to 300 pixels; the service's merge and
cross-match radii), the MWP DR1 large bubbles as ``reference/mwp_dr1.ecsv`` when the shared data is
present, and the truth in ``truth/``. :func:`score_night` scores the night's catalogue with the
service's own hit rule (:mod:`nightshift.bubbles.evaluate`: a detection hits a bubble when its box
covers at least 1/3 of the bubble's box, both centre +- 1.3 radius), measured on the sky.

The night's fields are simulated with seed ``3000000 + seed``: a stream of its own, apart from the
training (run seed), validation (1000000 + run seed) and test (2000000 + run seed) fields.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.bubbles.config import BAND_WAVELENGTH_UM, BANDS, IMAGE_SIZE, BubblesConfig
from nightshift.bubbles.evaluate import HIT_COVERAGE, Counts, count_covered, coverage_matrix
from nightshift.bubbles.infer import BOX_SCALE

__all__ = ["SURVEY", "NIGHT_SEED_OFFSET", "TRUTH_STEM", "TRUTH_INFO", "REFERENCE_FILE", "duplicate_radius_arcsec", "crossmatch_radius_arcsec",
           "night_windows", "simulate_night", "sky_coverage", "score_night"]

SURVEY = "glimpse"
"""The survey name the night's files arrive under."""
NIGHT_SEED_OFFSET = 3_000_000
"""The night's fields are simulated with seed ``NIGHT_SEED_OFFSET + seed`` (apart from train/val/test seeds)."""
TRUTH_STEM = Path("truth") / "bubbles"
"""The truth catalogue in the kit: ``truth/bubbles.fits`` (and ``.ecsv``, ``.csv``, regions), one row per bubble."""
TRUTH_INFO = Path("truth") / "scoring.json"
"""What score-night needs besides the truth rows: the fields and the operating threshold."""
REFERENCE_FILE = Path("reference") / "mwp_dr1.ecsv"
"""The MWP DR1 large bubbles (name, glon, glat), written when the shared data is present."""


def _median_radius_arcsec() -> float:
    """Median semi-major axis of the MWP DR1 large bubbles (the simulator's radius log-normal), in arcsec."""
    from nightshift.bubbles.simulate import MWP_SHELLS

    return float(np.exp(MWP_SHELLS.log_radius_mean))


def duplicate_radius_arcsec(config: BubblesConfig) -> float:
    """Radius within which two detections from overlapping tiles are one bubble, in arcsec.

    The service's field merge is NMS at ``config.field_nms_iou`` (paper: 0.3) on boxes of side 2 x 1.3
    x radius. Two equal boxes of side s offset by d along an axis have IoU (s - d) / (s + d), so they
    reach the NMS threshold t at d = s (1 - t) / (1 + t): 1.4 radii for t = 0.3. For the median bubble
    (MWP DR1: 48") this is 67". On simulated fields of the evaluation set, merging the window
    detections within 45..90" gives the same hits as the service's NMS.
    """
    side = 2.0 * BOX_SCALE * _median_radius_arcsec()
    return float(round(side * (1.0 - config.field_nms_iou) / (1.0 + config.field_nms_iou)))


def crossmatch_radius_arcsec() -> float:
    """Radius for cross-matching detections with a bubble catalogue: one median MWP DR1 radius (48"), in arcsec."""
    return float(round(_median_radius_arcsec()))


def night_windows(config: BubblesConfig) -> dict[str, Any]:
    """The ingest tiling (``FitsTiling`` of the orchestration) that cuts the windows :func:`detect_field` uses."""
    return {"kind": "fits", "window_px": list(config.window_px), "overlap_fraction": config.window_overlap,
            "output_px": IMAGE_SIZE}


def _shipped_config() -> tuple[BubblesConfig, dict[str, Any]]:
    """The shipped default model's configuration and card (no weights loaded)."""
    from nightshift.bubbles.model import shipped_weights

    card = json.loads(shipped_weights().with_suffix(".json").read_text())
    return BubblesConfig.from_dict(card["config"]), card


def _write_reference(path: Path) -> int:
    """Write the MWP DR1 large bubbles as ECSV (name, glon, glat in degrees) when the shared data is found; rows written."""
    from astropy.table import Table

    from nightshift.bubbles.realdata import CATALOGUE_FILE, DEFAULT_REAL_DIR, load_catalogue

    source = DEFAULT_REAL_DIR / CATALOGUE_FILE
    if not source.is_file():
        return 0
    catalogue = load_catalogue(source)
    table = Table({"name": [f"MWP-DR1-{row:04d}" for row in catalogue.row], "glon": catalogue.glon % 360.0, "glat": catalogue.glat},
                  units={"glon": "deg", "glat": "deg"},
                  meta={"description": f"Milky Way Project DR1 large bubbles (Simpson et al. 2012), from {CATALOGUE_FILE}; "
                                       "name = MWP-DR1-<row of the CSV>"})
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write(path, format="ascii.ecsv", overwrite=True)
    return len(table)


def simulate_night(out: Path, seed: int = 0, *, fields: int = 2) -> dict[str, Any]:
    """Write a simulated night of the ``glimpse`` survey into ``out`` (the night kit); return its summary.

    Parameters
    ----------
    out : Path
        The kit's directory: ``night.json``, ``raw/<field>/<band>.fits``, ``reference/mwp_dr1.ecsv``
        (when the shared data is present), ``truth/``. Earlier ``raw``, ``reference`` and ``truth``
        folders there are replaced.
    seed : int
        The night's seed: fields ``0 .. fields - 1`` of simulation seed ``3000000 + seed``.
    fields : int
        Fields of ``config.field_px`` (768) pixels each, 129 tiles per field.

    Returns
    -------
    dict
        ``survey``, ``fields``, ``files``, ``tiles`` (the ingest windows), ``truth_objects``,
        ``truth_clear``, ``reference_objects``, ``seconds``.
    """
    from nightshift.bubbles.simulate import band_hdus, simulate_fields
    from nightshift.bubbles.windows import plan_windows
    from nightshift.bubbles.workflows import write_truth

    if fields < 1:
        raise ValueError(f"fields={fields}: expected at least 1")
    started = time.perf_counter()
    config, card = _shipped_config()
    out = Path(out)
    for folder in ("raw", "reference", "truth"):
        shutil.rmtree(out / folder, ignore_errors=True)
    simulated = simulate_fields(config, NIGHT_SEED_OFFSET + seed, fields)
    files = 0
    for field in simulated:
        (out / "raw" / field.name).mkdir(parents=True, exist_ok=True)
        for band, hdu in band_hdus(field):
            hdu.writeto(out / "raw" / field.name / f"{band}.fits", overwrite=True)
            files += 1
    truth = write_truth(simulated, out / TRUTH_STEM, seed=NIGHT_SEED_OFFSET + seed)
    (out / TRUTH_INFO).write_text(json.dumps({
        "fields": [f.name for f in simulated], "simulation_seed": NIGHT_SEED_OFFSET + seed, "model": card["name"],
        "score_threshold": config.score_threshold, "hit_coverage": HIT_COVERAGE, "box_scale": BOX_SCALE,
    }, indent=2) + "\n")
    references = _write_reference(out / REFERENCE_FILE)
    night = {
        "survey": {"name": SURVEY,
                   "bands": [{"name": name, "wavelength_um": wavelength, "unit": "MJy/sr"} for name, wavelength in zip(BANDS, BAND_WAVELENGTH_UM)],
                   "tiling": night_windows(config)},
        "service": {"duplicate_radius_arcsec": duplicate_radius_arcsec(config), "crossmatch_radius_arcsec": crossmatch_radius_arcsec()},
    }
    (out / "night.json").write_text(json.dumps(night, indent=2) + "\n")
    tiles = sum(len(plan_windows(f.pixels.shape[1:], config.window_px, config.window_overlap)) for f in simulated)
    return {"survey": SURVEY, "fields": fields, "files": files, "tiles": tiles, "truth_objects": len(truth),
            "truth_clear": sum(bool(t["clear"]) for t in truth), "reference_objects": references,
            "seconds": round(time.perf_counter() - started, 2)}


def sky_coverage(det_lon: np.ndarray, det_lat: np.ndarray, det_radius_arcsec: np.ndarray,
                 truth_lon: np.ndarray, truth_lat: np.ndarray, truth_radius_arcsec: np.ndarray) -> np.ndarray:
    """Fraction of each truth box covered by each detection box, on the sky (Galactic degrees, radii in arcsec).

    Boxes are centre +- 1.3 x radius in each truth's local frame (offsets along l cos b and b, in
    arcsec): the service's hit rule (:func:`~nightshift.bubbles.evaluate.coverage_matrix`) measured on
    the sky rather than in one field's pixels.

    Returns
    -------
    ndarray
        (n detections, m truths).
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    det_radius = np.asarray(det_radius_arcsec, float).reshape(-1)
    truth_radius = np.asarray(truth_radius_arcsec, float).reshape(-1)
    coverage = np.zeros((len(det_radius), len(truth_radius)))
    if coverage.size == 0:
        return coverage
    detections = SkyCoord(np.asarray(det_lon, float) * u.deg, np.asarray(det_lat, float) * u.deg, frame="galactic")
    truths = SkyCoord(np.asarray(truth_lon, float) * u.deg, np.asarray(truth_lat, float) * u.deg, frame="galactic")
    det_half = BOX_SCALE * det_radius
    for j, (truth, radius) in enumerate(zip(truths, truth_radius)):
        dx, dy = (offset.to_value(u.arcsec) for offset in truth.spherical_offsets_to(detections))
        half = BOX_SCALE * radius
        boxes = np.stack([dx - det_half, dy - det_half, dx + det_half, dy + det_half], axis=1)
        coverage[:, j] = coverage_matrix(boxes, np.array([[-half, -half, half, half]]))[:, 0]
    return coverage


def _figures(counts: Counts, not_clear: Counts) -> dict[str, Any]:
    """The named figures of the night's counts (``not_clear``: the counts over the bubbles that are not clear)."""
    return {
        "detections": counts.detections, "matched": counts.all_hit, "true_detections": counts.true_detections,
        "completeness": counts.detection_rate_all, "purity": counts.precision,
        "completeness_clear": counts.detection_rate, "completeness_not_clear": not_clear.detection_rate_all,
        "matched_clear": counts.clear_hit, "matched_not_clear": not_clear.all_hit, "f2": counts.f2,
    }


def _column(table, name: str) -> np.ndarray:
    """The column ``name`` of ``table`` as an array (empty when the table lacks it)."""
    return np.asarray(table[name]) if name in table.colnames else np.array([])


def score_night(kit: Path, catalogue: Path) -> dict[str, Any]:
    """Score the night's bubbles catalogue (FITS, the orchestration's detection columns) against the kit's truth.

    Only rows of the kit's fields (column ``field``) with label ``bubble`` are scored; others (another
    survey's fields) are counted in ``rows_ignored``. Every truth bubble lies wholly inside its field,
    which the windows cover, so all of them count. A truth bubble is matched when some row's box (its
    position, centre +- 1.3 x ``radius_arcsec``) covers at least 1/3 of the bubble's box; a row is a true
    detection when it covers some bubble, clear or not (the service's ``evaluate``).

    Returns
    -------
    dict
        ``truth``, ``truth_clear``, ``detections``, ``matched``, ``completeness`` (all bubbles),
        ``purity`` (the paper's precision), ``completeness_clear`` (the paper's detection rate),
        ``completeness_not_clear``, ``f2``, and the same at the model's operating ``score_threshold``
        under ``at_threshold``.
    """
    from astropy.table import Table

    kit = Path(kit)
    truth = Table.read(kit / TRUTH_STEM.with_suffix(".fits"))
    info = json.loads((kit / TRUTH_INFO).read_text())
    rows = Table.read(catalogue)
    n_rows = len(rows)
    field = np.char.strip(_column(rows, "field").astype(str)) if n_rows else np.array([], str)
    label = np.char.strip(_column(rows, "label").astype(str)) if "label" in rows.colnames and n_rows else np.full(n_rows, "bubble")
    keep = np.isin(field, info["fields"]) & (label == "bubble") if n_rows else np.zeros(0, bool)
    rows = rows[keep]
    lon, lat = _column(rows, "glon").astype(float), _column(rows, "glat").astype(float)
    radius, score = _column(rows, "radius_arcsec").astype(float), _column(rows, "score").astype(float)
    clear = np.asarray(truth["clear"], bool)
    coverage = sky_coverage(lon, lat, radius, np.asarray(truth["glon"], float), np.asarray(truth["glat"], float),
                            np.asarray(truth["radius_arcsec"], float))

    def figures(selected: np.ndarray) -> dict[str, Any]:
        return _figures(count_covered(coverage[selected], clear), count_covered(coverage[selected][:, ~clear], clear[~clear]))

    threshold = float(info["score_threshold"])
    return {
        "truth": len(truth), "truth_clear": int(clear.sum()), **figures(np.ones(len(rows), bool)),
        "score_threshold": threshold, "at_threshold": figures(score >= threshold),
        "fields": len(info["fields"]), "rows_ignored": int(n_rows - len(rows)),
        "hit_rule": f"detection box covers >= {HIT_COVERAGE:.3f} of the truth box (centre +- {BOX_SCALE} radius), on the sky",
    }
