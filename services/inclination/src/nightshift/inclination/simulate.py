"""Simulated disk galaxies in g, r, i with known inclination and reject reason.

Each galaxy is drawn as IncliNET's cut-outs are prepared: major axis rotated horizontal (to within
a catalogue position-angle error) and the field about twice the optical diameter D25. Images are
sky-subtracted fluxes in nanomaggies per pixel, the form the ingest service produces from survey
images; the asinh stretch is preprocessing's job.

Physics (all parameters are the module constants below; units in their names):

* Disk: exponential radially (scale length h) and sech^2 vertically (scale height z0), seen at
  inclination i. Rendered exactly in Fourier space (projection-slice theorem):
  ``F(ku, kv) = (1 + h^2 (ku^2 + kv^2 cos^2 i))^-3/2 * a / sinh(a)`` with ``a = pi z0 kv sin(i) / 2``.
  With ``z0 = q0 h / 0.5234`` the flux-weighted moments of the projected disk obey the Hubble
  relation ``q^2 = cos^2 i + q0^2 sin^2 i`` exactly (edge-on moment axis ratio q0).
* Intrinsic thickness q0 grows with the bulge-to-total ratio (earlier types are thicker).
* Bulge: Sersic (n 1.5..4), redder than the disk, an oblate spheroid whose projected axis ratio
  follows the same relation with its own (rounder) intrinsic axis ratio; B/T 0..0.5.
* Bars, logarithmic spiral arms and blue star-forming clumps live in the disk plane and are
  projected with the disk; arms fade towards edge-on (line-of-sight smearing).
* Dust: a thinner exponential disk (same Fourier rendering) gives the optical depth along each line
  of sight; stars and dust form a sandwich (part of the light in front, part mixed, part behind),
  fully mixed when edge-on, which darkens the mid-plane of edge-on disks (dust lanes). Optical depth
  scales as 1/wavelength.
* PSF: double Gaussian (core + 10 % halo), seeing 0.9..1.8 arcsec, slightly sharper at longer
  wavelengths. Pixel scale = field / image size.
* Foreground stars with random colours (faint where they overlap an accepted galaxy), Gaussian sky
  noise plus source shot noise, a residual sky gradient, and occasional missing (NaN) corners.

Labels as IncliNET's: ``accept`` (inclination 45..90 deg, 90 = edge-on, random orientations:
uniform in cos i), ``face_on`` (below 45 deg) and ``reject`` with a reason: ``disturbed`` (a
merging companion and a lopsided disk), ``bright_star`` (a saturated star with diffraction spikes
across the galaxy), ``faint`` (integrated S/N 3..10) or ``truncated`` (off-centre, field too
small, or a band of missing data across the galaxy).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BANDS", "WAVELENGTH_UM", "LABELS", "REJECT_REASONS", "Star", "Companion", "GalaxyParameters",
    "SimulatedGalaxies", "SimulationOverrides", "draw_parameters", "render_galaxy", "simulate_galaxies", "hubble_axis_ratio",
    "replace", "stack_truth",
]

BANDS = ("g", "r", "i")
WAVELENGTH_UM = {"g": 0.477, "r": 0.623, "i": 0.763}
LABELS = ("accept", "face_on", "reject")
REJECT_REASONS = ("disturbed", "bright_star", "faint", "truncated")
SPLITS = {"train": 0, "validation": 1, "test": 2, "bench": 3}

# Galaxy sizes and the cut-out: field = FIELD_PER_D25 * D25 (catalogue D25 errors of +-10 %).
D25_ARCSEC = (40.0, 200.0)              # log-uniform optical diameter
FIELD_PER_D25 = 2.0
D25_ERROR = 0.1
R25_PER_SCALE_LENGTH = (2.6, 3.6)       # 25 mag/arcsec^2 radius over disk scale length
MOMENT_THICKNESS = math.sqrt(math.pi**2 / 12 / 3)  # edge-on moment axis ratio per z0/h of a sech^2 disk
Q0_BASE, Q0_PER_BT, Q0_SCATTER, Q0_RANGE = 0.11, 0.2, 0.02, (0.08, 0.3)
BULGE_TO_TOTAL = (0.0, 0.5)
BULGE_SERSIC_N = (1.5, 4.0)
BULGE_RE_PER_H = (0.25, 0.8)
BULGE_Q0 = (0.6, 1.0)
BAR_PROBABILITY, BAR_FRACTION, BAR_LENGTH_PER_H, BAR_AXIS_RATIO = 0.35, (0.05, 0.15), (0.8, 2.0), (0.25, 0.4)
ARM_AMPLITUDE, ARM_PITCH_DEG, ARM_COUNTS = (0.1, 0.7), (10.0, 30.0), (2, 3)
CLUMP_FRACTION, CLUMP_SIGMA_PER_H = (0.0, 0.08), (0.1, 0.25)
DUST_TAU_R, DUST_SCALE_PER_H, DUST_HEIGHT_PER_Z0, DUST_MIXED_FRACTION = (0.1, 1.5), 1.2, 0.35, 0.35
ALIAS_TOLERANCE = 1e-3                  # disk transforms above this at Nyquist are summed over aliases
IN_PLANE_THICKNESS = 0.1                # thickness of bars, arms and clumps as an axis ratio
SEEING_FWHM_ARCSEC, PSF_HALO_FRACTION, PSF_HALO_WIDTH = (0.9, 1.8), 0.1, 3.0
MAGNITUDE_R = (12.0, 16.0)
SNR_ACCEPT, SNR_FAINT = (40.0, 400.0), (3.0, 10.0)   # integrated S/N inside the D25 ellipse
SKY_SIGMA_PER_R = {"g": 1.3, "r": 1.0, "i": 1.2}
SHOT_NOISE_GAIN = 4000.0                # counts per nanomaggy: shot noise of the source
SKY_GRADIENT_SIGMA = 0.5                # residual sky gradient across the field, in sky sigmas
PA_ERROR_DEG = 2.0
STARS_PER_FIELD = 2.0
STAR_FLUX_PER_GALAXY = (0.003, 0.3)
STAR_ON_GALAXY_MAX = 0.03               # brightest star allowed on an accepted galaxy, per galaxy flux
BRIGHT_STAR_FLUX_PER_GALAXY = (0.3, 3.0)
MISSING_CORNER_PROBABILITY = 0.1
DISK_COLOUR_GR, DISK_COLOUR_RI = (0.35, 0.65), (0.2, 0.35)
BULGE_REDDENING_GR, BULGE_COLOUR_RI = (0.15, 0.35), (0.35, 0.45)
CLUMP_COLOUR_GR = (0.0, 0.3)
STAR_COLOUR_GR = (0.3, 1.5)


def hubble_axis_ratio(inclination_deg: np.ndarray | float, q0: np.ndarray | float) -> np.ndarray:
    """Apparent axis ratio of an oblate spheroid of intrinsic axis ratio ``q0`` at an inclination.

    ``q = sqrt(cos^2 i + q0^2 sin^2 i)`` (Hubble 1926); inclination in degrees, 90 = edge-on.
    """
    i = np.radians(inclination_deg)
    return np.sqrt(np.cos(i) ** 2 + np.square(q0) * np.sin(i) ** 2)


@dataclasses.dataclass(frozen=True)
class Star:
    """A foreground star: offset from the image centre in pixels, r flux per galaxy flux, g-r colour."""

    x_px: float
    y_px: float
    flux_ratio: float
    colour_gr: float
    saturated: bool = False


@dataclasses.dataclass(frozen=True)
class Companion:
    """A merging companion disk: offset in pixels, scale length in pixels, orientation, flux ratio."""

    x_px: float
    y_px: float
    scale_length_px: float
    inclination_deg: float
    position_angle_deg: float
    flux_ratio: float


@dataclasses.dataclass(frozen=True)
class GalaxyParameters:
    """Everything that determines one simulated image (lengths in pixels, angles in degrees).

    ``missing`` lists rectangles (row0, row1, col0, col1) of NaN pixels in the final image.
    """

    label: str
    reason: str
    inclination_deg: float
    q0: float
    scale_length_px: float
    d25_arcsec: float
    pixel_scale_arcsec: float
    flux_r: float
    snr: float
    bulge_to_total: float = 0.0
    bulge_sersic_n: float = 2.0
    bulge_re_px: float = 1.0
    bulge_q0: float = 0.8
    bar_fraction: float = 0.0
    bar_length_px: float = 1.0
    bar_axis_ratio: float = 0.3
    bar_angle_deg: float = 0.0
    arm_amplitude: float = 0.0
    arm_count: int = 2
    arm_pitch_deg: float = 20.0
    arm_phase_deg: float = 0.0
    clump_fraction: float = 0.0
    clumps: tuple[tuple[float, float, float], ...] = ()  # in-plane (radius px, angle deg, sigma px)
    dust_tau_r: float = 0.0
    lopsidedness: float = 0.0
    lopsided_angle_deg: float = 0.0
    position_angle_error_deg: float = 0.0
    center_x_px: float = 0.0
    center_y_px: float = 0.0
    psf_fwhm_px: float = 0.0
    disk_colour_gr: float = 0.5
    disk_colour_ri: float = 0.3
    bulge_colour_gr: float = 0.75
    bulge_colour_ri: float = 0.4
    clump_colour_gr: float = 0.1
    sky_gradient: tuple[float, float] = (0.0, 0.0)
    stars: tuple[Star, ...] = ()
    companion: Companion | None = None
    missing: tuple[tuple[int, int, int, int], ...] = ()
    noise: bool = True
    noise_seed: int = 0

    @property
    def z0_px(self) -> float:
        """sech^2 scale height of the disk in pixels (edge-on moment axis ratio = q0)."""
        return self.q0 * self.scale_length_px / MOMENT_THICKNESS

    @property
    def r25_px(self) -> float:
        return self.d25_arcsec / 2 / self.pixel_scale_arcsec


@dataclasses.dataclass(frozen=True)
class SimulatedGalaxies:
    """A simulated set: images (n, 3, size, size) float32 in nanomaggies (NaN = missing) and truth."""

    images: np.ndarray
    parameters: tuple[GalaxyParameters, ...]

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def inclination_deg(self) -> np.ndarray:
        return np.array([p.inclination_deg for p in self.parameters])

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.label for p in self.parameters])

    @property
    def reasons(self) -> np.ndarray:
        return np.array([p.reason for p in self.parameters])

    @property
    def bulge_to_total(self) -> np.ndarray:
        return np.array([p.bulge_to_total for p in self.parameters])

    @property
    def accepted(self) -> np.ndarray:
        """True where the galaxy has a measurable inclination (label ``accept``)."""
        return self.labels == "accept"


# --- drawing parameters ---------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _inclination(rng: np.random.Generator, label: str) -> float:
    """Random orientations (uniform in cos i) within the label's range."""
    cos_45 = math.cos(math.radians(45))
    low, high = {"accept": (0.0, cos_45), "face_on": (cos_45, 1.0)}.get(label, (0.0, 1.0))
    return math.degrees(math.acos(rng.uniform(low, high)))


def _stars(rng: np.random.Generator, size: int, r25_px: float, q: float) -> tuple[Star, ...]:
    stars = []
    for _ in range(rng.poisson(STARS_PER_FIELD)):
        x, y = rng.uniform(-size / 2, size / 2, 2)
        flux = _log_uniform(rng, STAR_FLUX_PER_GALAXY)
        if (x / r25_px) ** 2 + (y / (q * r25_px)) ** 2 < 1.2:
            flux = min(flux, STAR_ON_GALAXY_MAX * rng.uniform(0.1, 1.0))
        stars.append(Star(float(x), float(y), flux, rng.uniform(*STAR_COLOUR_GR)))
    return tuple(stars)


def draw_parameters(rng: np.random.Generator, *, size: int, label: str, reason: str = "") -> GalaxyParameters:
    """Draw one galaxy of a label (and reject reason) for an image of ``size`` pixels.

    Raises
    ------
    ValueError
        Unknown label or reason, or a reason given for a label other than ``reject``.
    """
    if label not in LABELS:
        raise ValueError(f"label {label!r}: expected one of {LABELS}")
    if (label == "reject") != (reason in REJECT_REASONS):
        raise ValueError(f"reason {reason!r} for label {label!r}: rejects need one of {REJECT_REASONS}, others none")
    inclination = _inclination(rng, label)
    d25 = _log_uniform(rng, D25_ARCSEC)
    field_per_d25 = FIELD_PER_D25 * rng.uniform(1 - D25_ERROR, 1 + D25_ERROR)
    truncated_mode = rng.integers(3) if reason == "truncated" else -1
    if truncated_mode == 1:  # the field is far too small for the galaxy
        field_per_d25 = rng.uniform(0.7, 1.1)
    pixel_scale = field_per_d25 * d25 / size
    r25 = d25 / 2 / pixel_scale
    h = r25 / rng.uniform(*R25_PER_SCALE_LENGTH)
    bt = rng.uniform(*BULGE_TO_TOTAL)
    q0 = float(np.clip(Q0_BASE + Q0_PER_BT * bt + rng.normal(0, Q0_SCATTER), *Q0_RANGE))
    q = float(hubble_axis_ratio(inclination, q0))
    has_bar = rng.random() < BAR_PROBABILITY
    arm_count = int(rng.choice(ARM_COUNTS))
    arm_phase = rng.uniform(0, 360)
    clump_count = rng.poisson(8)
    clumps = tuple(
        (float(rng.gamma(2.0, h)), float(arm_phase / arm_count + rng.normal(0, 25) + 360 / arm_count * rng.integers(arm_count)),
         float(h * rng.uniform(*CLUMP_SIGMA_PER_H)))
        for _ in range(clump_count)
    )
    snr = _log_uniform(rng, SNR_FAINT if reason == "faint" else SNR_ACCEPT)
    flux = 10 ** (-0.4 * (rng.uniform(*MAGNITUDE_R) - 22.5))
    seeing = rng.uniform(*SEEING_FWHM_ARCSEC)
    bulge_gr = rng.uniform(*DISK_COLOUR_GR) + rng.uniform(*BULGE_REDDENING_GR)
    parameters = dict(
        label=label, reason=reason, inclination_deg=inclination, q0=q0, scale_length_px=h, d25_arcsec=d25,
        pixel_scale_arcsec=pixel_scale, flux_r=flux, snr=snr, bulge_to_total=bt,
        bulge_sersic_n=rng.uniform(*BULGE_SERSIC_N), bulge_re_px=h * rng.uniform(*BULGE_RE_PER_H),
        bulge_q0=rng.uniform(*BULGE_Q0),
        bar_fraction=rng.uniform(*BAR_FRACTION) if has_bar else 0.0,
        bar_length_px=h * rng.uniform(*BAR_LENGTH_PER_H), bar_axis_ratio=rng.uniform(*BAR_AXIS_RATIO),
        bar_angle_deg=rng.uniform(0, 180),
        arm_amplitude=rng.uniform(*ARM_AMPLITUDE), arm_count=arm_count, arm_pitch_deg=rng.uniform(*ARM_PITCH_DEG),
        arm_phase_deg=arm_phase, clump_fraction=rng.uniform(*CLUMP_FRACTION), clumps=clumps,
        dust_tau_r=rng.uniform(*DUST_TAU_R),
        position_angle_error_deg=rng.normal(0, PA_ERROR_DEG),
        center_x_px=rng.normal(0, 0.5), center_y_px=rng.normal(0, 0.5),
        psf_fwhm_px=seeing / pixel_scale,
        disk_colour_gr=bulge_gr - rng.uniform(*BULGE_REDDENING_GR), disk_colour_ri=rng.uniform(*DISK_COLOUR_RI),
        bulge_colour_gr=bulge_gr, bulge_colour_ri=rng.uniform(*BULGE_COLOUR_RI),
        clump_colour_gr=rng.uniform(*CLUMP_COLOUR_GR),
        sky_gradient=tuple(rng.normal(0, SKY_GRADIENT_SIGMA, 2)),
        stars=_stars(rng, size, r25, q), noise_seed=int(rng.integers(2**31)),
    )
    missing = []
    if rng.random() < MISSING_CORNER_PROBABILITY:
        side = int(rng.integers(size // 10, size // 5 + 1))
        top, left = (0 if rng.random() < 0.5 else size - side), (0 if rng.random() < 0.5 else size - side)
        missing.append((top, top + side, left, left + side))
    if reason == "disturbed":
        angle = rng.uniform(0, 2 * np.pi)
        separation = r25 * rng.uniform(0.3, 0.8)
        parameters["companion"] = Companion(
            float(separation * np.cos(angle)), float(separation * np.sin(angle)), h * rng.uniform(0.4, 1.0),
            _inclination(rng, "reject"), rng.uniform(0, 180), rng.uniform(0.3, 1.0),
        )
        parameters["lopsidedness"] = rng.uniform(0.15, 0.3)
        parameters["lopsided_angle_deg"] = rng.uniform(0, 360)
        parameters["position_angle_error_deg"] = rng.normal(0, 4 * PA_ERROR_DEG)
    elif reason == "bright_star":
        radius, angle = 0.7 * r25 * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        bright = Star(float(radius * np.cos(angle)), float(q * radius * np.sin(angle)),
                      _log_uniform(rng, BRIGHT_STAR_FLUX_PER_GALAXY), rng.uniform(*STAR_COLOUR_GR), saturated=True)
        parameters["stars"] = (*parameters["stars"], bright)
    elif truncated_mode == 0:  # off-centre: part of the galaxy lies outside the field
        angle = rng.uniform(0, 2 * np.pi)
        offset = size * rng.uniform(0.3, 0.45)
        parameters["center_x_px"], parameters["center_y_px"] = offset * np.cos(angle), offset * np.sin(angle) * 0.5
    elif truncated_mode == 2:  # a band of missing data across the galaxy
        width = int(size * rng.uniform(0.15, 0.3))
        start = int(size / 2 + rng.uniform(-0.2, 0.2) * size - width / 2)
        band = (start, start + width, 0, size) if rng.random() < 0.5 else (0, size, start, start + width)
        missing.append(band)
    parameters["missing"] = tuple(missing)
    return GalaxyParameters(**parameters)


# --- rendering ------------------------------------------------------------------------------------


def _a_over_sinh(a: np.ndarray) -> np.ndarray:
    """a / sinh(a), stable for all a (1 at 0, exp-decaying for large |a|)."""
    a = np.abs(a)
    small = a < 1e-4
    safe = np.where(small, 1.0, a)
    return np.where(small, 1.0, 2 * safe * np.exp(-safe) / -np.expm1(-2 * safe))


class _Grid:
    """Pixel and frequency coordinates of a padded square grid (twice the image size: no wrap-around)."""

    ALIASES = (-1, 0, 1)

    def __init__(self, size: int) -> None:
        self.size = size
        self.padded = 2 * size
        centre = (self.padded - 1) / 2
        self.y, self.x = np.mgrid[0 : self.padded, 0 : self.padded].astype(np.float64) - centre
        k = 2 * np.pi * np.fft.fftfreq(self.padded)
        self.centre = centre
        # frequencies of the first aliases, and the pixel's (box) response at them
        self.k_aliases = [k + 2 * np.pi * n for n in self.ALIASES]
        self.box = [np.sinc(ka / (2 * np.pi)) for ka in self.k_aliases]  # numpy's sinc is sin(pi x) / (pi x)

    def galaxy_frame(self, x0: float, y0: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates along (u) and across (v) a major axis at ``angle_deg`` through (x0, y0)."""
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        xs, ys = self.x - x0, self.y - y0
        return c * xs + s * ys, -s * xs + c * ys

    def inclined_disk(self, x0: float, y0: float, angle_deg: float, scale_px: float, height_px: float, inclination_deg: float) -> np.ndarray:
        """Projected exponential x sech^2 disk integrated over pixels, exact in Fourier space; sums to 1.

        Thin disks are not band-limited at the pixel scale, so the transform is summed over the
        first aliases (pixel-integrated sampling); truncating it at Nyquist would ring.
        """
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        cos_i, sin_i = math.cos(math.radians(inclination_deg)), math.sin(math.radians(inclination_deg))

        def transform(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
            ku, kv = c * kx + s * ky, -s * kx + c * ky
            radial = 1 + scale_px**2 * (ku**2 + (kv * cos_i) ** 2)
            return _a_over_sinh(np.pi * height_px * sin_i / 2 * kv) / (radial * np.sqrt(radial))

        # aliases matter only along an axis where the transform is still significant at Nyquist
        aliased = [abs(float(transform(np.array(kx), np.array(ky)))) > ALIAS_TOLERANCE for kx, ky in ((np.pi, 0.0), (0.0, np.pi))]
        x_centre, y_centre = x0 + self.centre, y0 + self.centre
        total = np.zeros((self.padded, self.padded), complex)
        for nx, (kx, box_x) in enumerate(zip(self.k_aliases, self.box)):
            if self.ALIASES[nx] and not aliased[0]:
                continue
            phase_x = box_x * np.exp(-1j * kx * x_centre)
            for ny, (ky, box_y) in enumerate(zip(self.k_aliases, self.box)):
                if self.ALIASES[ny] and not aliased[1]:
                    continue
                total += transform(kx[None, :], ky[:, None]) * (box_y * np.exp(-1j * ky * y_centre))[:, None] * phase_x[None, :]
        return np.fft.ifft2(total).real

    def convolve_psf(self, image: np.ndarray, fwhm_px: float) -> np.ndarray:
        """Convolution with the double-Gaussian PSF (flux-conserving)."""
        if fwhm_px <= 0:
            return image
        return np.fft.ifft2(np.fft.fft2(image) * _psf_transform(self.k_aliases[1], fwhm_px)).real

    def crop(self, image: np.ndarray) -> np.ndarray:
        start = self.size // 2
        return image[..., start : start + self.size, start : start + self.size]


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> _Grid:
    return _Grid(size)


def _psf_transform(k: np.ndarray, fwhm_px: float) -> np.ndarray:
    """Transform of the double-Gaussian PSF on the grid whose axes have frequencies ``k`` (separable)."""
    sigma = fwhm_px / 2.3548

    def gaussian(width: float) -> np.ndarray:
        axis = np.exp(-(k**2) * width**2 / 2)
        return axis[:, None] * axis[None, :]

    return (1 - PSF_HALO_FRACTION) * gaussian(sigma) + PSF_HALO_FRACTION * gaussian(PSF_HALO_WIDTH * sigma)


def _star_stamp(grid: _Grid, star: Star, fwhm_px: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """A star's PSF image of unit flux on a stamp of the padded grid (with spikes when saturated)."""
    sigma = fwhm_px / 2.3548
    half = int(math.ceil(4 * PSF_HALO_WIDTH * max(sigma, 0.5))) + (grid.size // 4 if star.saturated else 0)
    col, row = int(round(star.x_px + grid.centre)), int(round(star.y_px + grid.centre))
    rows = slice(max(row - half, 0), min(row + half + 1, grid.padded))
    cols = slice(max(col - half, 0), min(col + half + 1, grid.padded))
    dx, dy = grid.x[rows, cols] - star.x_px, grid.y[rows, cols] - star.y_px
    r2 = dx**2 + dy**2
    stamp = np.zeros_like(r2)
    for weight, width in ((1 - PSF_HALO_FRACTION, sigma), (PSF_HALO_FRACTION, PSF_HALO_WIDTH * sigma)):
        stamp += weight * _normalised(np.exp(-r2 / (2 * max(width, 0.25) ** 2)))
    if star.saturated:  # diffraction spikes along the detector axes, rotated with the cut-out
        length = 0.15 * grid.size * math.sqrt(star.flux_ratio)
        for angle in (math.radians(30), math.radians(120)):
            along = math.cos(angle) * dx + math.sin(angle) * dy
            across = -math.sin(angle) * dx + math.cos(angle) * dy
            stamp += 0.02 * _normalised(np.exp(-(across**2) / (2 * max(0.5 * sigma, 0.3) ** 2) - np.abs(along) / length))
    return (rows, cols), stamp


def _normalised(image: np.ndarray) -> np.ndarray:
    total = image.sum()
    return image / total if total > 0 else image


def _colour_factors(colour_gr: float, colour_ri: float) -> np.ndarray:
    """Flux in g, r, i relative to r for colours in magnitudes."""
    return np.array([10 ** (-0.4 * colour_gr), 1.0, 10 ** (0.4 * colour_ri)])


def _structure(p: GalaxyParameters, grid: _Grid) -> dict[str, np.ndarray]:
    """Unconvolved unit-flux images of each component, and the face-on-normalised dust column."""
    x0, y0, pa = p.center_x_px, p.center_y_px, p.position_angle_error_deg
    cos_i = math.cos(math.radians(p.inclination_deg))
    sin_i = math.sin(math.radians(p.inclination_deg))
    u, v = grid.galaxy_frame(x0, y0, pa)
    disk = np.clip(grid.inclined_disk(x0, y0, pa, p.scale_length_px, p.z0_px, p.inclination_deg), 0, None)
    in_plane_cos = math.hypot(cos_i, IN_PLANE_THICKNESS * sin_i)  # projection of thin in-plane features
    plane_u, plane_v = u, v / in_plane_cos
    radius = np.hypot(plane_u, plane_v)
    azimuth = np.arctan2(plane_v, plane_u)
    h = p.scale_length_px
    if p.arm_amplitude > 0:
        winding = np.log(radius / h + 0.1) / math.tan(math.radians(p.arm_pitch_deg))
        arms = np.cos(p.arm_count * (azimuth - winding) - math.radians(p.arm_phase_deg))
        disk = disk * (1 + p.arm_amplitude * cos_i * arms * (1 - np.exp(-((radius / h) ** 2))))
    if p.lopsidedness > 0:
        disk = disk * np.clip(1 + p.lopsidedness * radius / h * np.cos(azimuth - math.radians(p.lopsided_angle_deg)), 0, None)
    components = {"disk": _normalised(disk)}
    q_bulge = float(hubble_axis_ratio(p.inclination_deg, p.bulge_q0))
    n = p.bulge_sersic_n
    b_n = 2 * n - 1 / 3 + 0.009876 / n
    bulge_radius = np.hypot(u, v / q_bulge) / max(p.bulge_re_px, 0.3)
    components["bulge"] = _normalised(np.exp(-b_n * bulge_radius ** (1 / n)))
    angle = math.radians(p.bar_angle_deg)
    bar_u = math.cos(angle) * plane_u + math.sin(angle) * plane_v
    bar_v = -math.sin(angle) * plane_u + math.cos(angle) * plane_v
    bar_m2 = (bar_u / p.bar_length_px) ** 2 + (bar_v / (p.bar_length_px * p.bar_axis_ratio)) ** 2
    components["bar"] = _normalised(np.clip(1 - bar_m2, 0, None) ** 2)
    clumps = np.zeros_like(u)
    for clump_radius, clump_angle, sigma in p.clumps:
        cu = clump_radius * math.cos(math.radians(clump_angle))
        cv = clump_radius * math.sin(math.radians(clump_angle)) * in_plane_cos
        clumps += np.exp(-((u - cu) ** 2 / (2 * sigma**2) + (v - cv) ** 2 / (2 * (sigma * in_plane_cos) ** 2)))
    components["clumps"] = _normalised(clumps)
    if p.companion is not None:
        c = p.companion
        components["companion"] = np.clip(grid.inclined_disk(
            x0 + c.x_px, y0 + c.y_px, c.position_angle_deg, c.scale_length_px, 0.15 * c.scale_length_px / MOMENT_THICKNESS,
            c.inclination_deg,
        ), 0, None)
    dust_scale = DUST_SCALE_PER_H * h
    dust = grid.inclined_disk(x0, y0, pa, dust_scale, DUST_HEIGHT_PER_Z0 * p.z0_px, p.inclination_deg)
    # the projected column, in units of the face-on central column: 2 pi h_d^2 per unit mass
    components["dust_column"] = np.clip(dust, 0, None) * 2 * np.pi * dust_scale**2
    return components


def _attenuation(tau: np.ndarray, inclination_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Transmitted fractions of disk and bulge light for line-of-sight optical depth ``tau``.

    Disk: a sandwich of light in front of, mixed with and behind the dust layer, fully mixed when
    edge-on (the line of sight then runs inside the layer). Bulge: half in front, half behind.
    """
    mixed = DUST_MIXED_FRACTION + (1 - DUST_MIXED_FRACTION) * math.sin(math.radians(inclination_deg)) ** 4
    tau = np.maximum(tau, 1e-6)
    screen = np.exp(-tau)
    disk = (1 - mixed) / 2 * (1 + screen) + mixed * -np.expm1(-tau) / tau
    return disk, 0.5 * (1 + screen)


def render_galaxy(p: GalaxyParameters, *, size: int) -> np.ndarray:
    """Render one galaxy: (3, size, size) float32 in nanomaggies per pixel, bands g, r, i, NaN = missing.

    Pure: the same parameters always give the same image (noise is drawn from ``p.noise_seed``).
    """
    if size < 8:
        raise ValueError(f"size {size}: expected at least 8 pixels")
    grid = _grid(size)
    parts = _structure(p, grid)
    disk_colour = _colour_factors(p.disk_colour_gr, p.disk_colour_ri)
    bulge_colour = _colour_factors(p.bulge_colour_gr, p.bulge_colour_ri)
    clump_colour = _colour_factors(p.clump_colour_gr, p.disk_colour_ri - 0.1)
    disk_weight = (1 - p.bulge_to_total) * p.flux_r
    disk_stars = (1 - p.bar_fraction - p.clump_fraction) * parts["disk"] + p.bar_fraction * parts["bar"]
    area = np.pi * p.r25_px**2 * float(hubble_axis_ratio(p.inclination_deg, p.q0))
    sky_sigma_r = p.flux_r / (p.snr * math.sqrt(area))
    rng = np.random.default_rng(p.noise_seed)
    stamps = [_star_stamp(grid, star, p.psf_fwhm_px) for star in p.stars]
    bands = []
    for band, colour_index in zip(BANDS, range(3)):
        wavelength_ratio = WAVELENGTH_UM["r"] / WAVELENGTH_UM[band]
        disk_transmission, bulge_transmission = _attenuation(p.dust_tau_r * wavelength_ratio * parts["dust_column"], p.inclination_deg)
        image = disk_weight * disk_transmission * (
            disk_colour[colour_index] * disk_stars + clump_colour[colour_index] * p.clump_fraction * parts["clumps"]
        )
        image += p.bulge_to_total * p.flux_r * bulge_colour[colour_index] * bulge_transmission * parts["bulge"]
        if p.companion is not None:
            image += p.companion.flux_ratio * p.flux_r * disk_colour[colour_index] * parts["companion"]
        fwhm = p.psf_fwhm_px * wavelength_ratio**0.2
        image = grid.convolve_psf(image, fwhm)
        for star, (window, stamp) in zip(p.stars, stamps):
            star_colour = _colour_factors(star.colour_gr, 0.4 * star.colour_gr)[colour_index]
            image[window] += star.flux_ratio * p.flux_r * star_colour * stamp
        image = grid.crop(image)
        if any(star.saturated for star in p.stars):
            image = np.minimum(image, 0.3 * image.max())
        sigma = sky_sigma_r * SKY_SIGMA_PER_R[band]
        if p.noise:
            ramp = (np.arange(size) - (size - 1) / 2) / size
            image = image + sigma * (p.sky_gradient[0] * ramp[None, :] + p.sky_gradient[1] * ramp[:, None])
            shot = np.sqrt(np.clip(image, 0, None) / SHOT_NOISE_GAIN)
            image = image + rng.normal(0.0, 1.0, image.shape) * np.sqrt(sigma**2 + shot**2)
        bands.append(image)
    pixels = np.stack(bands).astype(np.float32)
    for row0, row1, col0, col1 in p.missing:
        pixels[:, row0:row1, col0:col1] = np.nan
    return pixels


@dataclasses.dataclass(frozen=True)
class SimulationOverrides:
    """Scalings of the simulator's observing conditions for evaluation sets beyond the training ranges.

    ``psf_scale`` multiplies every galaxy's seeing FWHM (``SEEING_FWHM_ARCSEC``), ``sky_noise_scale`` its
    sky noise (``SKY_SIGMA_PER_R``; the integrated S/N falls by the same factor, so the truth's ``snr``
    stays what the image holds). The defaults change nothing: the same galaxies, bit for bit; other
    values keep every drawn parameter and the noise stream, so the sets differ in that one condition.
    """

    psf_scale: float = 1.0
    sky_noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.psf_scale > 0 and self.sky_noise_scale > 0):
            raise ValueError(f"{self}: expected positive scales")

    def apply(self, p: GalaxyParameters) -> GalaxyParameters:
        return dataclasses.replace(p, psf_fwhm_px=p.psf_fwhm_px * self.psf_scale, snr=p.snr / self.sky_noise_scale)


def _label_plan(n: int, face_on_fraction: float, reject_fraction: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    n_face_on = round(n * face_on_fraction)
    n_reject = round(n * reject_fraction)
    plan = [("face_on", "")] * n_face_on
    plan += [("reject", REJECT_REASONS[k % len(REJECT_REASONS)]) for k in range(n_reject)]
    plan += [("accept", "")] * (n - len(plan))
    order = rng.permutation(n)
    return [plan[k] for k in order]


def simulate_galaxies(
    n: int,
    *,
    size: int,
    seed: int,
    split: str = "train",
    face_on_fraction: float = 0.1,
    reject_fraction: float = 0.2,
    overrides: SimulationOverrides = SimulationOverrides(),
) -> SimulatedGalaxies:
    """Simulate ``n`` galaxies with exact label fractions, reproducibly for (seed, split).

    Parameters
    ----------
    n : int
        Number of galaxies (0 gives an empty set).
    size : int
        Image side in pixels.
    seed : int
        Random seed; each split draws from its own stream, so splits never share galaxies.
    split : {"train", "validation", "test", "bench"}
        Which stream of the seed.
    face_on_fraction, reject_fraction : float
        Fractions labelled ``face_on`` and ``reject`` (reasons in equal shares).
    overrides : SimulationOverrides
        Observing conditions scaled beyond the training ranges (default: none).
    """
    if n < 0:
        raise ValueError(f"n = {n}: expected a count >= 0")
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {sorted(SPLITS)}")
    rng = np.random.default_rng([int(seed), SPLITS[split]])
    plan = _label_plan(n, face_on_fraction, reject_fraction, rng)
    parameters = tuple(overrides.apply(draw_parameters(rng, size=size, label=label, reason=reason)) for label, reason in plan)
    images = np.stack([render_galaxy(p, size=size) for p in parameters]) if n else np.zeros((0, 3, size, size), np.float32)
    return SimulatedGalaxies(images=images, parameters=parameters)


def replace(p: GalaxyParameters, **changes: object) -> GalaxyParameters:
    """A copy of galaxy parameters with some fields changed (e.g. nuisances switched off)."""
    return dataclasses.replace(p, **changes)


def stack_truth(galaxies: Sequence[GalaxyParameters]) -> dict[str, np.ndarray]:
    """The truth catalogue of a set as columns (inclination, label, reason, B/T, q0, sizes)."""
    names = ("inclination_deg", "label", "reason", "bulge_to_total", "q0", "d25_arcsec", "pixel_scale_arcsec", "snr")
    return {name: np.array([getattr(p, name) for p in galaxies]) for name in names}
