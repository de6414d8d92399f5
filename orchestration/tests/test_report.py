"""The night's report as markdown and as one self-contained HTML page (rendered from its template, checked in Chromium)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.wcs import WCS
from PIL import Image

from nightshift.orchestration.report import (NightSummary, TaskSummary, add_scores, overlay_png, render_html, render_markdown,
                                             sky_plot_png)

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


_COMPLETE = dataclasses.replace(
    _SUMMARY, complete=True, run_id="r1", run_prefix="runs/2026-04-05/r1",
    tasks=(TaskSummary(task="clusters", endpoints=("clusters",), model="unet:1", tiles=9, rows=5, known=3, calls=3,
                       catalogue_keys=("runs/2026-04-05/r1/catalogues/clusters.fits", "runs/2026-04-05/r1/catalogues/clusters.ecsv")),),
)


def _stamp() -> bytes:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [30.0, 0.0], [16.5, 16.5], [-1 / 3600, 1 / 3600]
    yy, xx = np.mgrid[:32, :32]
    image = np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / 40.0).astype(np.float32)
    return overlay_png("clusters", [(image, wcs, [{"glon": 30.0, "glat": 0.0, "radius_arcsec": 5.0, "score": 0.9, "known_as": ""}])])


def test_report_links_each_catalogue_relative_to_the_page_and_marks_up_the_status() -> None:
    page = render_html(_COMPLETE, sky_plot_png({}), {"clusters": _PNG})
    # the page is at reports/2026-04-05/a1.html: its links resolve wherever the bucket is served
    assert '<a href="../../runs/2026-04-05/r1/catalogues/clusters.fits">clusters.fits</a>' in page
    assert '<a href="../../runs/2026-04-05/r1/catalogues/clusters.ecsv">clusters.ecsv</a>' in page
    assert "run <code>r1</code> at <code>runs/2026-04-05/r1</code>" in page and "`" not in page


def test_report_escapes_what_the_night_reports() -> None:
    hostile = dataclasses.replace(_SUMMARY, quarantined=(("glimpse/<b>x</b>", "header says <script>alert(1)</script>"),))
    page = render_html(hostile, sky_plot_png({}))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "glimpse/&lt;b&gt;x&lt;/b&gt;" in page


def test_scores_go_into_the_stored_page_once_however_often_they_are_added() -> None:
    page = render_html(_COMPLETE, sky_plot_png({}))
    scored = add_scores(page, {"clusters": {"completeness": 0.91234, "purity": 0.8, "truth": {"clusters": 12}}})
    assert scored.count('id="night-scores"') == 1 and "<td>completeness</td><td class=\"n\">0.912</td>" in scored
    assert "<td>truth.clusters</td>" in scored
    again = add_scores(scored, {"clusters": {"completeness": 0.5}})
    assert again.count('id="night-scores"') == 1 and "0.912" not in again and ">0.5<" in again
    with pytest.raises(ValueError, match="render_html"):
        add_scores("<html></html>", {"clusters": {"completeness": 0.5}})


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (scripts/setup.sh installs it as root)")
def test_report_renders_in_headless_chromium_with_its_tables_links_and_images(tmp_path: Path) -> None:
    page = add_scores(render_html(_COMPLETE, sky_plot_png({"clusters": ((30.0, 31.0), (0.0, 0.5))}), {"clusters": _stamp()}),
                      {"clusters": {"completeness": 0.9}})
    path = tmp_path / "report.html"
    path.write_text(page)
    browser = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for table in ("tasks", "night-scores", "inputs", "quarantined", "skipped", "timings"):
        assert f'id="{table}"' in dom, table
    assert dom.count("<a href=") == 2 and dom.count('src="data:image/png;base64,') == 2

    screenshot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1200,2400", f"--screenshot={screenshot}", path.as_uri()], capture_output=True,
                   timeout=120, check=True)
    pixels = np.asarray(Image.open(screenshot).convert("HSV"))
    # the stamp's colour map and the plot's markers are drawn: many strongly coloured pixels, which text alone never gives
    assert int(((pixels[..., 1] > 120) & (pixels[..., 2] > 80)).sum()) > 5000
