"""The night's report as markdown and as one self-contained HTML page."""

from __future__ import annotations

import healpy as hp
import numpy as np
from astropy.wcs import WCS

from nightshift.orchestration.report import NightSummary, TaskSummary, overlay_png, render_html, render_markdown, sky_plot_png

_PNG = b"\x89PNG"
_SUMMARY = NightSummary(
    night="2026-04-05", attempt="a1", complete=False, run_id="", run_prefix="", report_key="reports/2026-04-05/a1.html",
    inputs=(("glimpse/l030", 9),), quarantined=(("glimpse/l031", "not a readable FITS file"),),
    skipped_services=(("ghosts", "not installed here"),),
    tasks=(TaskSummary(task="clusters", endpoints=("clusters",), model="unet:1", tiles=9, rows=5, known=3, calls=3),
           TaskSummary(task="bubbles", endpoints=("bubbles",), model="ssd:2", tiles=9, error="UNAVAILABLE")),
    timings_s={"ingest": 1.5}, code_version="git:abc",
)


def test_report_says_what_happened_and_what_did_not() -> None:
    markdown = render_markdown(_SUMMARY)
    assert "INCOMPLETE (bubbles failed)" in markdown
    assert "| clusters | unet:1 | 9 | 5 | 3 | 2 | 3 | ok |" in markdown  # rows, known, new, calls
    assert "- glimpse/l031: not a readable FITS file" in markdown and "- ghosts: not installed here" in markdown
    page = render_html(_SUMMARY, sky_plot_png({"clusters": ((30.0, 31.0), (0.0, 0.5))}), {"clusters": _PNG})
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 2
    assert "not a readable FITS file" in page and "UNAVAILABLE" in page and "<script" not in page


def test_sky_plot_draws_a_healpix_map_under_the_detections() -> None:
    sky = np.full(hp.nside2npix(16), hp.UNSEEN)
    sky[hp.query_disc(16, hp.ang2vec(30.0, 10.0, lonlat=True), np.radians(15))] = 1.0
    with_map = sky_plot_png({"clusters": ((30.0,), (10.0,))}, sky)
    without = sky_plot_png({"clusters": ((30.0,), (10.0,))})
    assert with_map.startswith(_PNG) and without.startswith(_PNG) and with_map != without


def test_overlays_draw_detections_and_measurements_on_their_tiles() -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [30.0, 0.0], [16.5, 16.5], [-1 / 3600, 1 / 3600]
    image = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    image[:4] = np.nan
    detection = {"glon": 30.0, "glat": 0.0, "radius_arcsec": 5.0, "score": 0.9, "known_as": "MWP1G030000+00000"}
    measurement = {"tile_id": "a", "inclination": 61.2, "inclination_err": 2.5, "reject_probability": 0.1}
    empty_detection = overlay_png("bubbles", [(image, wcs, [])])
    drawn = overlay_png("bubbles", [(image, wcs, [detection])])
    assert drawn.startswith(_PNG) and drawn != empty_detection
    assert overlay_png("inclination", [(image, None, [measurement])]).startswith(_PNG)
