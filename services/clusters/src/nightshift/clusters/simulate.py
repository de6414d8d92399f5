"""A simulated Planck HFI sky with galaxy clusters of known truth, as full-sky HEALPix maps.

Every band map (Galactic coordinates, RING ordering) is the sum of

- the CMB: a Gaussian realisation (``healpy.synalm``) of an analytic fit to the Planck best-fit
  TT spectrum (acoustic peaks near l = 220, 540, 810, Silk damping), identical in every band in
  K_CMB;
- thermal SZ of the clusters: Compton-y painted from a GNFW pressure profile (Arnaud et al. 2010
  shape; Y5R500 from the Planck 2013 XX Y-M relation with 1-b = 0.8; theta500 from M500 and z in
  a flat LCDM cosmology, H0 = 70, Om = 0.3), times the exact non-relativistic spectrum
  ``g(x) = x coth(x/2) - 4``: a decrement below 217 GHz, null at 217, increment above;
- thermal dust: a modified black body (T = 19.6 K, beta = 1.55, Planck 2013 XI) whose 857 GHz
  amplitude grows towards the Galactic plane as 1/sin|b| and is modulated by a log-normal field
  with a power-law spectrum C_l ~ l^-2.7;
- the CIB: a Gaussian field with C_l ~ l^-1.2 (about 0.04 MJy/sr rms at 857 GHz), one template
  scaled across bands by a modified black body (T = 18 K, beta = 1.5, observed frame);
- radio (S ~ nu^-0.5) and infrared (S ~ nu^3) point sources with power-law counts;

convolved with each band's Gaussian beam (``HFI_BANDS``), plus white noise at the Planck depths,
in K_CMB for 100-353 GHz and MJy/sr for 545 and 857 GHz (the units of the Planck maps). The
optional seventh map is a MILCA-like y-map: the true y at 10' resolution plus white noise.

The clusters are placed independently of every real catalogue: one PSZ2 analogue per PSZ2
cluster (its catalogue M500 and z when known) at a random position outside the Galactic plane
mask, plus ``random_clusters`` at random positions with masses down to low signal-to-noise. A
cross-match of a simulated sky's detections with PSZ2, MCXC or redMaPPer therefore finds only
chance coincidences. Each cluster's S/N is measured as the Planck catalogues measure theirs: the
multi-frequency matched filter (:mod:`nightshift.clusters.matched_filter`) on a patch centred on it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import healpy as hp
import numpy as np
from astropy.cosmology import FlatLambdaCDM

from nightshift.clusters.catalogues import Psz2Catalogue
from nightshift.clusters.config import BandInfo, ClustersConfig

__all__ = [
    "T_CMB_K",
    "COSMOLOGY",
    "ClusterTruth",
    "SkyMaps",
    "tsz_spectrum",
    "k_cmb_to_mjy_sr",
    "cmb_power_spectrum",
    "gnfw_projected_profile",
    "cluster_scales",
    "draw_clusters",
    "paint_compton_y",
    "band_maps",
    "simulate_sky",
]

T_CMB_K = 2.7255
COSMOLOGY = FlatLambdaCDM(H0=70.0, Om0=0.3, Tcmb0=T_CMB_K)
_H_OVER_K = 0.0479924  # h / k_B in K per GHz
_I0_MJY_SR = 270.33  # 2 (k T_CMB)^3 / (h c)^2 in MJy/sr
_ARCMIN_PER_RAD = 180.0 * 60.0 / math.pi

# Arnaud et al. (2010) universal pressure profile (Planck 2013 V parameters) and Planck 2013 XX Y-M.
_GNFW_C500, _GNFW_GAMMA, _GNFW_ALPHA, _GNFW_BETA = 1.177, 0.3081, 1.0510, 5.4905
_YM_LOG_YSTAR, _YM_ALPHA, _YM_ONE_MINUS_B, _YM_PIVOT_MSUN = -0.19, 1.79, 0.8, 6.0e14
_TRUNCATION_R500 = 5.0

_DUST_T_K, _DUST_BETA, _DUST_857_MJY_SR, _DUST_LOGNORMAL_SIGMA = 19.6, 1.55, 0.6, 0.8
_CIB_T_K, _CIB_BETA, _CIB_857_CL_L1000 = 18.0, 1.5, 5.0e-9  # MJy^2/sr at l = 1000
_RADIO_INDEX, _RADIO_SMIN_JY, _RADIO_SLOPE = -0.5, 0.2, 2.3  # S_100, dN/dS ~ S^-slope
_IR_INDEX, _IR_SMIN_JY, _IR_SLOPE = 3.0, 0.5, 2.5  # S_857
_SOURCE_SMAX_JY = 20.0
_ANALOGUE_POSITION_STREAM = 1  # second entropy word of the PSZ2 analogues' position generator


@dataclasses.dataclass(frozen=True)
class ClusterTruth:
    """The injected clusters, one entry per cluster in every array.

    Attributes
    ----------
    glon, glat : ndarray
        Galactic position in degrees.
    m500_msun : ndarray
        M500 in solar masses.
    z : ndarray
        Redshift.
    theta500_arcmin : ndarray
        Angular R500 in arcmin.
    y5r500_arcmin2 : ndarray
        Integrated Compton parameter within 5 R500, in arcmin^2.
    snr : ndarray
        Matched-filter signal-to-noise in the simulated maps (NaN until measured).
    base_cell : ndarray
        nside = 2 NESTED HEALPix cell of the position.
    psz2_analogue : ndarray of str
        For a PSZ2 analogue, the name of the PSZ2 cluster whose M500 and z it takes (it is not at
        that cluster's position); "" for a random-population cluster.
    """

    glon: np.ndarray
    glat: np.ndarray
    m500_msun: np.ndarray
    z: np.ndarray
    theta500_arcmin: np.ndarray
    y5r500_arcmin2: np.ndarray
    snr: np.ndarray
    base_cell: np.ndarray
    psz2_analogue: np.ndarray

    def __len__(self) -> int:
        return len(self.glon)

    def select(self, keep: np.ndarray) -> ClusterTruth:
        """The clusters where the boolean or index array ``keep`` selects."""
        return ClusterTruth(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    def in_cells(self, cells: Sequence[int]) -> ClusterTruth:
        return self.select(np.isin(self.base_cell, list(cells)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> ClusterTruth:
        return cls(**{f.name: np.asarray(arrays[f.name]) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class SkyMaps:
    """Full-sky band maps and the truth behind them.

    ``maps`` has shape (bands, 12 nside^2), float32, RING ordering, Galactic coordinates, each
    band in its ``BandInfo.unit``.
    """

    maps: np.ndarray
    nside: int
    bands: tuple[BandInfo, ...]
    truth: ClusterTruth


def tsz_spectrum(frequency_ghz: np.ndarray | float) -> np.ndarray:
    """Thermal SZ spectral function ``g(x) = x coth(x/2) - 4``: Delta T / T_CMB per unit y.

    Negative below 217 GHz (decrement), zero near 217 GHz, positive above (increment).
    """
    x = _H_OVER_K * np.asarray(frequency_ghz, dtype=float) / T_CMB_K
    return x / np.tanh(x / 2.0) - 4.0


def k_cmb_to_mjy_sr(frequency_ghz: np.ndarray | float) -> np.ndarray:
    """dB_nu/dT at T_CMB: MJy/sr per K_CMB (58.0 at 545 GHz, 2.27 at 857 GHz)."""
    x = _H_OVER_K * np.asarray(frequency_ghz, dtype=float) / T_CMB_K
    return _I0_MJY_SR / T_CMB_K * x**4 * np.exp(x) / np.expm1(x) ** 2


def _modified_black_body(frequency_ghz: float, reference_ghz: float, temperature_k: float, beta: float) -> float:
    """Intensity ratio I(nu) / I(nu_ref) of a modified black body nu^beta B_nu(T)."""
    def planck(nu: float) -> float:
        return nu**3 / math.expm1(_H_OVER_K * nu / temperature_k)
    return (frequency_ghz / reference_ghz) ** beta * planck(frequency_ghz) / planck(reference_ghz)


def cmb_power_spectrum(lmax: int) -> np.ndarray:
    """An analytic fit to the Planck best-fit CMB TT spectrum: C_l in K_CMB^2 for l = 0..lmax.

    D_l = l(l+1)C_l/2pi follows acoustic peaks (5300, 3100, 2100 uK^2 at l ~ 220, 540, 810), the
    Sachs-Wolfe plateau (~1000 uK^2) and the damping tail (250 uK^2 at l = 2000) to 10-20 percent.
    """
    ell = np.arange(lmax + 1, dtype=float)
    damping = np.exp(-(ell / 1144.0) ** 1.673)
    rise = 1.0 - np.exp(-((ell / 110.0) ** 2))
    oscillation = 2615.0 * np.exp(-(ell - 220.0) / 351.0) * np.cos(2.0 * np.pi * (ell - 220.0) / 300.0)
    d_ell_uk2 = damping * (1000.0 + rise * (2143.0 + oscillation))
    cl = np.zeros(lmax + 1)
    cl[2:] = 2.0 * np.pi * d_ell_uk2[2:] / (ell[2:] * (ell[2:] + 1.0)) * 1e-12
    return cl


def _gnfw_pressure(x: np.ndarray) -> np.ndarray:
    cx = _GNFW_C500 * x
    return 1.0 / (cx**_GNFW_GAMMA * (1.0 + cx**_GNFW_ALPHA) ** ((_GNFW_BETA - _GNFW_GAMMA) / _GNFW_ALPHA))


@functools.cache
def _gnfw_tables() -> tuple[np.ndarray, np.ndarray, float]:
    """Projected profile on a grid of X = theta/theta500 (unit cylinder integral) and Y5R500/Y500."""
    x_grid = np.geomspace(1e-3, _TRUNCATION_R500, 400)
    depth = np.geomspace(1e-5, _TRUNCATION_R500, 2000)
    projected = np.empty_like(x_grid)
    for i, x in enumerate(x_grid):
        length = depth[depth < math.sqrt(_TRUNCATION_R500**2 - x**2)]
        projected[i] = 2.0 * np.trapezoid(_gnfw_pressure(np.hypot(x, length)), length) if len(length) > 1 else 0.0
    projected /= 2.0 * np.pi * np.trapezoid(projected * x_grid, x_grid)
    radius = np.geomspace(1e-5, _TRUNCATION_R500, 4000)
    shell = _gnfw_pressure(radius) * radius**2
    y5_over_y500 = np.trapezoid(shell, radius) / np.trapezoid(shell[radius <= 1.0], radius[radius <= 1.0])
    return x_grid, projected, float(y5_over_y500)


def gnfw_projected_profile(x: np.ndarray) -> np.ndarray:
    """The GNFW (Arnaud) Compton-y profile at X = theta / theta500, normalised to unit Y5R500.

    ``y(theta) = Y5R500 / theta500^2 * gnfw_projected_profile(theta / theta500)`` with Y5R500
    and theta500 in the same angular units; zero beyond 5 theta500. Values below X = 1e-3 are
    held at the X = 1e-3 value (the cusp is finite after any beam).
    """
    x_grid, projected, _ = _gnfw_tables()
    x = np.asarray(x, dtype=float)
    return np.where(x <= _TRUNCATION_R500, np.interp(np.maximum(x, x_grid[0]), x_grid, projected), 0.0)


def cluster_scales(m500_msun: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """theta500 (arcmin) and Y5R500 (arcmin^2) of clusters of mass M500 (solar masses) at redshift z.

    R500 encloses 500 times the critical density at z; Y500 follows the Planck 2013 XX scaling
    ``E(z)^-2/3 D_A^2 Y500 = 10^-0.19 1e-4 Mpc^2 ((1-b) M500 / 6e14 Msun)^1.79`` with 1-b = 0.8,
    and Y5R500 = Y500 times the GNFW ratio (about 1.8).
    """
    m500_msun, z = np.asarray(m500_msun, float), np.asarray(z, float)
    if np.any(m500_msun <= 0) or np.any(z <= 0):
        raise ValueError("m500_msun and z must be positive")
    rho_crit = COSMOLOGY.critical_density(z).to("Msun / Mpc3").value
    r500_mpc = (3.0 * m500_msun / (4.0 * math.pi * 500.0 * rho_crit)) ** (1.0 / 3.0)
    d_a_mpc = COSMOLOGY.angular_diameter_distance(z).to("Mpc").value
    theta500_arcmin = r500_mpc / d_a_mpc * _ARCMIN_PER_RAD
    e_z = COSMOLOGY.efunc(z)
    y500_mpc2 = 1e-4 * 10**_YM_LOG_YSTAR * e_z ** (2.0 / 3.0) * (_YM_ONE_MINUS_B * m500_msun / _YM_PIVOT_MSUN) ** _YM_ALPHA
    y500_arcmin2 = y500_mpc2 / d_a_mpc**2 * _ARCMIN_PER_RAD**2
    return theta500_arcmin, y500_arcmin2 * _gnfw_tables()[2]


def _positions_outside_plane(rng: np.random.Generator, count: int, min_abs_glat_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``count`` positions uniform on the sphere where |b| >= ``min_abs_glat_deg``: (glon, glat) in degrees."""
    lon = rng.uniform(0.0, 360.0, count)
    sin_b = rng.uniform(math.sin(math.radians(min_abs_glat_deg)), 1.0, count) * rng.choice([-1.0, 1.0], count)
    return lon, np.degrees(np.arcsin(sin_b))


def draw_clusters(config: ClustersConfig, rng: np.random.Generator, psz2: Psz2Catalogue | None) -> ClusterTruth:
    """The clusters to inject: PSZ2 analogues plus random ones, all placed independently of any real catalogue.

    Each PSZ2 cluster gives one analogue with its catalogue M500 and z, at a position uniform on
    the sphere outside the Galactic plane mask (|b| >= ``config.galactic_mask_deg``; 4 % of PSZ2
    lies inside it); PSZ2 clusters without redshift give z uniform in 0.1..0.6 and M500
    log-uniform in 3..8e14 Msun (detectable, as they were detected). Random clusters get M500
    log-uniform over ``config.random_m500_range_msun``, z uniform over ``config.random_z_range``
    and a position uniform on the whole sphere. The analogues' positions are drawn from their own
    generator (seeded by ``config.seed``), not from ``rng``: no other component's draws depend on them.
    """
    n_random = config.random_clusters
    lon = rng.uniform(0.0, 360.0, n_random)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_random)))
    log_m = np.log10(config.random_m500_range_msun)
    mass = 10 ** rng.uniform(log_m[0], log_m[1], n_random)
    z = rng.uniform(*config.random_z_range, n_random)
    names = np.full(n_random, "", dtype=object)
    if psz2 is not None and len(psz2):
        known = psz2.m500_msun > 0
        psz2_mass = np.where(known, psz2.m500_msun, 10 ** rng.uniform(math.log10(3e14), math.log10(8e14), len(psz2)))
        psz2_z = np.where(psz2.z > 0, psz2.z, rng.uniform(0.1, 0.6, len(psz2)))
        analogue_rng = np.random.default_rng((config.seed, _ANALOGUE_POSITION_STREAM))
        analogue_lon, analogue_lat = _positions_outside_plane(analogue_rng, len(psz2), config.galactic_mask_deg)
        lon, lat = np.concatenate([analogue_lon, lon]), np.concatenate([analogue_lat, lat])
        mass, z = np.concatenate([psz2_mass, mass]), np.concatenate([psz2_z, z])
        names = np.concatenate([psz2.name.astype(object), names])
    theta500, y5r500 = cluster_scales(mass, z)
    base_cell = hp.ang2pix(2, lon, lat, lonlat=True, nest=True)
    return ClusterTruth(
        glon=lon, glat=lat, m500_msun=mass, z=z, theta500_arcmin=theta500, y5r500_arcmin2=y5r500,
        snr=np.full(len(lon), np.nan), base_cell=base_cell, psz2_analogue=names.astype(str),
    )


def paint_compton_y(nside: int, truth: ClusterTruth) -> np.ndarray:
    """Full-sky Compton-y map (RING) of the clusters, each conserving its Y5R500 exactly.

    The profile is evaluated at pixel centres no closer than half a pixel to the cluster centre
    (the pixel-averaged cusp) and each cluster is rescaled so its pixels sum to Y5R500.
    """
    y_map = np.zeros(hp.nside2npix(nside))
    pixel_sr = hp.nside2pixarea(nside)
    half_pixel_arcmin = 0.5 * hp.nside2resol(nside, arcmin=True)
    vectors = hp.ang2vec(truth.glon, truth.glat, lonlat=True)
    for vector, theta500, y5r500 in zip(vectors, truth.theta500_arcmin, truth.y5r500_arcmin2):
        radius_arcmin = max(_TRUNCATION_R500 * theta500, 2.0 * half_pixel_arcmin)
        pixels = hp.query_disc(nside, vector, math.radians(radius_arcmin / 60.0), inclusive=True)
        cos_sep = np.clip(np.stack(hp.pix2vec(nside, pixels), axis=-1) @ vector, -1.0, 1.0)
        separation = np.maximum(np.degrees(np.arccos(cos_sep)) * 60.0, half_pixel_arcmin)
        profile = gnfw_projected_profile(separation / theta500)
        if profile.sum() <= 0:  # smaller than a pixel: all of Y in the nearest pixel
            profile = (separation == separation.min()).astype(float)
        y5r500_sr = y5r500 / _ARCMIN_PER_RAD**2
        y_map[pixels] += profile * (y5r500_sr / (profile.sum() * pixel_sr))
    return y_map


def _power_law_field(nside: int, lmax: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """A unit-variance Gaussian field with C_l ~ l^slope (l >= 2), as alm."""
    cl = np.zeros(lmax + 1)
    cl[2:] = np.arange(2, lmax + 1, dtype=float) ** slope
    cl /= np.sum((2 * np.arange(lmax + 1) + 1) * cl) / (4 * np.pi)
    return _synalm(cl, lmax, rng)


def _synalm(cl: np.ndarray, lmax: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian alm of spectrum ``cl``, drawn from ``rng`` (healpy's own synalm uses global state)."""
    ell, m = hp.Alm.getlm(lmax)
    amplitude = np.sqrt(cl[ell])
    real, imag = rng.standard_normal(len(ell)), rng.standard_normal(len(ell))
    alm = amplitude * np.where(m == 0, real, (real + 1j * imag) / math.sqrt(2.0))
    return alm.astype(np.complex128)


def _point_source_map(nside: int, count: int, smin_jy: float, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Sources with dN/dS ~ S^-slope above ``smin_jy`` (capped), as MJy/sr at the reference frequency."""
    flux_jy = np.minimum(smin_jy * (1.0 - rng.uniform(size=count)) ** (-1.0 / (slope - 1.0)), _SOURCE_SMAX_JY)
    lon = rng.uniform(0.0, 360.0, count)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, count)))
    source_map = np.zeros(hp.nside2npix(nside))
    np.add.at(source_map, hp.ang2pix(nside, lon, lat, lonlat=True), flux_jy * 1e-6 / hp.nside2pixarea(nside))
    return source_map


def _dust_857_map(nside: int, lmax: int, rng: np.random.Generator) -> np.ndarray:
    """Thermal dust intensity at 857 GHz in MJy/sr: 1/sin|b| envelope times a log-normal field."""
    field = hp.alm2map(_power_law_field(nside, lmax, -2.7, rng), nside, lmax=lmax)
    _, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), lonlat=True)
    envelope = _DUST_857_MJY_SR / np.sin(np.radians(np.maximum(np.abs(lat), 0.5)))
    return envelope * np.exp(_DUST_LOGNORMAL_SIGMA * field - _DUST_LOGNORMAL_SIGMA**2 / 2.0)


def band_maps(
    config: ClustersConfig, y_map: np.ndarray, rng: np.random.Generator, *, components: Sequence[str] | None = None,
) -> np.ndarray:
    """Observed band maps: the sky components scaled to each band, beam-convolved, plus noise.

    Parameters
    ----------
    config : ClustersConfig
        ``nside`` and the bands (``config.bands``).
    y_map : ndarray
        Compton-y of the clusters, shape (12 nside^2,), RING.
    rng : numpy.random.Generator
        Source of every random draw (CMB, dust, CIB, sources, noise).
    components : sequence of str, optional
        Any of "cmb", "tsz", "dust", "cib", "sources", "noise" (default: all). The random draws
        are made whatever is kept, so a component looks the same with or without the others.

    Returns
    -------
    ndarray
        Shape (bands, 12 nside^2), float32, RING, in each band's unit.
    """
    keep = set(components or ("cmb", "tsz", "dust", "cib", "sources", "noise"))
    unknown = keep - {"cmb", "tsz", "dust", "cib", "sources", "noise"}
    if unknown:
        raise ValueError(f"components {sorted(unknown)}: expected cmb, tsz, dust, cib, sources or noise")
    nside = config.nside
    lmax = 2 * nside
    npix = hp.nside2npix(nside)
    alm_cmb = _synalm(cmb_power_spectrum(lmax), lmax, rng)
    alm_y = hp.map2alm(y_map, lmax=lmax, iter=1)
    alm_dust = hp.map2alm(_dust_857_map(nside, lmax, rng), lmax=lmax, iter=1)
    cib_cl = np.zeros(lmax + 1)
    cib_cl[2:] = _CIB_857_CL_L1000 * (np.arange(2, lmax + 1) / 1000.0) ** -1.2
    alm_cib = _synalm(cib_cl, lmax, rng)
    alm_radio = hp.map2alm(_point_source_map(nside, config.radio_sources, _RADIO_SMIN_JY, _RADIO_SLOPE, rng), lmax=lmax, iter=0)
    alm_ir = hp.map2alm(_point_source_map(nside, config.ir_sources, _IR_SMIN_JY, _IR_SLOPE, rng), lmax=lmax, iter=0)
    pixel_arcmin = hp.nside2resol(nside, arcmin=True)
    maps = np.empty((len(config.bands), npix), dtype=np.float32)
    for index, band in enumerate(config.bands):
        noise = rng.standard_normal(npix) * (band.noise_depth / pixel_arcmin)
        if band.unit == "y":
            alm = alm_y if "tsz" in keep else np.zeros_like(alm_y)
        else:
            nu = band.frequency_ghz
            to_k = 1.0 / k_cmb_to_mjy_sr(nu)  # MJy/sr -> K_CMB at this band
            terms = {
                "cmb": (alm_cmb, 1.0),
                "tsz": (alm_y, T_CMB_K * float(tsz_spectrum(nu))),
                "dust": (alm_dust, _modified_black_body(nu, 857.0, _DUST_T_K, _DUST_BETA) * to_k),
                "cib": (alm_cib, _modified_black_body(nu, 857.0, _CIB_T_K, _CIB_BETA) * to_k),
                "sources": (alm_radio, (nu / 100.0) ** _RADIO_INDEX * to_k),
            }
            alm = sum((scale * a for name, (a, scale) in terms.items() if name in keep), np.zeros_like(alm_cmb))
            if "sources" in keep:
                alm = alm + alm_ir * ((nu / 857.0) ** _IR_INDEX * to_k)
        beam = hp.gauss_beam(math.radians(band.beam_fwhm_arcmin / 60.0), lmax=lmax)
        sky = hp.alm2map(hp.almxfl(alm, beam), nside, lmax=lmax)
        if band.unit == "MJy/sr":
            sky *= k_cmb_to_mjy_sr(band.frequency_ghz)
        maps[index] = sky + (noise if "noise" in keep else 0.0)
    return maps


def simulate_sky(config: ClustersConfig, psz2: Psz2Catalogue | None, *, components: Sequence[str] | None = None) -> SkyMaps:
    """The whole simulated sky of ``config`` (seeded by ``config.seed``): maps and truth, S/N not yet measured.

    Use :func:`nightshift.clusters.patches.measure_truth_snr` to fill ``truth.snr``.
    """
    rng = np.random.default_rng(config.seed)
    truth = draw_clusters(config, rng, psz2)
    y_map = paint_compton_y(config.nside, truth)
    maps = band_maps(config, y_map, rng, components=components)
    return SkyMaps(maps=maps, nside=config.nside, bands=config.bands, truth=truth)
