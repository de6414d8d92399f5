"""The simulated sky, rendered as a composite, against the three real GLIMPSE/MIPSGAL composites (issue 17 item 3).

Statistics of a composite (display values 0..255, 8 um from green, 24 um from red) at its own pixel
scale, the same for real and simulated ones:

- per band the pixel histogram (256 bins) and its 5/25/50/75/95/99% points;
- point sources: local maxima (3 x 3) more than 5 sigma and 20 display units above a robust background (a 7-pixel
  median filter; sigma = 1.4826 x the median absolute residual, at least 1 display unit, the 8-bit step): their
  number per deg^2 and the quartiles of their peak above the background (photutils is not installed);
- the PSF: the median FWHM of a circular Gaussian (plus a constant) fitted to the 11 x 11 stamps of isolated
  sources (no other source within 6 pixels, 10-250 display units above the background, not saturated);
- the diffuse emission's angular power spectrum: the band with its point sources (as above, grown by 2 pixels) replaced
  by the 7-pixel median, in
  400 x 400 squares, Hann-windowed, azimuthally averaged; the slope of log P against log k over wavelengths
  of 8..100 pixels;
- the fraction of saturated (>= 254) pixels per band;
- the JPEG quality: the quality whose standard quantisation tables (libjpeg, as Pillow writes them) are
  nearest the file's.

The simulated side: default-sky fields (training seed) of a side that covers at least 400 composite
pixels, resampled from 1.2"/px to the real composite's scale and rendered with a
:class:`~nightshift.bubbles.simulate.CompositeLook`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from nightshift.bubbles.config import COMPOSITE_SKY, BubblesConfig, composite_sky_config, data_seeds
from nightshift.bubbles.config import preset as config_preset
from nightshift.bubbles.realdata import load_composites
from nightshift.bubbles.simulate import (CALIBRATED_LOOK, UNCALIBRATED_LOOK, CompositeLook, composite_jpeg, decode_composite,
                                         simulate_field)
from nightshift.bubbles.windows import resize_crop

__all__ = ["PERCENTILES", "PS_WAVELENGTHS_PX", "composite_statistics", "jpeg_quality", "real_statistics", "simulated_statistics",
           "compare", "TOLERANCES", "within_tolerance", "plot_comparison", "calibration_report"]

PERCENTILES = (5, 25, 50, 75, 95, 99)
PS_WAVELENGTHS_PX = (8.0, 100.0)
"""Wavelengths, in composite pixels, over which the diffuse power spectrum's slope is fitted."""
_SQUARE = 400
_NSIGMA = 5.0
_MIN_PEAK = 20.0
"""Display units a source must rise above the background: fainter maxima are JPEG blocks and noise as often as stars."""
_BAND_NAMES = ("8um", "24um")


def jpeg_quality(jpeg: bytes) -> int:
    """The libjpeg quality (1..100) whose quantisation tables are nearest (sum of squares) those of ``jpeg``."""
    from PIL import Image

    tables = Image.open(io.BytesIO(jpeg)).quantization
    wanted = np.concatenate([np.asarray(tables[k], float) for k in sorted(tables)])
    return int(np.argmin([np.sum((_standard_tables(q)[:wanted.size] - wanted) ** 2) for q in range(1, 101)]) + 1)


@functools.lru_cache(maxsize=None)
def _standard_tables(quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG", quality=quality)
    tables = Image.open(buffer).quantization
    return np.concatenate([np.asarray(tables[k], float) for k in sorted(tables)])


@dataclasses.dataclass(frozen=True)
class _Background:
    """A band's robust background (7-pixel median), the residual above it and its noise sigma (MAD, at least 1 display unit)."""

    median: np.ndarray
    residual: np.ndarray
    sigma: float

    @classmethod
    def of(cls, band: np.ndarray) -> _Background:
        median = ndimage.median_filter(band, 7)
        residual = band - median
        return cls(median, residual, max(1.4826 * float(np.median(np.abs(residual - np.median(residual)))), 1.0))

    def sources(self) -> np.ndarray:
        """Pixels more than 5 sigma and 20 display units above the background."""
        return self.residual > max(_NSIGMA * self.sigma, _MIN_PEAK)


def _point_sources(band: np.ndarray, background: _Background | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(rows, columns, peak above background, sigma) of the local maxima 5 sigma above a robust background."""
    background = background or _Background.of(band)
    residual = background.residual
    peaks = (residual == ndimage.maximum_filter(residual, 3)) & background.sources()
    peaks[:5, :] = peaks[-5:, :] = peaks[:, :5] = peaks[:, -5:] = False
    rows, cols = np.nonzero(peaks)
    return rows, cols, residual[rows, cols], background.sigma


def _gaussian(coords, amplitude, x0, y0, sigma, background):
    x, y = coords
    return amplitude * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma**2) + background


def _psf_fwhm(band: np.ndarray, rows: np.ndarray, cols: np.ndarray, peaks: np.ndarray, sigma: float, limit: int = 60) -> float:
    """Median FWHM in pixels of circular Gaussians fitted to isolated, unsaturated sources (NaN without any)."""
    if len(rows) == 0:
        return float("nan")
    distance = np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])
    np.fill_diagonal(distance, np.inf)
    isolated = (distance.min(axis=1) > 6) & (peaks > max(10 * sigma, 1.5 * _MIN_PEAK)) & (band[rows, cols] < 250)
    order = np.argsort(-peaks * isolated)[:min(limit, int(isolated.sum()))]
    yy, xx = np.mgrid[-5:6, -5:6].astype(float)
    widths = []
    for k in order:
        r, c = rows[k], cols[k]
        stamp = band[r - 5:r + 6, c - 5:c + 6]
        try:
            with warnings.catch_warnings():  # a fit without a covariance still gives its width
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                fit, _ = optimize.curve_fit(_gaussian, (xx.ravel(), yy.ravel()), stamp.ravel(),
                                            p0=(peaks[k], 0.0, 0.0, 1.0, float(np.median(stamp))), maxfev=2000)
        except RuntimeError:
            continue
        if 0.3 < abs(fit[3]) < 5.0 and np.hypot(fit[1], fit[2]) < 1.5:
            widths.append(2.3548 * abs(fit[3]))
    return float(np.median(widths)) if widths else float("nan")


def _power_spectrum(band: np.ndarray, background: _Background | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(k in cycles/pixel, azimuthally averaged power normalised to unit variance) of the diffuse band, over 400 px squares."""
    background = background or _Background.of(band)
    sources = ndimage.binary_dilation(background.sources(), iterations=2)
    diffuse = np.where(sources, background.median, band)  # point sources replaced by the local median, the rest untouched
    bins = np.geomspace(1.0 / 200.0, 0.5, 25)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(_SQUARE), np.fft.fftfreq(_SQUARE), indexing="ij"))
    window = np.outer(np.hanning(_SQUARE), np.hanning(_SQUARE))
    spectra = []
    for y in range(0, diffuse.shape[0] - _SQUARE + 1, _SQUARE):
        for x in range(0, diffuse.shape[1] - _SQUARE + 1, _SQUARE):
            square = diffuse[y:y + _SQUARE, x:x + _SQUARE]
            power = np.abs(np.fft.fft2((square - square.mean()) * window)) ** 2
            spectra.append(power / max(power.sum(), 1e-12))
    power = np.mean(spectra, axis=0)
    index = np.digitize(k.ravel(), bins)
    centres = np.sqrt(bins[1:] * bins[:-1])
    mean = np.array([power.ravel()[index == i].mean() if np.any(index == i) else np.nan for i in range(1, len(bins))])
    return centres, mean


def _slope(k: np.ndarray, power: np.ndarray) -> float:
    fit = (k >= 1.0 / PS_WAVELENGTHS_PX[1]) & (k <= 1.0 / PS_WAVELENGTHS_PX[0]) & np.isfinite(power) & (power > 0)
    return float(np.polyfit(np.log10(k[fit]), np.log10(power[fit]), 1)[0])


def composite_statistics(pixels: np.ndarray, scale_arcsec: float, jpeg: bytes) -> dict[str, Any]:
    """The statistics above of one composite: display values (2, H, W) (8 um, 24 um), its scale, its JPEG bytes."""
    area_deg2 = pixels.shape[1] * pixels.shape[2] * (scale_arcsec / 3600.0) ** 2
    figures: dict[str, Any] = {"scale_arcsec": scale_arcsec, "shape": list(pixels.shape[1:]), "jpeg_quality": jpeg_quality(jpeg)}
    for name, band in zip(_BAND_NAMES, pixels.astype(np.float64)):
        background = _Background.of(band)  # one median filter for the sources and the diffuse spectrum
        rows, cols, peaks, sigma = _point_sources(band, background)
        k, power = _power_spectrum(band, background)
        figures[name] = {
            "percentiles": dict(zip(map(str, PERCENTILES), np.percentile(band, PERCENTILES).round(1).tolist())),
            "histogram": np.histogram(band, bins=256, range=(-0.5, 255.5), density=True)[0].tolist(),
            "sources_per_deg2": len(rows) / area_deg2,
            "source_peak_quartiles": np.percentile(peaks, [25, 50, 75]).round(1).tolist() if len(peaks) else [np.nan] * 3,
            "noise_sigma": sigma,
            "psf_fwhm_px": _psf_fwhm(band, rows, cols, peaks, sigma),
            "power_k": k.tolist(), "power": power.tolist(), "power_slope": _slope(k, power),
            "saturated_fraction": float(np.mean(band >= 254)),
        }
    return figures


def real_statistics(real_dir: Path) -> dict[str, dict[str, Any]]:
    """:func:`composite_statistics` of every real composite in ``real_dir``, by file name."""
    return {field.name: composite_statistics(field.pixels, abs(field.header["CDELT2"]) * 3600.0, (real_dir / field.name).read_bytes())
            for field in load_composites(real_dir)}


def simulated_statistics(config: BubblesConfig, look: CompositeLook, scale_arcsec: float, *, count: int,
                         seed: int = 7) -> list[dict[str, Any]]:
    """:func:`composite_statistics` of ``count`` simulated training fields rendered with ``look`` at ``scale_arcsec``."""
    composite_px = max(_SQUARE, int(round(config.field_px * config.pixel_scale_arcsec / scale_arcsec)))
    field_px = int(np.ceil(composite_px * scale_arcsec / config.pixel_scale_arcsec))
    sky = dataclasses.replace(config, field_px=field_px, window_px=(min(config.window_px[0], field_px),))
    rng = np.random.default_rng([seed, 17])
    figures = []
    for index in range(count):
        field = simulate_field(sky, data_seeds(seed)["train"], index)
        jpeg = composite_jpeg(resize_crop(field.pixels, composite_px), rng, look)
        figures.append(composite_statistics(decode_composite(jpeg), field_px * config.pixel_scale_arcsec / composite_px, jpeg))
    return figures


def _scalar(figures: dict[str, Any]) -> dict[str, float]:
    """The compared numbers of one composite's statistics."""
    out = {"jpeg_quality": float(figures["jpeg_quality"])}
    for name in _BAND_NAMES:
        band = figures[name]
        out.update({f"{name}_p{p}": band["percentiles"][str(p)] for p in (50, 95, 99)})
        out.update({f"{name}_sources_per_deg2": band["sources_per_deg2"], f"{name}_source_peak_median": band["source_peak_quartiles"][1],
                    f"{name}_psf_fwhm_px": band["psf_fwhm_px"], f"{name}_power_slope": band["power_slope"],
                    f"{name}_saturated_fraction": band["saturated_fraction"]})
    return out


TOLERANCES: dict[str, tuple[str, float]] = {
    "jpeg_quality": ("absolute", 5.0),
    **{f"{b}_p{p}": ("absolute", t) for b in _BAND_NAMES for p, t in ((50, 12.0), (95, 25.0), (99, 35.0))},
    **{f"{b}_sources_per_deg2": ("ratio", 1.6) for b in _BAND_NAMES},
    **{f"{b}_source_peak_median": ("ratio", 1.6) for b in _BAND_NAMES},
    **{f"{b}_psf_fwhm_px": ("ratio", 1.3) for b in _BAND_NAMES},
    **{f"{b}_power_slope": ("absolute", 0.4) for b in _BAND_NAMES},
    **{f"{b}_saturated_fraction": ("absolute", 0.003) for b in _BAND_NAMES},
}
"""How far a simulated statistic (mean over the fields) may be from the real composite's: an absolute difference or a
ratio (either way). Display percentiles in display units (0..255); a composite's three fields differ by more than these."""


def within_tolerance(key: str, real: float, simulated: float) -> bool:
    """Whether ``simulated`` is within :data:`TOLERANCES` of ``real`` for the statistic ``key``."""
    kind, tolerance = TOLERANCES[key]
    if not (np.isfinite(real) and np.isfinite(simulated)):
        return False
    if kind == "absolute":
        return abs(simulated - real) <= tolerance
    return max(real, simulated) <= tolerance * max(min(real, simulated), 1e-9)


def _row(key: str, real: float, values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else float("nan")
    return {"real": round(real, 4), "simulated": round(mean, 4), "simulated_std": round(float(finite.std()), 4) if finite.size else None,
            "within": within_tolerance(key, real, mean)}


def compare(real: dict[str, dict[str, Any]], simulated: dict[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Real against simulated per field (``fields``) and over the three (``mean``: the fields' real values averaged against the
    simulated fields' values averaged per real field, then over fields); each statistic's real value, simulated mean and
    spread over simulated fields, and whether it is within :data:`TOLERANCES`."""
    fields = {}
    real_values = {name: _scalar(stats) for name, stats in real.items()}
    simulated_means = {}
    for name, values in real_values.items():
        rows = [_scalar(s) for s in simulated[name]]
        fields[name] = {key: _row(key, value, np.array([r[key] for r in rows], float)) for key, value in values.items()}
        simulated_means[name] = {key: row["simulated"] for key, row in fields[name].items()}
    keys = next(iter(real_values.values()))
    mean = {key: _row(key, float(np.nanmean([v[key] for v in real_values.values()])),
                      np.array([m[key] for m in simulated_means.values()], float)) for key in keys}
    for row in mean.values():
        row["simulated_std"] = None
    return {"mean": mean, "fields": fields, "within": sum(r["within"] for r in mean.values()), "statistics": len(mean)}


def plot_comparison(real: dict[str, dict[str, Any]], before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]],
                    path: Path) -> Path:
    """Per real field and band: the pixel histograms and the diffuse power spectra, real against simulated before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(real), 4, figsize=(16, 3.2 * len(real)), squeeze=False)
    for row, (name, stats) in enumerate(real.items()):
        for b, band in enumerate(_BAND_NAMES):
            hist_axis, power_axis = axes[row, 2 * b], axes[row, 2 * b + 1]
            for label, sets, style in (("real", [stats], "k-"), ("simulated before", before[name], "r--"),
                                       ("simulated after", after[name], "b-")):
                histogram = np.mean([s[band]["histogram"] for s in sets], axis=0)
                hist_axis.semilogy(np.arange(256), np.maximum(histogram, 1e-6), style, lw=1, label=label)
                power = np.mean([s[band]["power"] for s in sets], axis=0)
                k = np.asarray(sets[0][band]["power_k"]) / (stats["scale_arcsec"] / 60.0)  # cycles per arcmin
                power_axis.loglog(k, power, style, lw=1, label=label)
            hist_axis.set(title=f"{name[:16]} {band}: pixel histogram", xlabel="display value", ylim=(1e-6, 1))
            power_axis.set(title=f"{band}: diffuse power ({stats['scale_arcsec']:.2f}\"/px)", xlabel="k (cycles/arcmin)")
            hist_axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def calibration_report(real_dir: Path, output: Path, *, count: int, seed: int = 7) -> dict[str, Any]:
    """The real composites against the simulated sky rendered as them, before (the default sky, :data:`UNCALIBRATED_LOOK`) and
    after (:data:`~nightshift.bubbles.config.COMPOSITE_SKY`, :data:`CALIBRATED_LOOK`) the calibration; writes ``calibration.png``.

    Returns the comparison (``before``, ``after``: :func:`compare`) without the histograms and spectra (in the figure).
    """
    real = real_statistics(real_dir)
    config = config_preset("default")
    before = {name: simulated_statistics(config, UNCALIBRATED_LOOK, stats["scale_arcsec"], count=count, seed=seed)
              for name, stats in real.items()}
    after = {name: simulated_statistics(composite_sky_config(config), CALIBRATED_LOOK, stats["scale_arcsec"], count=count, seed=seed)
             for name, stats in real.items()}
    figure = plot_comparison(real, before, after, output / "calibration.png")
    return {"before": compare(real, before), "after": compare(real, after), "simulated_fields_per_composite": count, "seed": seed,
            "scales_arcsec": {name: round(stats["scale_arcsec"], 4) for name, stats in real.items()},
            "sky_after": {k: list(v) if isinstance(v, tuple) else v for k, v in COMPOSITE_SKY.items()},
            "look_before": dataclasses.asdict(UNCALIBRATED_LOOK), "look_after": dataclasses.asdict(CALIBRATED_LOOK),
            "tolerances": {k: list(v) for k, v in TOLERANCES.items()}, "plot": str(figure)}

