"""The night's report: a Prefect markdown artifact and a self-contained HTML page (one per attempt).

Both say the same things: whether the night completed and where its run is, counts per task,
inputs ingested and quarantined (with the reason), services skipped (with the reason), timings per
stage. The HTML page adds a sky plot of what was found (Mollweide, Galactic), embedded as a PNG so
the page is one file.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["TaskSummary", "NightSummary", "render_markdown", "render_html", "sky_plot_png"]


@dataclasses.dataclass(frozen=True)
class TaskSummary:
    """One task's night.

    Attributes
    ----------
    task : str
        Task name.
    endpoints : tuple of str
        Services that served it.
    model : str
        ``name:version`` of the model used.
    tiles : int
        Tiles sent (or whose results were already recorded).
    rows : int
        Catalogue rows (merged detections, or tile measurements).
    calls : int
        Infer calls made by this attempt (0 when every result was already recorded).
    catalogue_keys : tuple of str
        Object keys of the catalogue files ("" entries when not written).
    error : str
        Why the task did not complete ("" when it did).
    """

    task: str
    endpoints: tuple[str, ...]
    model: str
    tiles: int
    rows: int = 0
    calls: int = 0
    catalogue_keys: tuple[str, ...] = ()
    error: str = ""


@dataclasses.dataclass(frozen=True)
class NightSummary:
    """What one attempt of a night did (the report's content and the demo's JSON line)."""

    night: str
    attempt: str
    complete: bool
    run_id: str
    run_prefix: str
    report_key: str
    inputs: tuple[tuple[str, int], ...]
    quarantined: tuple[tuple[str, str], ...]
    skipped_services: tuple[tuple[str, str], ...]
    tasks: tuple[TaskSummary, ...]
    timings_s: Mapping[str, float]
    code_version: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of the summary."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _status(summary: NightSummary) -> str:
    if summary.complete:
        return f"complete: run `{summary.run_id}` at `{summary.run_prefix}`"
    failed = [t.task for t in summary.tasks if t.error]
    return f"INCOMPLETE ({', '.join(failed)} failed): re-run the night to resume; the latest run did not move"


def render_markdown(summary: NightSummary) -> str:
    """The report as markdown (the Prefect artifact)."""
    lines = [f"# Night {summary.night}", "", f"**{_status(summary)}** (attempt {summary.attempt}, code {summary.code_version})", ""]
    lines += ["| task | model | tiles | catalogue rows | Infer calls | status |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for t in summary.tasks:
        lines.append(f"| {t.task} | {t.model} | {t.tiles} | {t.rows} | {t.calls} | {t.error or 'ok'} |")
    lines += ["", "## Inputs", ""]
    lines += [f"- {name}: {tiles} tiles" for name, tiles in summary.inputs] or ["- none"]
    lines += ["", "## Quarantined", ""]
    lines += [f"- {name}: {reason}" for name, reason in summary.quarantined] or ["- none"]
    lines += ["", "## Services skipped", ""]
    lines += [f"- {name}: {reason}" for name, reason in summary.skipped_services] or ["- none"]
    lines += ["", "## Timings", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in summary.timings_s.items()]
    return "\n".join(lines) + "\n"


def sky_plot_png(points: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> bytes:
    """A Mollweide plot in Galactic coordinates of each task's (glon, glat) in degrees, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=(9, 4.8))
    axes = figure.add_subplot(projection="mollweide")
    for task, (glon, glat) in sorted(points.items()):
        lon = np.radians(-((np.asarray(glon, float) + 180.0) % 360.0 - 180.0))  # astronomers' convention: l grows to the left
        axes.scatter(lon, np.radians(np.asarray(glat, float)), s=8, label=f"{task} ({len(lon)})")
    axes.set_xticklabels([f"{d}°" for d in (150, 120, 90, 60, 30, 0, 330, 300, 270, 240, 210)])
    axes.grid(True, alpha=0.4)
    if points:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Galactic coordinates")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>none</p>"


def render_html(summary: NightSummary, sky_png: bytes) -> str:
    """The report as one self-contained HTML page (the sky plot inline)."""
    image = base64.b64encode(sky_png).decode()
    tasks = [(t.task, t.model, ", ".join(t.endpoints), t.tiles, t.rows, t.calls, t.error or "ok", " ".join(t.catalogue_keys))
             for t in summary.tasks]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Nightshift night {html.escape(summary.night)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #bbb;padding:.2em .6em;text-align:left}}.bad{{color:#b00}}</style></head><body>
<h1>Night {html.escape(summary.night)}</h1>
<p class="{'' if summary.complete else 'bad'}"><b>{html.escape(_status(summary))}</b><br>
attempt {html.escape(summary.attempt)}, code {html.escape(summary.code_version)}</p>
<h2>Tasks</h2>{_table(("task", "model", "services", "tiles", "catalogue rows", "Infer calls", "status", "catalogue"), tasks)}
<h2>Sky</h2><img alt="sky plot of the night's catalogue positions" src="data:image/png;base64,{image}">
<h2>Inputs</h2>{_table(("input", "tiles"), summary.inputs)}
<h2>Quarantined</h2>{_table(("input", "reason"), summary.quarantined)}
<h2>Services skipped</h2>{_table(("service", "reason"), summary.skipped_services)}
<h2>Timings</h2>{_table(("stage", "seconds"), [(k, f"{v:.2f}") for k, v in summary.timings_s.items()])}
</body></html>
"""
