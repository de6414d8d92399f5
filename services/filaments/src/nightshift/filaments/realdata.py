"""The real Hi-GAL N(H2) cut-out of the seed (Molinari+2016; masks of Schisano+2020, as packaged
by multi-learn/lis2), split spatially by columns into training and validation parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["RealCutout", "load_real_cutout", "real_data_available", "real_pixel_scale_arcsec"]

_FILES = {"column_density": "higal_image.fits", "mask": "higal_target.fits", "usable": "higal_missing.fits"}


@dataclasses.dataclass(frozen=True)
class RealCutout:
    """The real cut-out (500 rows x 300 columns, no WCS).

    Attributes
    ----------
    column_density : numpy.ndarray
        float32 (H, W) N(H2) in cm^-2, NaN where saturated or missing.
    mask : numpy.ndarray
        bool (H, W) filament regions of interest (Schisano+2020).
    usable : numpy.ndarray
        bool (H, W) pixels with usable data (the ``missing`` file's 1s, and finite).
    """

    column_density: np.ndarray
    mask: np.ndarray
    usable: np.ndarray

    def columns(self, span: tuple[int, int]) -> RealCutout:
        """The part in the half-open column range ``[start, stop)``."""
        start, stop = span
        if not 0 <= start < stop <= self.mask.shape[1]:
            raise ValueError(f"columns {span}: expected 0 <= start < stop <= {self.mask.shape[1]}")
        return RealCutout(self.column_density[:, start:stop], self.mask[:, start:stop], self.usable[:, start:stop])


def real_data_available(directory: Path) -> bool:
    """Whether ``directory`` holds the cut-out's files."""
    return all((Path(directory) / name).is_file() for name in _FILES.values())


def load_real_cutout(directory: Path) -> RealCutout:
    """Read the cut-out from ``directory``.

    Raises
    ------
    FileNotFoundError
        A file of the cut-out is missing (the message names it).
    """
    from astropy.io import fits

    arrays = {}
    for field, name in _FILES.items():
        path = Path(directory) / name
        if not path.is_file():
            raise FileNotFoundError(f"real Hi-GAL cut-out: {path} not found (set NIGHTSHIFT_FILAMENTS_DATA)")
        arrays[field] = fits.getdata(path)
    column_density = np.asarray(arrays["column_density"], dtype=np.float32)
    usable = (np.asarray(arrays["usable"]) > 0) & np.isfinite(column_density)
    return RealCutout(column_density, np.asarray(arrays["mask"]) > 0, usable)


def real_pixel_scale_arcsec(directory: Path) -> float | None:
    """Pixel side of the real cut-out's N(H2) map from its header's celestial WCS, in arcseconds.

    Returns
    -------
    float or None
        None when the file is absent or its header has no celestial WCS (the packaged cut-out has none).
    """
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    path = Path(directory) / _FILES["column_density"]
    if not path.is_file():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.getheader(path)).celestial
    if not wcs.has_celestial:
        return None
    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
