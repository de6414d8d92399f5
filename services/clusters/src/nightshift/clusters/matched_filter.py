"""The classical, non-learning cluster finder: the multi-frequency matched filter (MMF).

Planck's cluster catalogues come from the MMF (Herranz et al. 2002; Melin, Bartlett & Delabrouille
2006; Planck 2013 XXIX, 2015 XXVII). On each flat patch of the six HFI bands:

- the data d_nu(k) (Fourier modes of each band in K_CMB, a plane removed per band) are modelled as
  ``d_nu(k) = Y * a_nu(k) * tau_theta(k) + n_nu(k)``, with the tSZ spectral signature
  ``a_nu(k) = T_CMB g(nu) B_nu(k)`` (the service's band centres and Gaussian beams,
  :data:`nightshift.clusters.config.HFI_BANDS`) and ``tau_theta`` the unit-Y5R500 GNFW (Arnaud 2010)
  profile of size theta500;
- the cross-band noise power ``P_nu nu'(k)`` (everything but the cluster: CMB, dust, CIB, sources,
  other clusters, instrument noise) is estimated from the patch itself, averaged in rings of |k|;
- the filter ``Psi_theta(k) = sigma_theta^2 tau_theta(k) P^-1(k) a(k)``, with
  ``sigma_theta^-2 = sum_k tau_theta(k)^2 a^H P^-1 a``, gives an unbiased estimate of Y at every pixel
  with noise ``sigma_theta``; S/N = Y-hat / sigma_theta;
- over the size grid ``theta500_arcmin`` (default :data:`FILTER_THETA500_ARCMIN`), each pixel keeps
  the size of highest S/N; a detection is a peak of that S/N map above the threshold, with its size.

The injected ("true") S/N of a simulated cluster is ``Y5R500_true / sigma_theta(theta500_true)``
(:func:`mmf_sigma`), as the Planck papers bin completeness by the true Y over the filter noise at the
cluster, not by the S/N the filter measured there (which would carry its own noise fluctuation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nightshift.clusters.config import BandInfo
from nightshift.clusters.detections import Detections, merge_detections, sky_positions
from nightshift.clusters.simulate import T_CMB_K, gnfw_projected_profile, k_cmb_to_mjy_sr, tsz_spectrum

__all__ = [
    "FILTER_THETA500_ARCMIN",
    "MmfMaps",
    "band_data_k_cmb",
    "mmf_field_detections",
    "mmf_tile_detections",
    "mmf_in_chunks",
    "mmf_maps",
    "map_fwhm_arcmin",
    "mmf_sigma",
    "mmf_peaks",
    "snr_at",
    "multifrequency_snr",
    "profile_transfer",
    "tsz_response",
]

# theta500 of the filter bank: 1' to 16' in steps of 1.41 (the injected clusters span about 1.5'-20')
FILTER_THETA500_ARCMIN = tuple(float(t) for t in np.geomspace(1.0, 16.0, 9))
_RING_MIN_MODES = 24  # Fourier modes per ring of the noise estimate (a 6 x 6 cross-spectrum from fewer is noisy)
_REGULARISATION = 1e-3  # relative diagonal loading of each ring's cross-spectrum


def _spatial_frequencies(height: int, width: int, pixel_arcmin: float) -> np.ndarray:
    """|k| in radians per arcmin on the FFT grid, shape (height, width)."""
    ky = np.fft.fftfreq(height, d=pixel_arcmin)
    kx = np.fft.fftfreq(width, d=pixel_arcmin)
    return 2.0 * math.pi * np.hypot(*np.meshgrid(ky, kx, indexing="ij"))


def _gaussian_transfer(k: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
    sigma = fwhm_arcmin / math.sqrt(8.0 * math.log(2.0))
    return np.exp(-0.5 * (k * sigma) ** 2)


def band_data_k_cmb(patches: np.ndarray, bands: Sequence[BandInfo]) -> tuple[np.ndarray, list[BandInfo]]:
    """The HFI bands of (n, bands, H, W) patches in K_CMB, NaN filled with each band's patch median."""
    keep = [i for i, b in enumerate(bands) if b.unit in ("K_CMB", "MJy/sr")]
    selected = np.asarray(patches)[:, keep].astype(np.float64)
    for j, i in enumerate(keep):
        if bands[i].unit == "MJy/sr":
            selected[:, j] /= k_cmb_to_mjy_sr(bands[i].frequency_ghz)
    with np.errstate(all="ignore"):
        medians = np.nanmedian(selected.reshape(*selected.shape[:2], -1), axis=-1) if selected.size else np.zeros(selected.shape[:2])
    selected = np.where(np.isnan(selected), np.nan_to_num(medians)[..., None, None], selected)
    return np.nan_to_num(selected), [bands[i] for i in keep]


def tsz_response(k: np.ndarray, bands: Sequence[BandInfo], map_fwhm_arcmin: float = 0.0) -> np.ndarray:
    """a_nu(k) = T_CMB g(nu) B_nu(k): K_CMB per unit y in each band after its beam, shape (bands, *k.shape).

    ``map_fwhm_arcmin`` adds a Gaussian smoothing common to all bands (the HEALPix pixels the
    patches were sampled from, see :func:`map_fwhm_arcmin`), in quadrature with each beam.
    """
    return np.stack([T_CMB_K * float(tsz_spectrum(b.frequency_ghz))
                     * _gaussian_transfer(k, math.hypot(b.beam_fwhm_arcmin, map_fwhm_arcmin)) for b in bands])


def map_fwhm_arcmin(nside: int | None) -> float:
    """The resolution the patches of an nside map have beyond the beams: the pixel size (0 when unknown).

    The simulated maps are band-limited at l = 2 nside and sampled at the nearest pixel, so their
    smallest scales are about a HEALPix pixel (3.4' at nside 1024, 13.7' at 256); a template sharper
    than that overstates the S/N the data allow, most at low nside.
    """
    import healpy as hp

    return float(hp.nside2resol(nside, arcmin=True)) if nside else 0.0


def profile_transfer(height: int, width: int, pixel_arcmin: float, theta500_arcmin: float) -> np.ndarray:
    """DFT of the GNFW y profile of unit Y5R500 (arcmin^2) and size theta500, centred at pixel (0, 0).

    Real (the profile is symmetric about the origin of the periodic grid); the profile wraps
    around the patch, so the sum over pixels times the pixel area stays Y5R500 = 1.
    """
    dy = np.fft.fftfreq(height, d=1.0 / height) * pixel_arcmin
    dx = np.fft.fftfreq(width, d=1.0 / width) * pixel_arcmin
    radius = np.hypot(*np.meshgrid(dy, dx, indexing="ij"))
    profile = gnfw_projected_profile(np.maximum(radius, 0.5 * pixel_arcmin) / theta500_arcmin) / theta500_arcmin**2
    total = profile.sum() * pixel_arcmin**2
    if total <= 0:  # smaller than a pixel: all of Y in the central pixel
        profile = np.zeros_like(profile)
        profile[0, 0] = 1.0 / pixel_arcmin**2
    return np.fft.fft2(profile).real


def _rings(k: np.ndarray) -> tuple[np.ndarray, int]:
    """Ring index of each mode (k = 0 gets -1): unit rings in |k|, the innermost merged to >= _RING_MIN_MODES modes."""
    unit = k / k[k > 0].min()
    index = np.floor(unit + 0.5).astype(int)  # ring r holds r - 1/2 <= |k| < r + 1/2
    order = np.unique(index[index > 0])
    label = np.full(index.shape, -1)
    current, members = 0, 0
    for r in order:
        label[index == r] = current
        members += int((index == r).sum())
        if members >= _RING_MIN_MODES:
            current, members = current + 1, 0
    if members:  # a short last ring joins the previous one
        label[label == current] = max(current - 1, 0)
        current = max(current - 1, 0) + 1
    return label, int(label.max()) + 1


@dataclasses.dataclass(frozen=True)
class _Whitened:
    """Per patch: C(k) = a^H P^-1 d (combined data) and w(k) = a^H P^-1 a (signal weight), shapes (n, H, W)."""

    combined: np.ndarray
    weight: np.ndarray


def _whiten(data: np.ndarray, bands: Sequence[BandInfo], pixel_arcmin: float, subtract: np.ndarray | None = None,
            map_fwhm: float = 0.0) -> _Whitened:
    """Fourier modes of (n, bands, H, W) K_CMB data combined by the inverse of their own ring-averaged cross-spectrum.

    ``subtract`` (same shape as the FFT of ``data``), when given, is removed from the modes before
    the noise is estimated only (the known signal of a simulated cluster), not from the data combined.
    """
    n, nb, height, width = data.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    design = np.stack([np.ones(height * width), rows.ravel() - rows.mean(), cols.ravel() - cols.mean()], axis=1)
    flat = data.reshape(n, nb, -1)
    coefficients = flat @ design @ np.linalg.inv(design.T @ design)  # (n, nb, 3): a plane per band
    flat = flat - coefficients @ design.T
    scale = flat.std(axis=-1)
    scale = np.where(scale > 0, scale, 1.0)
    flat = flat / scale[..., None]
    spectra = np.fft.fft2(flat.reshape(n, nb, height, width))
    noisy = spectra if subtract is None else spectra - subtract / scale[..., None, None]
    k = _spatial_frequencies(height, width, pixel_arcmin)
    response = tsz_response(k, bands, map_fwhm)[None] / scale[..., None, None]  # (n, nb, H, W), per unit y of the scaled data
    label, n_rings = _rings(k)
    combined = np.zeros((n, height, width), complex)
    weight = np.zeros((n, height, width))
    eye = np.eye(nb)
    for ring in range(n_rings):
        modes = label == ring
        d = spectra[..., modes]  # (n, nb, M)
        e = noisy[..., modes]
        power = np.einsum("nbm,ncm->nbc", e, e.conj()).real / modes.sum()
        power += _REGULARISATION * eye * np.trace(power, axis1=1, axis2=2)[:, None, None] / nb
        inverse = np.linalg.inv(power)
        a = response[..., modes]  # (n, nb, M), real
        inverse_a = np.einsum("nbc,ncm->nbm", inverse, a)
        combined[:, modes] = np.einsum("nbm,nbm->nm", inverse_a, d)
        weight[:, modes] = np.einsum("nbm,nbm->nm", inverse_a, a)
    return _Whitened(combined, weight)


@dataclasses.dataclass(frozen=True)
class MmfMaps:
    """The MMF of a stack of patches.

    Attributes
    ----------
    snr : ndarray
        (n, H, W): the highest S/N over the filter sizes at each pixel.
    theta500_arcmin : ndarray
        (n, H, W): the size giving it.
    y5r500_arcmin2 : ndarray
        (n, H, W): the Y5R500 estimate at that size.
    sigma_arcmin2 : ndarray
        (n, sizes): the filter noise sigma_theta of each patch and size.
    sizes_arcmin : tuple of float
        The filter sizes.
    """

    snr: np.ndarray
    theta500_arcmin: np.ndarray
    y5r500_arcmin2: np.ndarray
    sigma_arcmin2: np.ndarray
    sizes_arcmin: tuple[float, ...]


def _check(patches: np.ndarray) -> np.ndarray:
    patches = np.asarray(patches)
    if patches.ndim != 4:
        raise ValueError(f"patches shape {patches.shape}: expected (n, bands, height, width)")
    return patches


def mmf_maps(
    patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float,
    theta500_arcmin: Sequence[float] = FILTER_THETA500_ARCMIN, iterations: int = 2, remove_snr: float = 4.0,
    map_fwhm: float = 0.0,
) -> MmfMaps:
    """The MMF of (n, bands, H, W) patches, each band in its unit (K_CMB or MJy/sr; other bands such as a y-map ignored).

    After each of ``iterations`` passes, the peaks above ``remove_snr`` (their estimated Y and size)
    are removed from the Fourier modes the noise is estimated from, and the filter is rebuilt: on a
    64 x 64 patch a cluster's own power otherwise takes a large share of the cross-band noise in the
    tSZ direction and lowers its own S/N (a bright cluster by half).
    """
    patches = _check(patches)
    sizes = tuple(float(t) for t in theta500_arcmin)
    n, _, height, width = patches.shape
    if n == 0:
        empty = np.zeros((0, height, width))
        return MmfMaps(empty, empty.copy(), empty.copy(), np.zeros((0, len(sizes))), sizes)
    data, hfi = band_data_k_cmb(patches, bands)
    if not hfi:
        raise ValueError(f"the MMF needs at least one HFI band, got {[b.name for b in bands]}")
    k = _spatial_frequencies(height, width, pixel_arcmin)
    response = tsz_response(k, hfi, map_fwhm)
    taus = {theta: profile_transfer(height, width, pixel_arcmin, theta) for theta in sizes}
    subtract = None
    for iteration in range(iterations + 1):
        whitened = _whiten(data, hfi, pixel_arcmin, subtract=subtract, map_fwhm=map_fwhm)
        best_snr, best_theta, best_y, sigmas = _filter_bank(whitened, taus, sizes, height, width)
        if iteration == iterations:
            break
        # the clusters found so far leave the noise estimate (their own power suppresses their S/N)
        peaks = mmf_peaks(best_snr, best_theta, threshold=remove_snr)
        if not peaks:
            break
        subtract = np.zeros((n, len(hfi), height, width), complex)
        fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
        for tile, row, col, _, theta in peaks:
            shift = np.exp(-2j * math.pi * (fy * row + fx * col))
            subtract[tile] += best_y[tile, row, col] * response * (taus[theta] * shift)[None]
    return MmfMaps(best_snr, best_theta, best_y, sigmas, sizes)


def _filter_bank(whitened: _Whitened, taus: dict[float, np.ndarray], sizes: tuple[float, ...], height: int, width: int):
    n = len(whitened.weight)
    best_snr = np.full((n, height, width), -np.inf)
    best_theta = np.zeros((n, height, width))
    best_y = np.zeros((n, height, width))
    sigmas = np.zeros((n, len(sizes)))
    for j, theta in enumerate(sizes):
        tau = taus[theta]
        variance = 1.0 / np.maximum(np.einsum("hw,nhw->n", tau**2, whitened.weight), 1e-300)
        y_hat = np.fft.ifft2(tau[None] * whitened.combined).real * (height * width) * variance[:, None, None]
        sigma = np.sqrt(variance)
        snr = y_hat / sigma[:, None, None]
        better = snr > best_snr
        best_snr = np.where(better, snr, best_snr)
        best_theta = np.where(better, theta, best_theta)
        best_y = np.where(better, y_hat, best_y)
        sigmas[:, j] = sigma
    return best_snr, best_theta, best_y, sigmas


def mmf_sigma(
    patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float, theta500_arcmin: np.ndarray,
    known_y5r500_arcmin2: np.ndarray | None = None, map_fwhm: float = 0.0,
) -> np.ndarray:
    """The MMF noise sigma_theta (arcmin^2 of Y5R500) of each patch at its own size ``theta500_arcmin[i]``.

    With ``known_y5r500_arcmin2``, a cluster of that Y5R500 and size at the patch centre (pixel
    ((H-1)/2, (W-1)/2), where :func:`nightshift.clusters.patches.sample_patches` puts the centre)
    is removed from the modes before the noise is estimated, so the S/N ``Y5R500 / sigma`` of a
    simulated cluster does not depend on the cluster's own power.
    """
    patches = _check(patches)
    theta = np.broadcast_to(np.asarray(theta500_arcmin, float), (len(patches),))
    n, _, height, width = patches.shape
    if n == 0:
        return np.zeros(0)
    data, hfi = band_data_k_cmb(patches, bands)
    k = _spatial_frequencies(height, width, pixel_arcmin)
    taus = np.stack([profile_transfer(height, width, pixel_arcmin, t) for t in theta])  # (n, H, W)
    subtract = None
    if known_y5r500_arcmin2 is not None:
        ky = np.fft.fftfreq(height)[:, None]
        kx = np.fft.fftfreq(width)[None, :]
        shift = np.exp(-2j * math.pi * (ky * (height - 1) / 2.0 + kx * (width - 1) / 2.0))  # to the patch centre
        y = np.broadcast_to(np.asarray(known_y5r500_arcmin2, float), (n,))
        subtract = (y[:, None, None, None] * tsz_response(k, hfi, map_fwhm)[None] * (taus * shift)[:, None]).astype(complex)
    whitened = _whiten(data, hfi, pixel_arcmin, subtract=subtract, map_fwhm=map_fwhm)
    inverse_variance = np.einsum("nhw,nhw->n", taus**2, whitened.weight)
    return 1.0 / np.sqrt(np.maximum(inverse_variance, 1e-300))


def mmf_peaks(snr: np.ndarray, theta500_arcmin: np.ndarray, *, threshold: float) -> list[tuple[int, int, int, float, float]]:
    """Peaks of S/N maps (n, H, W) above ``threshold``: (tile, row, column, S/N, theta500) per 8-connected region's maximum."""
    peaks = []
    for index, values in enumerate(np.asarray(snr)):
        labels, count = ndimage.label(values > threshold, structure=np.ones((3, 3), bool))
        if count == 0:
            continue
        for position in ndimage.maximum_position(values, labels, np.arange(1, count + 1)):
            row, col = (int(p) for p in position)
            peaks.append((index, row, col, float(values[row, col]), float(theta500_arcmin[index][row, col])))
    return peaks


def snr_at(detections: Detections, maps: MmfMaps, *, radius_px: float) -> np.ndarray:
    """The MMF S/N measured at each detection: the highest S/N (over the filter sizes) within ``radius_px`` of its tile position.

    ``detections.tile`` indexes ``maps``; the window absorbs the offset between the two methods'
    positions of one cluster (a barycentre against an S/N peak), a pixel or two.
    """
    height, width = maps.snr.shape[1:]
    reach = int(math.ceil(radius_px))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = dy**2 + dx**2 <= radius_px**2
    dy, dx = dy[inside], dx[inside]
    rows = np.clip(np.rint(detections.y).astype(int)[:, None] + dy[None], 0, height - 1)
    cols = np.clip(np.rint(detections.x).astype(int)[:, None] + dx[None], 0, width - 1)
    return maps.snr[np.asarray(detections.tile, int)[:, None], rows, cols].max(axis=1) if len(detections) else np.zeros(0)


def multifrequency_snr(patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float) -> np.ndarray:
    """The MMF's S/N maps, shape (n, H, W), of (n, bands, H, W) patches (highest over the filter sizes)."""
    return mmf_maps(patches, bands, pixel_arcmin=pixel_arcmin).snr


def mmf_tile_detections(maps: MmfMaps, wcs_list, config, *, threshold: float) -> Detections:
    """The MMF's detections of each tile of a field, before merging: S/N peaks above ``threshold`` with their size.

    Each peak is a detection at its pixel, with score = its S/N and radius = its best-fit theta500;
    as for the model's detections (:func:`nightshift.clusters.infer.tile_detections`), peaks within
    ``config.edge_margin_px`` of their tile's edge or within ``config.galactic_mask_deg`` of the
    Galactic plane are dropped.
    """
    peaks = mmf_peaks(maps.snr, maps.theta500_arcmin, threshold=threshold)
    if not peaks:
        return Detections.empty()
    table = np.array(peaks, dtype=float)
    height, width = maps.snr.shape[1:]
    rows, cols = table[:, 1], table[:, 2]
    edge = np.minimum.reduce([rows, cols, height - 1 - rows, width - 1 - cols])
    found = Detections(tile=table[:, 0].astype(int), x=cols, y=rows, radius_px=table[:, 4] / config.pixel_scale_arcmin,
                       score=table[:, 3], n_pixels=np.ones(len(table), int), edge_px=edge,
                       glon=np.full(len(table), np.nan), glat=np.full(len(table), np.nan), mmf_snr=table[:, 3])
    found = sky_positions(found.select(found.edge_px >= config.edge_margin_px), wcs_list)
    return found.select(np.abs(found.glat) >= config.galactic_mask_deg)


def mmf_field_detections(maps: MmfMaps, wcs_list, config, *, threshold: float) -> Detections:
    """The MMF's merged detections over a field of overlapping tiles (:func:`mmf_tile_detections`, duplicates
    within ``config.merge_radius_arcmin`` merged)."""
    return merge_detections(mmf_tile_detections(maps, wcs_list, config, threshold=threshold), radius_arcmin=config.merge_radius_arcmin)


def mmf_in_chunks(patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float, chunk: int = 256,
                  map_fwhm: float = 0.0) -> MmfMaps:
    """:func:`mmf_maps` of many patches, ``chunk`` at a time (it works in complex128 on (n, bands, H, W))."""
    parts = [mmf_maps(patches[i:i + chunk], bands, pixel_arcmin=pixel_arcmin, map_fwhm=map_fwhm) for i in range(0, len(patches), chunk)]
    if not parts:
        return mmf_maps(np.zeros((0, len(bands), *np.asarray(patches).shape[2:])), bands, pixel_arcmin=pixel_arcmin)
    return MmfMaps(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("snr", "theta500_arcmin", "y5r500_arcmin2", "sigma_arcmin2")),
                   parts[0].sizes_arcmin)
