"""Simulated Hi-GAL-like N(H2) column-density maps with their true filament masks.

Each map is built from physics measured on Herschel data (see the service README for the
parameter table and the comparison with the real Hi-GAL cut-out):

1. a log-normal turbulent background: ``N = N_med * exp(sigma_ln * g)``, with ``g`` a Gaussian
   random field of power spectrum ``P(k) ~ k**slope`` (slope about -3, as Herschel dust maps);
2. filaments: smooth curved spines (a random walk in direction, i.e. random curvature) with a
   Plummer-like radial profile ``N_fil(r) = c * N_bg * (1 + (r / r_flat)**2) ** (-(p - 1) / 2)``
   (Arzoumanian+2011), contrast ``c`` and width ``r_flat`` varying along each filament;
3. dense cores on the spines (and a few isolated clumps off them, as confusers), Plummer-like;
4. the instrument: Gaussian beam smoothing, multiplicative and additive noise, saturated cores
   and missing-coverage patches set to NaN.

The truth mask is each filament's half-maximum region as the beam shows it: where the filament's
own column density, smoothed by the beam, is at least half its value on the spine (its observed
FWHM), the analogue of the Schisano+2020 regions of interest, which are drawn on beam-smoothed maps;
cores and clumps alone are not in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from nightshift.filaments.config import HIGAL_BEAM_FWHM_PX

__all__ = ["SimulatedMap", "gaussian_random_field", "plummer_profile", "curved_spine", "simulate_map",
           "simulate_maps", "map_statistics"]


@dataclasses.dataclass(frozen=True)
class SimulatedMap:
    """One simulated map and its truth.

    Attributes
    ----------
    column_density : numpy.ndarray
        float32 (H, W) N(H2) in cm^-2; NaN where saturated or not covered.
    mask : numpy.ndarray
        bool (H, W) true filament regions of interest.
    usable : numpy.ndarray
        bool (H, W) pixels with data (not NaN).
    spines : list of numpy.ndarray
        Per filament, the (n, 2) spine points (row, column) in pixels.
    cores : numpy.ndarray
        (m, 2) positions (row, column) of the dense cores placed on spines, in pixels.
    filament_column_density : numpy.ndarray
        float32 (H, W) N(H2) of the filaments alone, smoothed by the beam, without noise, in cm^-2
        (what a perfect separation of the filaments from the background would give).
    """

    column_density: np.ndarray
    mask: np.ndarray
    usable: np.ndarray
    spines: list[np.ndarray]
    cores: np.ndarray
    filament_column_density: np.ndarray


def gaussian_random_field(shape: tuple[int, int], slope: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with power spectrum ``P(k) ~ k**slope``.

    Parameters
    ----------
    shape : (int, int)
        Field shape in pixels.
    slope : float
        Power-law index of the power spectrum (negative: more power on large scales).
    rng : numpy.random.Generator
        Random source.
    """
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf  # no power in the mean
    amplitude = k ** (slope / 2.0)
    noise = rng.normal(size=(shape[0], kx.shape[1])) + 1j * rng.normal(size=(shape[0], kx.shape[1]))
    field = np.fft.irfft2(noise * amplitude, s=shape)
    return (field - field.mean()) / field.std()


def plummer_profile(radius_px: np.ndarray, r_flat_px: np.ndarray | float, p: float) -> np.ndarray:
    """Plummer-like profile ``(1 + (r / r_flat)**2) ** (-(p - 1) / 2)``, 1 on the spine.

    Parameters
    ----------
    radius_px : array
        Distance from the spine, in pixels.
    r_flat_px : array or float
        Flat inner radius, in pixels.
    p : float
        Power-law index of the outer profile (about 2 for Herschel filaments).
    """
    return (1.0 + (np.asarray(radius_px) / r_flat_px) ** 2) ** (-(p - 1.0) / 2.0)


def curved_spine(shape: tuple[int, int], length_px: float, curvature: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth curved spine: a walk of half-pixel steps whose direction drifts randomly.

    Parameters
    ----------
    shape : (int, int)
        Map shape; the spine stops where it leaves the map.
    length_px : float
        Largest spine length, in pixels.
    curvature : float
        Standard deviation of the direction change per pixel, in radians (smoothed over 10 pixels).
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    numpy.ndarray
        (n, 2) points (row, column), n >= 1.
    """
    steps = max(int(2 * length_px), 1)
    turns = ndimage.gaussian_filter1d(rng.normal(0.0, curvature * np.sqrt(0.5), steps), 20.0) * np.sqrt(20.0)
    direction = rng.uniform(0, 2 * np.pi) + np.cumsum(turns)
    start = rng.uniform(0, 1, 2) * np.array(shape)
    points = start + 0.5 * np.cumsum(np.stack([np.sin(direction), np.cos(direction)], axis=1), axis=0)
    inside = np.all((points >= 0) & (points < np.array(shape) - 0.5), axis=1)
    first_out = np.argmin(inside) if not inside.all() else len(points)
    return np.vstack([start, points[:first_out]])


def _spine_raster(shape: tuple[int, int], spine: np.ndarray) -> np.ndarray:
    """Boolean image with the spine's pixels set."""
    raster = np.zeros(shape, bool)
    rows, cols = np.clip(np.rint(spine).astype(int), 0, np.array(shape) - 1).T
    raster[rows, cols] = True
    return raster


def simulate_map(
    size_px: int,
    rng: np.random.Generator,
    *,
    median_column_density_cm2: float = 1.3e22,
    sigma_ln: tuple[float, float] = (0.3, 0.45),
    spectrum_slope: tuple[float, float] = (-3.4, -2.7),
    filaments_per_100px2: tuple[float, float] = (3.0, 5.5),
    length_px: tuple[float, float] = (40.0, 180.0),
    curvature_rad_per_px: tuple[float, float] = (0.01, 0.05),
    contrast: tuple[float, float] = (0.3, 2.4),
    r_flat_px: tuple[float, float] = (0.15, 0.6),
    plummer_p: tuple[float, float] = (2.0, 3.0),
    cores_per_filament: tuple[int, int] = (0, 3),
    core_peak: tuple[float, float] = (1.0, 6.0),
    clumps_per_100px2: float = 0.5,
    beam_fwhm_px: float = HIGAL_BEAM_FWHM_PX,
    noise_fraction: tuple[float, float] = (0.01, 0.04),
    saturation_cm2: float = 1.2e23,
    missing_patches: tuple[int, int] = (0, 3),
    truth_fraction: float = 0.5,
) -> SimulatedMap:
    """Simulate one square N(H2) map with filaments, cores, noise and missing data.

    Parameters
    ----------
    size_px : int
        Side of the map, in pixels (Hi-GAL N(H2) pixels are 11.5 arcsec).
    rng : numpy.random.Generator
        Random source (the map is a pure function of its state).
    median_column_density_cm2 : float
        Median of the background, in cm^-2.
    sigma_ln : (float, float)
        Range of the standard deviation of ln N of the background.
    spectrum_slope : (float, float)
        Range of the power-law index of the background's power spectrum.
    filaments_per_100px2 : (float, float)
        Range of the number of filaments per 100x100 pixels.
    length_px, curvature_rad_per_px : (float, float)
        Ranges of spine length (pixels) and curvature (radians per pixel).
    contrast : (float, float)
        Range of the spine's intrinsic peak (before the beam) over the local background (varies
        along each filament); the beam dilutes it about threefold.
    r_flat_px, plummer_p : (float, float)
        Ranges of the profile's flat radius (pixels, varies along each filament) and outer index.
        The intrinsic FWHM, ``2 r_flat sqrt(2**(2/(p-1)) - 1)``, is then 0.3-2.1 px (3.5-24 arcsec):
        the typical 0.1 pc (Arzoumanian+2011) at 0.9-6 kpc, always narrower than the beam.
    cores_per_filament : (int, int)
        Inclusive range of dense cores per filament.
    core_peak : (float, float)
        Range of a core's peak over the local background.
    clumps_per_100px2 : float
        Mean number of isolated clumps (not filaments) per 100x100 pixels.
    beam_fwhm_px : float
        FWHM of the Gaussian beam, in pixels: the Hi-GAL N(H2) maps' 500 um resolution, 36 arcsec,
        over their 11.5 arcsec pixels (3.13 px). It sets the observed width of the filaments.
    noise_fraction : (float, float)
        Range of the noise's standard deviation relative to the local column density.
    saturation_cm2 : float
        Column density above which pixels are saturated (NaN).
    missing_patches : (int, int)
        Inclusive range of disks without coverage (NaN).
    truth_fraction : float
        A pixel is in a filament's truth where the filament's beam-smoothed column density is at
        least this fraction of its value on the nearest spine point (0.5: the observed FWHM).

    Returns
    -------
    SimulatedMap
    """
    if size_px < 8:
        raise ValueError(f"size_px={size_px}: expected at least 8")
    shape = (size_px, size_px)
    area_100 = (size_px / 100.0) ** 2
    background = median_column_density_cm2 * np.exp(
        rng.uniform(*sigma_ln) * gaussian_random_field(shape, rng.uniform(*spectrum_slope), rng))
    beam_sigma_px = beam_fwhm_px / 2.3548
    filaments = np.zeros(shape)
    observed_filaments = np.zeros(shape)
    mask = np.zeros(shape, bool)
    spines: list[np.ndarray] = []
    cores: list[np.ndarray] = []
    for _ in range(rng.poisson(rng.uniform(*filaments_per_100px2) * area_100)):
        spine = curved_spine(shape, rng.uniform(*length_px), rng.uniform(*curvature_rad_per_px), rng)
        if len(spine) < 10:
            continue
        spines.append(spine)
        # Contrast and width drift smoothly along the spine.
        along = np.linspace(0, 1, len(spine))
        phase = rng.uniform(0, 2 * np.pi, 2)
        low_c, high_c = sorted(rng.uniform(*contrast, 2))
        low_w, high_w = sorted(rng.uniform(*r_flat_px, 2))
        spine_contrast = low_c + (high_c - low_c) * 0.5 * (1 + np.sin(2 * np.pi * along + phase[0]))
        spine_width = low_w + (high_w - low_w) * 0.5 * (1 + np.sin(np.pi * along + phase[1]))
        distance, (near_r, near_c) = ndimage.distance_transform_edt(~_spine_raster(shape, spine), return_indices=True)
        index_of_pixel = np.full(shape, -1)
        rows, cols = np.clip(np.rint(spine).astype(int), 0, size_px - 1).T
        index_of_pixel[rows, cols] = np.arange(len(spine))
        nearest = index_of_pixel[near_r, near_c]
        width = spine_width[nearest]
        p = rng.uniform(*plummer_p)
        # A Gaussian taper at 5 r_flat keeps each filament finite (a pure p=2 profile falls as 1/r).
        profile = plummer_profile(distance, width, p) * np.exp(-0.5 * (distance / (5 * width)) ** 2)
        component = spine_contrast[nearest] * background[near_r, near_c] * profile
        # The truth is the width the beam shows, not the intrinsic (often sub-beam) one.
        observed = ndimage.gaussian_filter(component, beam_sigma_px)
        mask |= observed >= truth_fraction * observed[near_r, near_c]
        filaments += component
        observed_filaments += observed
        n_cores = rng.integers(cores_per_filament[0], cores_per_filament[1] + 1)
        cores.extend(spine[rng.integers(0, len(spine), n_cores)])
    structure = background + filaments
    clumps = [rng.uniform(0, size_px, 2) for _ in range(rng.poisson(clumps_per_100px2 * area_100))]
    rows, cols = np.indices(shape)
    for position, on_filament in [(c, True) for c in cores] + [(c, False) for c in clumps]:
        r_core = rng.uniform(0.8, 2.0)
        radius = np.hypot(rows - position[0], cols - position[1])
        local = structure[int(position[0]), int(position[1])] if on_filament else background[int(position[0]), int(position[1])]
        structure = structure + rng.uniform(*core_peak) * local * plummer_profile(radius, r_core, 3.0)
    observed = ndimage.gaussian_filter(structure, beam_sigma_px)
    observed = observed * (1 + rng.uniform(*noise_fraction) * rng.normal(size=shape))
    missing = observed >= saturation_cm2
    for _ in range(rng.integers(missing_patches[0], missing_patches[1] + 1)):
        centre, radius_px = rng.uniform(0, size_px, 2), rng.uniform(3, 0.08 * size_px)
        missing |= np.hypot(rows - centre[0], cols - centre[1]) <= radius_px
    missing = ndimage.binary_dilation(missing, iterations=1) if missing.any() else missing
    column_density = np.where(missing, np.nan, observed).astype(np.float32)
    return SimulatedMap(column_density, mask, ~missing, spines, np.array(cores, float).reshape(-1, 2),
                        observed_filaments.astype(np.float32))


def simulate_maps(count: int, size_px: int, seed: int) -> list[SimulatedMap]:
    """``count`` maps, map ``i`` a pure function of ``(seed, i)`` (so subsets are reproducible)."""
    return [simulate_map(size_px, np.random.default_rng([seed, i])) for i in range(count)]


def map_statistics(column_density: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Statistics compared between simulated maps and the real cut-out.

    Parameters
    ----------
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    mask : numpy.ndarray
        (H, W) filament mask.

    Returns
    -------
    dict
        ``p01_cm2``, ``median_cm2``, ``p99_cm2`` (percentiles of N), ``sigma_ln`` (std of ln N),
        ``mask_fraction``, ``mask_width_px`` (median of twice the distance to the mask's edge on
        its skeleton), ``missing_fraction``, ``contrast`` (median N in the mask over the median N
        within 6 pixels outside it).
    """
    from skimage.morphology import skeletonize

    finite = np.isfinite(column_density)
    values = column_density[finite].astype(float)
    mask = mask.astype(bool)
    skeleton = skeletonize(mask)
    ring = ndimage.binary_dilation(mask, iterations=6) & ~mask & finite
    inside = mask & finite
    return {
        "p01_cm2": float(np.percentile(values, 1)),
        "median_cm2": float(np.median(values)),
        "p99_cm2": float(np.percentile(values, 99)),
        "sigma_ln": float(np.std(np.log(values[values > 0]))),
        "mask_fraction": float(mask.mean()),
        "mask_width_px": float(np.median(2 * ndimage.distance_transform_edt(mask)[skeleton])) if skeleton.any() else 0.0,
        "missing_fraction": float(1 - finite.mean()),
        "contrast": float(np.median(column_density[inside]) / np.median(column_density[ring])) if inside.any() and ring.any() else float("nan"),
    }
