"""The night's report: a Prefect markdown artifact and a self-contained HTML page (one per attempt).

Both say the same things: whether the night completed and where its run is, counts per task (and
how many detections are known in the task's reference catalogues and how many are new), inputs
ingested and quarantined (with the reason), services skipped (with the reason), timings per stage.
The HTML page adds a sky plot of what was found (Mollweide, Galactic; drawn over the night's
HEALPix map when the input is a sky map) and, per task, example tiles with the detections or
measurements drawn over them, embedded as PNGs so the page is one file.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["TaskSummary", "NightSummary", "render_markdown", "render_html", "add_scores", "sky_plot_png", "overlay_png"]


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
    known : int
        Rows with a counterpart in the task's reference catalogues (the other detections are new).
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
    known: int = 0
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
    lines += ["| task | model | tiles | catalogue rows | known | new | Infer calls | status |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for t in summary.tasks:
        lines.append(f"| {t.task} | {t.model} | {t.tiles} | {t.rows} | {t.known} | {t.rows - t.known} | {t.calls} | {t.error or 'ok'} |")
    lines += ["", "## Inputs", ""]
    lines += [f"- {name}: {tiles} tiles" for name, tiles in summary.inputs] or ["- none"]
    lines += ["", "## Quarantined", ""]
    lines += [f"- {name}: {reason}" for name, reason in summary.quarantined] or ["- none"]
    lines += ["", "## Services skipped", ""]
    lines += [f"- {name}: {reason}" for name, reason in summary.skipped_services] or ["- none"]
    lines += ["", "## Timings", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in summary.timings_s.items()]
    return "\n".join(lines) + "\n"


def _png(figure: Any) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def sky_plot_png(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], healpix_map: np.ndarray | None = None) -> bytes:
    """A Mollweide plot in Galactic coordinates of each task's (glon, glat) in degrees, as PNG bytes.

    ``healpix_map`` (Galactic, RING, missing pixels UNSEEN), when the night's input is a sky map,
    is drawn underneath with ``healpy.mollview``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if healpix_map is not None:
        import healpy as hp

        hp.mollview(healpix_map, norm="hist", cmap="Greys", cbar=False, title="Galactic coordinates", badcolor="white")
        figure = plt.gcf()
        hp.graticule(dpar=30, dmer=30, alpha=0.4)
        for lon in (120, 60, 0, 300, 240):
            hp.projtext(lon, 2.0, f"l={lon}°", lonlat=True, fontsize=7, color="dimgray")
        for lat in (-60, -30, 30, 60):
            hp.projtext(178.0, lat, f"b={lat}°", lonlat=True, fontsize=7, color="dimgray", ha="left")
        for task, (glon, glat) in sorted(points.items()):
            hp.projscatter(np.asarray(glon, float), np.asarray(glat, float), lonlat=True, s=10, label=f"{task} ({len(glon)})")
        if points:
            plt.legend(loc="lower right", fontsize=8)
        return _png(figure)
    figure = plt.figure(figsize=(9, 4.8))
    axes = figure.add_subplot(projection="mollweide")
    for task, (glon, glat) in sorted(points.items()):
        lon = np.radians(-((np.asarray(glon, float) + 180.0) % 360.0 - 180.0))  # astronomers' convention: l grows to the left
        axes.scatter(lon, np.radians(np.asarray(glat, float)), s=8, label=f"{task} ({len(lon)})")
    axes.set_xticklabels([f"{d}°" for d in (150, 120, 90, 60, 30, 0, 330, 300, 270, 240, 210)])
    axes.set_xlabel("Galactic longitude l")
    axes.set_ylabel("Galactic latitude b")
    axes.grid(True, alpha=0.4)
    if points:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Galactic coordinates")
    return _png(figure)


_AXIS_LABELS = {"pos.galactic.lon": "Galactic longitude l", "pos.galactic.lat": "Galactic latitude b", "pos.eq.ra": "RA", "pos.eq.dec": "Dec"}


def overlay_png(task: str, examples: Sequence[tuple[np.ndarray, Any, Sequence[Mapping[str, Any]]]]) -> bytes:
    """Example tiles of ``task`` with what was found drawn over them, as one PNG.

    Each example is (first band's pixels (height, width), the tile's celestial WCS or None, the
    catalogue rows of that tile). Detection rows (with ``radius_arcsec``) are circles labelled by
    their known name or score; measurement rows go in the panel's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
    from matplotlib import pyplot as plt
    from matplotlib.patches import Circle

    figure = plt.figure(figsize=(3.6 * len(examples), 3.8))
    for index, (image, wcs, rows) in enumerate(examples):
        axis = figure.add_subplot(1, len(examples), index + 1, projection=wcs)
        finite = np.isfinite(image)
        norm = ImageNormalize(image[finite] if finite.any() else None, interval=PercentileInterval(99.5), stretch=AsinhStretch())
        axis.imshow(np.where(finite, image, np.nan), origin="lower", cmap="magma", norm=norm)
        if finite.sum() > 1 and np.ptp(image[finite]) > 0:  # the brightest structure outlined, as on a finding chart
            levels = np.unique(np.percentile(image[finite], [90.0, 98.0]))
            axis.contour(np.where(finite, image, np.nanmin(image[finite])), levels=levels, colors="white", linewidths=0.5, alpha=0.6)
        if wcs is None:
            axis.set_xticks([])
            axis.set_yticks([])
        else:
            for coordinate in axis.coords:
                coordinate.set_ticklabel(size=6)
                coordinate.set_axislabel(_AXIS_LABELS.get(coordinate.default_label, coordinate.default_label), size=7)
        titles = []
        for row in rows:
            if "radius_arcsec" not in row:  # a measured tile: a column per quantity beside its ``<quantity>_err``
                for quantity in (k for k in row if f"{k}_err" in row):
                    uncertainty = f" ± {row[f'{quantity}_err']:.1f}" if row[f"{quantity}_err"] else ""
                    titles.append(f"{quantity} {row[quantity]:.1f}{uncertainty} (reject {row['reject_probability']:.2f})")
                continue
            if wcs is None:
                continue
            x, y = wcs.world_to_pixel(SkyCoord(row["glon"] * u.deg, row["glat"] * u.deg, frame="galactic"))
            scale = float(np.mean(np.abs(wcs.proj_plane_pixel_scales()[0].to_value(u.arcsec))))
            radius = max(float(row["radius_arcsec"]) / scale, 3.0)
            axis.add_patch(Circle((float(x), float(y)), radius, fill=False, color="cyan", lw=1.2))
            axis.annotate(row["known_as"] or f"{row['score']:.2f}", (float(x), float(y) + radius), color="cyan", fontsize=7,
                          ha="center", va="bottom")
        axis.set_title("\n".join(titles[:2]) or f"{len(rows)} found", fontsize=7)
    figure.suptitle(task, fontsize=10)
    return _png(figure)


_SCORES_MARKER = "<!-- nightshift:scores -->"


@functools.cache
def _templates() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("nightshift.orchestration", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _links(summary: NightSummary, task: TaskSummary) -> list[dict[str, str]]:
    """Each written catalogue file of ``task``, linked relative to the report (so it resolves wherever the bucket is served)."""
    report_dir = posixpath.dirname(summary.report_key)
    return [{"href": posixpath.relpath(key, report_dir), "name": posixpath.basename(key)} for key in task.catalogue_keys if key]


def render_html(summary: NightSummary, sky_png: bytes, overlays: Mapping[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page (the sky plot and each task's example overlays inline)."""
    tasks = [{**dataclasses.asdict(t), "links": _links(summary, t)} for t in summary.tasks]
    return _templates().get_template("report.html.j2").render(
        summary=summary, tasks=tasks, failed=[t.task for t in summary.tasks if t.error],
        sky_png=base64.b64encode(sky_png).decode(),
        overlays=[(task, base64.b64encode(png).decode()) for task, png in sorted((overlays or {}).items())],
        timings=[(stage, f"{seconds:.2f}") for stage, seconds in summary.timings_s.items()],
    )


def add_scores(page: str, scores: Mapping[str, Mapping[str, Any]]) -> str:
    """``page`` (from :func:`render_html`) with a table of each task's scores against a simulated night's truth.

    Scores are known only after the night, where truth exists (the demo), so they go into the stored page afterwards.
    """
    if _SCORES_MARKER not in page:
        raise ValueError("not a page made by render_html")
    figures = {task: [(name, f"{value:.3g}" if isinstance(value, float) else str(value)) for name, value in _flat(score)]
               for task, score in sorted(scores.items())}
    without = re.sub(r'<section id="night-scores">.*?</section>\n', "", page, flags=re.DOTALL)  # scores added before
    section = _templates().get_template("scores.html.j2").render(scores=figures)
    return without.replace(_SCORES_MARKER, f"{_SCORES_MARKER}\n{section}", 1)


def _flat(figures: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested figures as (dotted name, value) pairs, in their order."""
    flat: list[tuple[str, Any]] = []
    for name, value in figures.items():
        if isinstance(value, Mapping):
            flat += _flat(value, f"{prefix}{name}.")
        else:
            flat.append((f"{prefix}{name}", value))
    return flat
