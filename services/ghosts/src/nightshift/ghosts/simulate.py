"""Simulated DES focal-plane images with ghosting and scattered-light artefacts, and their truth masks.

The images take the form of the seed's data: 400x400 8-bit JPEGs of a whole DECam exposure
(about 20 arcsec per pixel), grey-scale stored as RGB. Each is built in linear units of the sky noise
and then stretched and compressed as the real images were:

1. Sky: unit Gaussian noise per pixel on every live CCD (:mod:`nightshift.ghosts.focalplane`); CCD 61
   is dead and CCD 2 is off in half of the exposures.
2. Stars: Euclidean number counts (N(>F) ~ F^-1.5) from 2 sigma up, a Gaussian PSF of sigma 0.6 pixel
   (the seeing disk is far below one binned pixel); the brightest get Moffat halos.
3. Bright stars (the sources of the artefacts) inside or just outside the field: saturated cores,
   halos and four diffraction spikes when inside.
4. Artefacts, located by the optics as DECam's ghosts are: a reflection between two surfaces
   images the pupil of a star at position s (relative to the optical axis) at k * s, defocused, so
   each ghost is a doughnut (the pupil with its central obscuration and the four spider vanes)
   with a rim three times brighter:

   - ``bright``: compact bright doughnuts, radius 10-45 px, surface brightness 1.5-6 sigma;
   - ``faint``: large faint doughnuts and arcs, radius 45-140 px, 0.3-1 sigma, cut by the image edge;
   - ``rays``: scattered-light fans from the bright star (in or outside the field), opening
     6-40 degrees, length 50-200 px, made of radial streaks, 3-10 sigma at the apex.

   Artefact light falls only on the CCDs. A truth mask is the artefact's whole footprint (disk or
   fan) inside the image, as the seed's annotators drew it across CCD gaps.
5. Confusers that are not artefacts: satellite trails and the bright stars themselves.
6. Display: 8-bit value = vignetted pedestal (55 at the centre, 15 less at the edge, +-8 per
   exposure, +-3 per CCD) + 40 asinh(L / 2), clipped to 0..255; pixels off the CCDs read 23
   (measured on the real images); JPEG compression at quality 70-95.

Every exposure is drawn from ``numpy.random.default_rng([seed, index])``, so any image of a data set
can be regenerated alone.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image
from scipy import ndimage

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES, TILE_SIZE
from nightshift.ghosts.focalplane import DEAD_CCD, GAP_LEVEL, INTERMITTENT_CCD, ccd_map

__all__ = ["SkyModel", "Exposure", "simulate_exposure", "simulate_dataset", "stretch", "nominal_pedestal", "OPTICAL_AXIS_PX"]

OPTICAL_AXIS_PX = (199.7, 199.5)
_HALO_PX = 15
"""(x, y) of the optical axis in image pixels: the centre of the CCD layout."""


@dataclasses.dataclass(frozen=True)
class SkyModel:
    """Physical parameters of the simulated exposures (linear units: the sky noise sigma).

    Parameters
    ----------
    clean_fraction : float
        Fraction of exposures without any artefact.
    stars_per_exposure : tuple of int
        Range of the number of stars above ``star_min_flux``.
    star_min_flux : float
        Faintest star's total flux, in sigma.
    psf_sigma_px : float
        Gaussian PSF sigma, in pixels.
    bright_ghosts, faint_ghosts, rays : tuple of int
        Range (inclusive) of the number of each artefact class in an exposure with artefacts.
    bright_radius_px, faint_radius_px : tuple of float
        Radius ranges of the ghosts, in pixels.
    bright_level, faint_level, rays_level : tuple of float
        Surface brightness ranges, in sigma.
    rays_length_px : tuple of float
        Length range of scattered-light fans, in pixels.
    rays_half_angle_deg : tuple of float
        Half opening angle range of the fans, in degrees.
    satellite_probability : float
        Probability of a satellite trail (a confuser).
    pedestal : float
        8-bit level of the sky at the optical axis.
    vignetting : float
        Drop of the 8-bit sky level from the axis to 190 pixels.
    stretch_gain, stretch_softening : float
        Display stretch: 8-bit value = pedestal + gain * asinh(L / softening).
    jpeg_quality : tuple of int
        JPEG quality range.
    """

    clean_fraction: float = 0.2
    stars_per_exposure: tuple[int, int] = (1500, 4000)
    star_min_flux: float = 2.0
    psf_sigma_px: float = 0.6
    bright_ghosts: tuple[int, int] = (0, 3)
    faint_ghosts: tuple[int, int] = (0, 2)
    rays: tuple[int, int] = (0, 2)
    bright_radius_px: tuple[float, float] = (10.0, 45.0)
    faint_radius_px: tuple[float, float] = (45.0, 140.0)
    bright_level: tuple[float, float] = (1.5, 6.0)
    faint_level: tuple[float, float] = (0.3, 1.0)
    rays_level: tuple[float, float] = (3.0, 10.0)
    rays_length_px: tuple[float, float] = (50.0, 200.0)
    rays_half_angle_deg: tuple[float, float] = (3.0, 20.0)
    satellite_probability: float = 0.3
    pedestal: float = 55.0
    vignetting: float = 15.0
    stretch_gain: float = 40.0
    stretch_softening: float = 2.0
    jpeg_quality: tuple[int, int] = (70, 95)


@dataclasses.dataclass(frozen=True)
class Exposure:
    """One simulated exposure.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 array of shape (400, 400, 3), the JPEG-decoded RGB image (three equal channels).
    artefacts : list of Artefact
        Truth: every artefact with its mask (score 1).
    linear : numpy.ndarray or None
        With ``simulate_exposure(..., keep_linear=True)``: the light before the display step,
        float32 (400, 400) in units of the sky noise above the sky, NaN off the live CCDs (what a
        survey's calibrated image holds, up to its sky level and gain); otherwise None.
    """

    image: np.ndarray
    artefacts: list[Artefact]
    linear: np.ndarray | None = None


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _doughnut(size: int, centre: tuple[float, float], radius: float, vane_angle: float) -> np.ndarray:
    """A defocused pupil image of unit surface brightness: annulus, brighter rim, four spider vanes."""
    pupil = np.zeros((size, size), np.float32)
    reach = radius + 5.0  # the rim's Gaussian is negligible beyond
    x0, x1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 1, size)
    y0, y1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 1, size)
    if x0 >= x1 or y0 >= y1:
        return pupil
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = x - centre[0], y - centre[1]
    r = np.hypot(dx, dy)
    window = ((r <= radius) & (r >= 0.35 * radius)).astype(np.float32)
    window += 3.0 * np.exp(-0.5 * ((r - radius) / 1.0) ** 2)  # the rim, brightened by the caustic
    angle = np.arctan2(dy, dx) - vane_angle
    for k in range(4):
        along = r * np.cos(angle - k * np.pi / 2)
        across = r * np.sin(angle - k * np.pi / 2)  # distance to the vane's line
        window *= 1.0 - 0.8 * np.exp(-0.5 * (across / 0.8) ** 2) * (along > 0)
    pupil[y0:y1, x0:x1] = window
    return pupil


def _fan(
    x: np.ndarray, y: np.ndarray, apex: tuple[float, float], direction: float, half_angle: float, length: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A scattered-light fan of radial streaks: (surface brightness at the apex = 1, footprint mask)."""
    dx, dy = x - apex[0], y - apex[1]
    r = np.hypot(dx, dy)
    offset = np.angle(np.exp(1j * (np.arctan2(dy, dx) - direction)))
    inside = (np.abs(offset) <= half_angle) & (r <= length) & (r >= 2.0)
    streaks = np.zeros_like(r)
    for _ in range(int(rng.integers(3, 9))):
        centre = rng.uniform(-half_angle, half_angle)
        width = rng.uniform(0.1, 0.35) * half_angle
        streaks += rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((offset - centre) / width) ** 2)
    brightness = np.clip(streaks, 0, 1.5) * np.clip(1.0 - (r / length) ** 2, 0, None) * inside
    return brightness.astype(np.float32), inside


def _stars(rng: np.random.Generator, sky: SkyModel, size: int) -> np.ndarray:
    count = int(rng.integers(*sky.stars_per_exposure))
    flux = sky.star_min_flux * rng.uniform(size=count) ** (-1 / 1.5)  # N(>F) ~ F^-1.5
    xs, ys = rng.uniform(0, size, count), rng.uniform(0, size, count)
    image = np.zeros((size, size), np.float32)
    np.add.at(image, (ys.astype(int), xs.astype(int)), flux)
    image = ndimage.gaussian_filter(image, sky.psf_sigma_px)
    dy, dx = np.mgrid[-_HALO_PX:_HALO_PX + 1, -_HALO_PX:_HALO_PX + 1]
    for i in np.flatnonzero(flux > 300)[:20]:  # halos of the brightest, on a window around each
        halo_px = 1.0 + np.log10(flux[i])
        halo = 0.02 * flux[i] / halo_px**2 * (1 + (dx**2 + dy**2) / halo_px**2) ** -1.5
        x0, y0 = int(xs[i]) - _HALO_PX, int(ys[i]) - _HALO_PX
        rows = slice(max(y0, 0), min(y0 + 2 * _HALO_PX + 1, size))
        cols = slice(max(x0, 0), min(x0 + 2 * _HALO_PX + 1, size))
        image[rows, cols] += halo[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]
    return image


def _bright_source(x: np.ndarray, y: np.ndarray, position: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A very bright star: saturated core, halo, four diffraction spikes."""
    dx, dy = x - position[0], y - position[1]
    r = np.hypot(dx, dy)
    core = rng.uniform(1.5, 4.0)
    light = 1e4 * (1 + (r / core) ** 2) ** -2.5
    spike = rng.uniform(8, 25)
    light += 30 * np.exp(-np.abs(dx) / spike) * np.exp(-0.5 * (dy / 0.7) ** 2)
    light += 30 * np.exp(-np.abs(dy) / spike) * np.exp(-0.5 * (dx / 0.7) ** 2)
    return light.astype(np.float32)


def _satellite(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    angle = rng.uniform(0, np.pi)
    point = rng.uniform(0, size, 2)
    distance = np.abs((x - point[0]) * np.sin(angle) - (y - point[1]) * np.cos(angle))
    return (rng.uniform(2, 6) * np.exp(-0.5 * (distance / 0.6) ** 2)).astype(np.float32)


def _artefacts(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, sky: SkyModel, live: np.ndarray, min_area_px: int,
) -> tuple[np.ndarray, list[Artefact], list[tuple[float, float]]]:
    """Linear artefact light, the truth artefacts and the positions of their source stars.

    An artefact with fewer than ``min_area_px`` pixels on live CCDs is invisible and left out.
    """
    size = live.shape[0]
    counts = {name: int(rng.integers(lo, hi + 1)) for name, (lo, hi) in
              zip(CLASSES, (sky.bright_ghosts, sky.faint_ghosts, sky.rays))}
    if sum(counts.values()) == 0:
        counts[CLASSES[int(rng.integers(3))]] = 1
    axis = np.array(OPTICAL_AXIS_PX)
    sources = [tuple(axis + rng.uniform(80, 260) * np.array([np.cos(a), np.sin(a)]))
               for a in rng.uniform(0, 2 * np.pi, int(rng.integers(1, 3)))]
    light = np.zeros((size, size), np.float32)
    truth = []
    for label, count in counts.items():
        for _ in range(count):
            source = np.array(sources[int(rng.integers(len(sources)))])
            if label == "rays":
                toward_axis = np.arctan2(*(axis - source)[::-1])
                direction = toward_axis + rng.normal(0, 0.6)
                brightness, footprint = _fan(
                    x, y, tuple(source), direction, np.radians(rng.uniform(*sky.rays_half_angle_deg)),
                    rng.uniform(*sky.rays_length_px), rng,
                )
                level = rng.uniform(*sky.rays_level)
            else:
                radius = rng.uniform(*(sky.bright_radius_px if label == "bright" else sky.faint_radius_px))
                k = rng.uniform(-0.3, 0.4) if label == "bright" else rng.uniform(-0.6, 0.6)
                centre = np.clip(axis + k * (source - axis), 20, size - 20)
                brightness = _doughnut(size, tuple(centre), radius, rng.uniform(0, np.pi / 2))
                footprint = np.hypot(x - centre[0], y - centre[1]) <= radius + 1.0
                level = rng.uniform(*(sky.bright_level if label == "bright" else sky.faint_level))
            if (footprint & live).sum() < min_area_px:
                continue
            light += level * brightness
            truth.append(Artefact(label=label, mask=footprint))
    return light, truth, sources


def _axis_radius(x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Distance from the optical axis in units of 190 pixels of the 400-pixel layout (the vignetting's scale)."""
    scale = size / TILE_SIZE
    return np.hypot(x - OPTICAL_AXIS_PX[0] * scale, y - OPTICAL_AXIS_PX[1] * scale) / (190 * scale)


def stretch(light: np.ndarray, sky: SkyModel = SkyModel()) -> np.ndarray:
    """The display stretch above the pedestal: ``gain * asinh(light / softening)`` (light in sky-noise units)."""
    return sky.stretch_gain * np.arcsinh(light / sky.stretch_softening)


def nominal_pedestal(size: int = TILE_SIZE, sky: SkyModel = SkyModel()) -> np.ndarray:
    """The vignetted 8-bit sky level of a ``size`` x ``size`` image without the per-exposure and per-CCD offsets.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (size, size): ``pedestal - vignetting * (r / 190 px)**2``.
    """
    x, y = _grid(size)
    return (sky.pedestal - sky.vignetting * _axis_radius(x, y, size) ** 2).astype(np.float32)


def simulate_exposure(
    rng: np.random.Generator, sky: SkyModel = SkyModel(), *, size: int = TILE_SIZE, keep_linear: bool = False,
) -> Exposure:
    """Simulate one DES exposure as a 400x400 8-bit JPEG-decoded RGB image with its truth.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    sky : SkyModel
        Physical parameters.
    size : int
        Image side in pixels (the layout of :mod:`nightshift.ghosts.focalplane` is scaled to it).
    keep_linear : bool
        Also return the linear light before the display step (``Exposure.linear``); the draws,
        and so the image, are the same either way.

    Returns
    -------
    Exposure
        The image and its artefacts (empty for a clean exposure).
    """
    x, y = _grid(size)
    chips = ccd_map(size).copy()
    chips[chips == DEAD_CCD] = 0
    if rng.uniform() < 0.5:
        chips[chips == INTERMITTENT_CCD] = 0
    live = chips > 0
    light = rng.normal(0.0, 1.0, (size, size)).astype(np.float32) + _stars(rng, sky, size)
    artefacts: list[Artefact] = []
    if rng.uniform() >= sky.clean_fraction:
        ghost_light, artefacts, sources = _artefacts(x, y, rng, sky, live, min_area_px=int(60 * (size / TILE_SIZE) ** 2))
        light += ghost_light
        for source in sources:
            if 0 <= source[0] < size and 0 <= source[1] < size:
                light += _bright_source(x, y, source, rng)
    if rng.uniform() < sky.satellite_probability:
        light += _satellite(x, y, rng, size)
    radius = _axis_radius(x, y, size)
    ccd_offsets = rng.uniform(-3, 3, chips.max() + 1)
    pedestal = sky.pedestal + rng.uniform(-8, 8) - sky.vignetting * radius**2 + ccd_offsets[chips]
    display = pedestal + stretch(light, sky)
    gray = np.where(live, np.clip(display, 0, 255), GAP_LEVEL).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("RGB").save(buffer, format="JPEG", quality=int(rng.integers(*sky.jpeg_quality)))
    image = np.asarray(Image.open(buffer).convert("RGB"))
    linear = np.where(live, light, np.float32(np.nan)).astype(np.float32) if keep_linear else None
    return Exposure(image=image, artefacts=artefacts, linear=linear)


def simulate_dataset(count: int, seed: int, *, first_index: int = 0, sky: SkyModel = SkyModel()) -> list[Exposure]:
    """Simulate ``count`` exposures; exposure ``i`` is drawn from ``default_rng([seed, first_index + i])``.

    Parameters
    ----------
    count : int
        Number of exposures (0 gives an empty list).
    seed : int
        Data seed.
    first_index : int
        Index of the first exposure (disjoint index ranges give disjoint data sets).
    sky : SkyModel
        Physical parameters.
    """
    if count < 0:
        raise ValueError(f"count {count}: expected a non-negative number of exposures")
    return [simulate_exposure(np.random.default_rng([seed, first_index + i]), sky) for i in range(count)]
