"""Survey files with known content, for the tests, the benchmark and trying the service out.

A field is a smooth background, Gaussian sources and noise on a gnomonic (``-TAN``) grid, with a
rectangle of missing (NaN) pixels; a HEALPix map is seeded noise per band. Both are written as
the surveys deliver them: a FITS image with its WCS, a HEALPix binary table as ``healpy`` writes it.
"""

from __future__ import annotations

from pathlib import Path

import healpy as hp
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

__all__ = ["field_wcs", "field_image", "write_field", "healpix_maps", "write_healpix"]


def field_wcs(
    shape: tuple[int, int],
    *,
    lon_deg: float = 30.0,
    lat_deg: float = 0.0,
    pixel_scale_arcsec: float = 6.0,
    frame: str = "galactic",
) -> WCS:
    """A north-up gnomonic WCS centred on (lon_deg, lat_deg) for an image of ``shape`` (height, width).

    ``frame`` is "galactic" (GLON/GLAT) or "icrs" (RA/DEC).
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"] if frame == "galactic" else ["RA---TAN", "DEC--TAN"]
    if frame != "galactic":
        wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [lon_deg, lat_deg]
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    wcs.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def field_image(shape: tuple[int, int], *, seed: int = 0, sources: int = 20, missing: bool = True) -> np.ndarray:
    """A float32 image: a gradient, ``sources`` Gaussian blobs, unit noise, and NaN in one corner rectangle."""
    rng = np.random.default_rng(seed)
    height, width = shape
    y, x = np.mgrid[0:height, 0:width]
    image = 10.0 + 5.0 * x / width + 3.0 * y / height + rng.normal(0.0, 1.0, shape)
    for cx, cy, sigma, peak in zip(rng.uniform(0, width, sources), rng.uniform(0, height, sources),
                                   rng.uniform(1.5, 6.0, sources), rng.uniform(5.0, 50.0, sources)):
        image += peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    if missing:
        image[: height // 8, : width // 8] = np.nan
    return image.astype(np.float32)


def write_field(path: Path, pixels: np.ndarray, wcs: WCS, *, unit: str = "MJy/sr") -> Path:
    """Write ``pixels`` with ``wcs`` as a single-HDU FITS image; returns ``path``."""
    header = wcs.to_header()
    header["BUNIT"] = unit
    fits.PrimaryHDU(pixels, header=header).writeto(path, overwrite=True)
    return path


def healpix_maps(nside: int, bands: int, *, seed: int = 0) -> np.ndarray:
    """(bands, 12 nside**2) float32 maps of seeded standard-normal noise."""
    return np.random.default_rng(seed).standard_normal((bands, hp.nside2npix(nside)), dtype=np.float32)


def write_healpix(path: Path, maps: np.ndarray, *, nest: bool = False, coordsys: str | None = "G") -> Path:
    """Write (bands, npix) maps as one HEALPix table, one column per band; returns ``path``."""
    hp.write_map(str(path), list(maps), nest=nest, coord=coordsys, dtype=np.float32, overwrite=True)
    return path
