"""The night's report as markdown and as one self-contained HTML page."""

from __future__ import annotations

from nightshift.orchestration.report import NightSummary, TaskSummary, render_html, render_markdown, sky_plot_png

_SUMMARY = NightSummary(
    night="2026-04-05", attempt="a1", complete=False, run_id="", run_prefix="", report_key="reports/2026-04-05/a1.html",
    inputs=(("glimpse/l030", 9),), quarantined=(("glimpse/l031", "not a readable FITS file"),),
    skipped_services=(("ghosts", "not installed here"),),
    tasks=(TaskSummary(task="tilestats", endpoints=("tilestats-glimpse",), model="tilestats-robust:1", tiles=9, rows=54, calls=3),
           TaskSummary(task="bubbles", endpoints=("bubbles",), model="ssd:2", tiles=9, error="UNAVAILABLE")),
    timings_s={"ingest": 1.5}, code_version="git:abc",
)


def test_report_says_what_happened_and_what_did_not() -> None:
    markdown = render_markdown(_SUMMARY)
    assert "INCOMPLETE (bubbles failed)" in markdown
    assert "| tilestats | tilestats-robust:1 | 9 | 54 | 3 | ok |" in markdown
    assert "- glimpse/l031: not a readable FITS file" in markdown and "- ghosts: not installed here" in markdown
    page = render_html(_SUMMARY, sky_plot_png({"tilestats": ((30.0, 31.0), (0.0, 0.5))}))
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64,iVBOR" in page
    assert "not a readable FITS file" in page and "UNAVAILABLE" in page and "<script" not in page
