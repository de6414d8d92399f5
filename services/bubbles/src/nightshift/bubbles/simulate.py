"""A simulated Galactic plane in Spitzer 8 um and 24 um with infrared bubbles and their truth.

Square fields at the GLIMPSE/MIPSGAL mosaic scale (1.2"/pixel) with a Galactic plate-carree WCS,
intensities in MJy/sr. Per field (all amplitudes relative to the field's 8 um and 24 um diffuse
levels ``A8``, ``A24``):

- diffuse ISM: log-normal ``A exp(s g - s^2 / 2)`` of a unit Gaussian random field ``g`` with power
  spectrum P(k) ~ k^-3; at 24 um a partly correlated field smoothed to the 24 um beam;
- stars: point sources with each band's Gaussian PSF (8 um FWHM 1.98", 24 um 6"), many at 8 um
  (8 per arcmin^2), few at 24 um (0.5 per arcmin^2), log-uniform peaks;
- bubbles: an elliptical PAH shell at 8 um (Gaussian radial profile, lumpy in azimuth), a full ring
  or a broken arc; radius (semi-major axis) from the log-normal fitted to the MWP DR1 large bubbles,
  axis ratio and thickness from that catalogue's quantiles (:data:`MWP_SHELLS`); "clear" bubbles have
  warm dust at 24 um filling the shell;
- confusers named by the paper: compact HII regions (bright in both bands), isolated bright 24 um
  sources with the MIPS PSF's first Airy ring, 8 um filaments, partial arcs without 24 um;
- Gaussian noise.

Seeded and reproducible: field ``index`` of ``seed`` is the same on every machine. The shell statistics
are embedded, so nothing here needs the shared data; :func:`fit_shell_statistics` refits them from
the MWP DR1 CSV.

References
----------
Simpson et al. 2012, MNRAS 424, 2442 (Milky Way Project DR1); Churchwell et al. 2006, ApJ 649, 759.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from nightshift.bubbles.config import BAND_FWHM_ARCSEC, BAND_WAVELENGTH_UM, BANDS, IMAGE_SIZE, BubblesConfig
from nightshift.bubbles.infer import BOX_SCALE
from nightshift.bubbles.windows import car_header, plan_windows, resize_crop, window_header

__all__ = ["ShellStatistics", "MWP_SHELLS", "QUANTILE_LEVELS", "fit_shell_statistics", "BubbleTruth", "Field",
           "simulate_field", "simulate_fields", "band_hdus", "field_tiles", "CompositeLook", "UNCALIBRATED_LOOK", "CALIBRATED_LOOK",
           "composite_jpeg", "decode_composite", "render_as_composite"]

QUANTILE_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""Levels of the embedded shell quantiles (the MWP DR1 deciles with the 5% and 95% ends)."""
_RADIUS_RANGE_ARCSEC = (14.0, 240.0)
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclasses.dataclass(frozen=True)
class ShellStatistics:
    """Shape statistics of catalogued bubbles.

    Parameters
    ----------
    log_radius_mean, log_radius_sigma : float
        Mean and standard deviation of ln(semi-major axis / arcsec).
    thickness_quantiles : tuple of float
        Shell thickness / semi-major axis at :data:`QUANTILE_LEVELS`.
    axis_ratio_quantiles : tuple of float
        Semi-minor / semi-major axis at :data:`QUANTILE_LEVELS`.
    """

    log_radius_mean: float
    log_radius_sigma: float
    thickness_quantiles: tuple[float, ...]
    axis_ratio_quantiles: tuple[float, ...]


MWP_SHELLS = ShellStatistics(
    log_radius_mean=3.8646, log_radius_sigma=0.7622,
    thickness_quantiles=(0.341, 0.389, 0.449, 0.502, 0.546, 0.59, 0.636, 0.687, 0.75, 0.846, 0.958),
    axis_ratio_quantiles=(0.771, 0.832, 0.89, 0.92, 0.94, 0.955, 0.968, 0.978, 0.987, 0.995, 0.998),
)
"""The MWP DR1 large bubbles (3744): the radius log-normal and the thickness and axis-ratio quantiles."""


def fit_shell_statistics(catalogue_csv: Path) -> ShellStatistics:
    """Fit :class:`ShellStatistics` to an MWP DR1 CSV (``semi_major``, ``semi_minor``, ``thickness`` in degrees).

    Rounded as :data:`MWP_SHELLS` is embedded: 4 decimals for the log-normal, 3 for the quantiles.
    """
    with open(catalogue_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    major = np.array([float(r["semi_major"]) for r in rows]) * 3600.0
    minor = np.array([float(r["semi_minor"]) for r in rows]) * 3600.0
    thickness = np.array([float(r["thickness"]) for r in rows]) * 3600.0
    log_radius = np.log(major)

    def quantiles(values: np.ndarray) -> tuple[float, ...]:
        return tuple(round(float(q), 3) for q in np.quantile(values, QUANTILE_LEVELS))

    return ShellStatistics(round(float(log_radius.mean()), 4), round(float(log_radius.std(ddof=1)), 4),
                           quantiles(thickness / major), quantiles(np.minimum(minor / major, 1.0)))


@dataclasses.dataclass(frozen=True)
class BubbleTruth:
    """A simulated bubble.

    Parameters
    ----------
    x_px, y_px : float
        Centre, 0-based column and row of the field (pixel centres at integers).
    radius_px : float
        Semi-major axis of the shell's ridge, in field pixels.
    radius_arcsec : float
        The same in arcsec.
    glon_deg, glat_deg : float
        Galactic longitude and latitude of the centre, in degrees (from the field's WCS).
    clear : bool
        24 um warm dust inside the 8 um shell (the paper's "clear" bubbles).
    axis_ratio : float
        Semi-minor / semi-major axis.
    angle_deg : float
        Position angle of the major axis from the +x axis, in degrees.
    thickness_px : float
        Shell thickness (MWP definition), in field pixels.
    coverage : float
        Fraction of the circumference the 8 um shell covers (1 for a full ring).
    contrast : float
        Peak of the 8 um shell in units of the field's diffuse 8 um level (NaN where unknown).
    """

    x_px: float
    y_px: float
    radius_px: float
    radius_arcsec: float
    glon_deg: float
    glat_deg: float
    clear: bool
    axis_ratio: float
    angle_deg: float
    thickness_px: float
    coverage: float
    contrast: float

    def box(self, scale: float = BOX_SCALE) -> tuple[float, float, float, float]:
        """The truth box ``[x_min, y_min, x_max, y_max]`` in field pixels: centre +- ``scale`` x radius."""
        half = scale * self.radius_px
        return self.x_px - half, self.y_px - half, self.x_px + half, self.y_px + half


@dataclasses.dataclass(frozen=True)
class Field:
    """A simulated field: pixels (2, H, W) float32 in MJy/sr (8 um, 24 um), its Galactic CAR header, its bubbles."""

    name: str
    pixels: np.ndarray
    header: fits.Header
    bubbles: tuple[BubbleTruth, ...]

    @functools.cached_property
    def wcs(self) -> WCS:
        """The field's celestial WCS."""
        return WCS(self.header)


def _random_field(rng: np.random.Generator, size: int, slope: float = 3.0) -> np.ndarray:
    """A unit-variance Gaussian random field of ``size`` x ``size`` pixels with P(k) ~ k^-slope."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij"))
    k[0, 0] = np.inf
    spectrum = (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) * k ** (-slope / 2.0)
    values = np.fft.irfft2(spectrum, s=(size, size))
    return (values - values.mean()) / values.std()


def _point_sources(rng: np.random.Generator, size: int, count: int, peak_range: tuple[float, float], fwhm_px: float) -> np.ndarray:
    """``count`` point sources at random positions with log-uniform peaks, convolved with a Gaussian PSF."""
    sigma = fwhm_px * _FWHM_TO_SIGMA
    image = np.zeros((size, size))
    ys, xs = rng.integers(0, size, (2, count))
    peaks = np.exp(rng.uniform(*np.log(peak_range), count))
    np.add.at(image, (ys, xs), peaks * 2.0 * np.pi * sigma**2)  # a normalised Gaussian of this flux has this peak
    return ndimage.gaussian_filter(image, sigma)


def _stamp(image: np.ndarray, x: float, y: float, reach: float, profile) -> None:
    """Add ``profile(dx, dy)`` (offsets in pixels from (x, y)) to ``image`` within ``reach`` pixels."""
    size = image.shape[0]
    x0, x1 = max(0, int(x - reach)), min(size, int(x + reach) + 2)
    y0, y1 = max(0, int(y - reach)), min(size, int(y + reach) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    image[y0:y1, x0:x1] += profile(xx - x, yy - y)


def _shell(rng: np.random.Generator, radius_px: float, axis_ratio: float, angle: float, width_px: float, peak: float,
           coverage: float):
    """Profile of an elliptical shell of ridge semi-major ``radius_px``, Gaussian across (sigma ``width_px``).

    Lumpy in azimuth (a few random harmonics); a broken arc keeps ``coverage`` of the circumference
    with soft ends.
    """
    harmonics = rng.normal(0.0, 0.25, 4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    gap_centre = rng.uniform(0, 2 * np.pi)

    def profile(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        rho = np.hypot(u, v / axis_ratio)
        phi = np.arctan2(v / axis_ratio, u)
        lumps = 1.0 + sum(h * np.cos((m + 2) * phi + p) for m, (h, p) in enumerate(zip(harmonics, phases)))
        shape = np.clip(lumps, 0.3, None) * np.exp(-0.5 * ((rho - radius_px) / width_px) ** 2)
        if coverage < 1.0:
            distance = np.abs((phi - gap_centre + np.pi) % (2 * np.pi) - np.pi)  # 0 at the gap's centre
            half_gap = np.pi * (1.0 - coverage)
            shape = shape * np.clip((distance - half_gap) / 0.3 + 0.5, 0.0, 1.0)
        return peak * shape

    return profile


def _gaussian(peak: float, sigma_px: float):
    return lambda dx, dy: peak * np.exp(-0.5 * (dx**2 + dy**2) / sigma_px**2)


def _draw_radius_arcsec(rng: np.random.Generator, high_arcsec: float) -> float:
    """A radius from the MWP log-normal truncated to 14"..min(240", ``high_arcsec``), in arcsec."""
    high = min(_RADIUS_RANGE_ARCSEC[1], high_arcsec)
    while True:
        radius = float(np.exp(rng.normal(MWP_SHELLS.log_radius_mean, MWP_SHELLS.log_radius_sigma)))
        if _RADIUS_RANGE_ARCSEC[0] <= radius <= high:
            return radius


def _quantile_draw(rng: np.random.Generator, quantiles: tuple[float, ...]) -> float:
    """A draw from the distribution with these quantiles at :data:`QUANTILE_LEVELS` (clamped to the ends)."""
    return float(np.interp(rng.uniform(), QUANTILE_LEVELS, quantiles))


def _filament(rng: np.random.Generator, size: int, peak: float) -> np.ndarray:
    """A curved 8 um ridge 80..460 pixels long, 1.5..4 pixels wide (sigma)."""
    length = rng.uniform(80, 460)
    start = rng.uniform(0, size, 2)
    heading = rng.uniform(0, 2 * np.pi)
    curvature = rng.normal(0, 1.5 / length)
    steps = np.arange(0, length, 0.5)
    angles = heading + curvature * steps
    xs = start[0] + np.cumsum(0.5 * np.cos(angles))
    ys = start[1] + np.cumsum(0.5 * np.sin(angles))
    inside = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    image = np.zeros((size, size))
    np.add.at(image, (ys[inside].astype(int), xs[inside].astype(int)), 0.5)
    sigma = rng.uniform(1.5, 4.0)
    return peak * np.sqrt(2 * np.pi) * sigma * ndimage.gaussian_filter(image, sigma)


def _place(rng: np.random.Generator, size: int, radius_px: float, taken: list[tuple[float, float, float]],
           separation: float) -> tuple[float, float]:
    """A centre with the whole shell inside the field, ``separation`` x the radii apart from earlier bubbles where possible."""
    for _ in range(50):
        x, y = rng.uniform(radius_px, size - 1 - radius_px, 2)
        if all(np.hypot(x - tx, y - ty) > separation * (radius_px + tr) for tx, ty, tr in taken):
            break
    return float(x), float(y)


def simulate_field(config: BubblesConfig, seed: int, index: int) -> Field:
    """Simulate field ``index`` of ``seed``: pixels (2, field_px, field_px) in MJy/sr, WCS and bubble truth.

    Parameters
    ----------
    config : BubblesConfig
        Field size, pixel scale, bubbles per field, clear fraction.
    seed : int
        Simulation seed (see :func:`~nightshift.bubbles.config.data_seeds`).
    index : int
        Field number within the seed.
    """
    rng = np.random.default_rng([seed, index])
    size, scale = config.field_px, config.pixel_scale_arcsec
    glon = float((rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 65.0)) % 360.0)
    glat = float(rng.uniform(-0.8, 0.8))
    header = car_header(glon, glat, (size, size), scale)
    wcs = WCS(header)
    area_arcmin2 = (size * scale / 60.0) ** 2
    fwhm8, fwhm24 = (f / scale for f in BAND_FWHM_ARCSEC)

    level8 = rng.uniform(40.0, 150.0) * np.exp(-abs(glat))
    level24 = rng.uniform(25.0, 90.0) * np.exp(-abs(glat))
    g8, g_other = _random_field(rng, size, config.diffuse_slope), _random_field(rng, size, config.diffuse_slope)
    s8 = rng.uniform(0.3, 0.6)
    band8 = level8 * np.exp(s8 * g8 - s8**2 / 2)
    g24 = ndimage.gaussian_filter(0.8 * g8 + 0.6 * g_other, fwhm24 * _FWHM_TO_SIGMA)
    g24 /= g24.std()
    band24 = level24 * np.exp(0.5 * g24 - 0.125)

    peaks8 = tuple(p * level8 for p in config.star_peak_range_8um)
    band8 += _point_sources(rng, size, rng.poisson(config.star_density[0] * area_arcmin2), peaks8, fwhm8)
    band24 += _point_sources(rng, size, rng.poisson(config.star_density[1] * area_arcmin2), (0.1 * level24, 5 * level24), fwhm24)

    bubbles: list[BubbleTruth] = []
    taken: list[tuple[float, float, float]] = []
    for _ in range(rng.poisson(config.bubbles_per_field)):
        radius_arcsec = _draw_radius_arcsec(rng, size * scale / 4.0)
        radius = radius_arcsec / scale
        axis_ratio = _quantile_draw(rng, MWP_SHELLS.axis_ratio_quantiles)
        thickness = _quantile_draw(rng, MWP_SHELLS.thickness_quantiles) * radius
        angle = float(rng.uniform(0, np.pi))
        coverage = 1.0 if rng.uniform() < 0.5 else float(rng.uniform(0.6, 0.9))
        clear = bool(rng.uniform() < config.clear_fraction)
        x, y = _place(rng, size, radius, taken, config.bubble_separation)
        taken.append((x, y, radius))
        width = max(3.0 / scale, thickness / 2.0) * _FWHM_TO_SIGMA
        contrast = float(rng.uniform(*config.shell_contrast_range))
        _stamp(band8, x, y, radius + 4 * width, _shell(rng, radius, axis_ratio, angle, width, contrast * level8, coverage))
        dust = rng.uniform(*config.clear_dust_range) if clear else rng.uniform(0.0, 0.15)
        _stamp(band24, x, y, 2.5 * radius, _gaussian(dust * level24, 0.45 * radius))
        lon, lat = wcs.pixel_to_world_values(x, y)
        bubbles.append(BubbleTruth(x, y, radius, radius_arcsec, float(lon), float(lat), clear, axis_ratio,
                                   float(np.degrees(angle)), thickness, coverage, contrast))

    for _ in range(rng.poisson(2.0)):  # compact HII regions: bright and compact in both bands
        x, y = rng.uniform(0, size, 2)
        sigma = rng.uniform(2.0, 8.0)
        _stamp(band8, x, y, 4 * sigma, _gaussian(rng.uniform(1.0, 4.0) * level8, sigma))
        _stamp(band24, x, y, 4 * sigma, _gaussian(rng.uniform(2.0, 8.0) * level24, max(sigma, fwhm24 * _FWHM_TO_SIGMA)))
    for _ in range(rng.poisson(2.0)):  # isolated bright sources: 24 um PSF core with its first Airy ring
        x, y = rng.uniform(0, size, 2)
        peak24 = rng.uniform(20.0, 100.0) * level24
        ring = _shell(rng, 9.5 / scale, 1.0, 0.0, 2.0 / scale, 0.03 * peak24, 1.0)
        _stamp(band24, x, y, 16.0 / scale, lambda dx, dy, p=peak24, r=ring: _gaussian(p, fwhm24 * _FWHM_TO_SIGMA)(dx, dy) + r(dx, dy))
        _stamp(band8, x, y, 4 * fwhm8, _gaussian(rng.uniform(2.0, 20.0) * level8, fwhm8 * _FWHM_TO_SIGMA))
    for _ in range(rng.poisson(2.0)):  # filaments at 8 um
        band8 += _filament(rng, size, rng.uniform(0.3, 1.0) * level8)
    for _ in range(rng.poisson(1.5)):  # partial arcs without 24 um
        radius = _draw_radius_arcsec(rng, size * scale / 4.0) / scale
        x, y = rng.uniform(0, size, 2)
        width = max(3.0 / scale, 0.3 * radius) * _FWHM_TO_SIGMA
        _stamp(band8, x, y, radius + 4 * width, _shell(rng, radius, _quantile_draw(rng, MWP_SHELLS.axis_ratio_quantiles),
                                                       rng.uniform(0, np.pi), width, rng.uniform(0.5, 1.5) * level8,
                                                       float(rng.uniform(0.15, 0.3))))

    band8 += rng.normal(0.0, 0.01 * level8 + 0.3, band8.shape)
    band24 += rng.normal(0.0, 0.01 * level24 + 0.5, band24.shape)
    if config.resolution_8um_arcsec > BAND_FWHM_ARCSEC[0]:  # the mosaics' resolution, coarser than the beam
        extra_fwhm_px = np.sqrt(config.resolution_8um_arcsec**2 - BAND_FWHM_ARCSEC[0] ** 2) / scale
        band8 = ndimage.gaussian_filter(band8, extra_fwhm_px * _FWHM_TO_SIGMA)
    pixels = np.stack([band8, band24]).astype(np.float32)
    return Field(f"sim{seed}-{index:03d}", pixels, header, tuple(bubbles))


def simulate_fields(config: BubblesConfig, seed: int, count: int) -> list[Field]:
    """Fields 0..``count`` - 1 of ``seed`` (see :func:`simulate_field`)."""
    return [simulate_field(config, seed, i) for i in range(count)]


def band_hdus(field: Field) -> list[tuple[str, fits.PrimaryHDU]]:
    """The field as a survey delivers it: one FITS image per band (MJy/sr, the Galactic CAR WCS), with its band name."""
    hdus = []
    for band, plane in zip(BANDS, field.pixels):
        header = field.header.copy()
        header["BUNIT"] = "MJy/sr"
        header["BAND"] = band
        hdus.append((band, fits.PrimaryHDU(plane, header)))
    return hdus


def field_tiles(field: Field, config: BubblesConfig, *, store=None) -> list:
    """The field's multi-scale windows as ``ImageTile`` messages in the ingest service's form.

    Bands ``irac4``/``mips24`` in MJy/sr, pixels (2, 300, 300) float32 (by object-store reference
    when ``store`` is given, else inline), the window's WCS cards, centre and pixel scale, labels
    ``window_px``, ``x_px`` and ``y_px`` (the window's first pixel in the field).

    Parameters
    ----------
    field : Field
        A simulated field.
    config : BubblesConfig
        Window sizes and overlap.
    store : ObjectStore, optional
        Where the pixels go by reference.
    """
    from nightshift.core.tiles import make_tile, stable_tile_id
    from nightshift.v1 import tile_pb2

    bands = [tile_pb2.Band(name=name, wavelength_um=wavelength, unit="MJy/sr") for name, wavelength in zip(BANDS, BAND_WAVELENGTH_UM)]
    tiles = []
    for window in plan_windows(field.pixels.shape[1:], config.window_px, config.window_overlap):
        pixels = resize_crop(field.pixels[:, window.y0:window.y0 + window.size_px, window.x0:window.x0 + window.size_px], IMAGE_SIZE)
        header = window_header(field.header, window, IMAGE_SIZE)
        lon, lat = field.wcs.pixel_to_world_values(window.x0 + (window.size_px - 1) / 2, window.y0 + (window.size_px - 1) / 2)
        tiles.append(make_tile(
            pixels, bands=bands, survey="simulated", field=field.name,
            tile_id=stable_tile_id("bubbles-sim", field.name, window.size_px, window.x0, window.y0),
            wcs_cards=[card.image for card in WCS(header).to_header(relax=True).cards],
            pixel_scale_arcsec=config.pixel_scale_arcsec * window.scale(IMAGE_SIZE),
            center=tile_pb2.SkyPosition(lon_deg=float(lon) % 360.0, lat_deg=float(lat), frame=tile_pb2.SKY_FRAME_GALACTIC),
            labels={"window_px": str(window.size_px), "x_px": str(window.x0), "y_px": str(window.y0)}, store=store,
        ))
    return tiles


@dataclasses.dataclass(frozen=True)
class CompositeLook:
    """How :func:`render_as_composite` turns MJy/sr into a GLIMPSE/MIPSGAL colour composite; ranges are drawn per crop.

    Parameters
    ----------
    coarsening : tuple of float
        Range of the factor by which a crop's pixels are coarsened (real composites: 0.95-6.7"/px vs 1.2).
    low_percentile, high_percentile : tuple of (float, float)
        Per band (8 um, 24 um): ranges of the percentiles mapped to display 0 and 1 (above 1: saturated at 255).
    softening : tuple of (float, float)
        Per band: range (log-uniform) of the asinh softening ``a`` in ``asinh(a x) / asinh(a)`` (0.01: linear).
    gamma : tuple of (float, float)
        Per band: range of the power the stretched value is raised to (1: none; above 1 darkens the faint sky).
    jpeg_quality : tuple of int
        Range (inclusive) of the JPEG quality.
    full_chroma : float
        Probability of JPEG chroma at full resolution (4:4:4); else 4:2:0 (Pillow's default; the 24 um red is chroma).
    """

    coarsening: tuple[float, float] = (1.0, 6.0)
    low_percentile: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 10.0), (0.5, 10.0))
    high_percentile: tuple[tuple[float, float], tuple[float, float]] = ((99.0, 99.95), (99.0, 99.95))
    softening: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 30.0), (1.0, 30.0))
    gamma: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 1.0), (1.0, 1.0))
    jpeg_quality: tuple[int, int] = (60, 95)
    full_chroma: float = 0.0


UNCALIBRATED_LOOK = CompositeLook()
"""The rendering before it was calibrated against the real composites (issue 17): guessed ranges."""
CALIBRATED_LOOK = CompositeLook(
    low_percentile=((1.0, 5.0), (1.0, 5.0)), high_percentile=((99.5, 99.9), (99.5, 99.8)),
    softening=((0.01, 0.01), (0.01, 0.01)), gamma=((1.2, 1.8), (1.3, 2.2)),
    jpeg_quality=(85, 95), full_chroma=2.0 / 3.0,
)
"""The rendering fitted to the three real composites (:mod:`nightshift.bubbles.calibrate`): per field the clip and
stretch whose display percentiles (25..99%) are nearest the composite's, ranges spanning the three fields; a power of
1.2..1.8 (8 um) and 1.3..2.2 (24 um) after a linear clip (the composites' faint sky is darker than any asinh stretch makes
it); JPEG quality 85..95 and chroma from the files (quality 85, 94, 94; chroma 4:2:0, 4:4:4, 4:4:4)."""


def composite_jpeg(values: np.ndarray, rng: np.random.Generator, look: CompositeLook = CALIBRATED_LOOK) -> bytes:
    """(2, h, w) MJy/sr (8 um, 24 um) at the composite's pixels as the JPEG the real composites are (24 um red,
    8 um green, half the green in blue): per band a percentile clip, an asinh stretch and a power, 8 bits, JPEG."""
    import io

    from PIL import Image

    values = np.nan_to_num(values.astype(np.float32))
    channels = []
    for band, low_range, high_range, soft_range, gamma_range in zip(values, look.low_percentile, look.high_percentile, look.softening,
                                                                    look.gamma):
        low, high = np.percentile(band, [rng.uniform(*low_range), rng.uniform(*high_range)])
        scaled = np.clip((band - low) / max(high - low, 1e-6), 0.0, 1.0)
        softening = float(np.exp(rng.uniform(*np.log(soft_range))))
        gamma = rng.uniform(*gamma_range) if gamma_range[1] > 1.0 else 1.0
        channels.append((np.arcsinh(scaled * softening) / np.arcsinh(softening)) ** gamma)
    green, red = channels
    rgb = np.round(np.stack([red, green, 0.5 * green], axis=-1) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    quality = int(rng.integers(look.jpeg_quality[0], look.jpeg_quality[1] + 1))
    subsampling = 0 if look.full_chroma > 0 and rng.uniform() < look.full_chroma else 2
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def decode_composite(jpeg: bytes) -> np.ndarray:
    """The (8 um, 24 um) display values (2, h, w) float32 of a composite JPEG: green and red, rows as stored."""
    import io

    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return np.stack([decoded[..., 1], decoded[..., 0]]).astype(np.float32)


def render_as_composite(crop: np.ndarray, rng: np.random.Generator, look: CompositeLook = CALIBRATED_LOOK) -> np.ndarray:
    """A simulated (2, n, n) crop in MJy/sr rendered as the real GLIMPSE/MIPSGAL composites are.

    The composites are 8-bit JPEG colour images (24 um red, 8 um green) of coarser pixels than the
    simulation: the crop is block-averaged by a random factor in ``look.coarsening``, made a composite
    (:func:`composite_jpeg`) at those pixels and brought back to its size; the result is the (8 um,
    24 um) display values read back, as the real-data loader reads a composite.
    """
    side = crop.shape[-1]
    factor = rng.uniform(*look.coarsening)
    values = np.nan_to_num(crop.astype(np.float32))
    coarse = max(8, int(round(side / factor))) if factor > 1.1 else side
    display = decode_composite(composite_jpeg(resize_crop(values, coarse), rng, look))
    return resize_crop(display, side)
