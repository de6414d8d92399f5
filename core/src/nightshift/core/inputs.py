"""The user's own image files, read and checked the same way by every service's ``infer``.

A file that cannot be used raises :class:`~nightshift.core.errors.InvalidInput` naming the file and the
reason (not FITS, no image, empty, no finite pixel, smaller than the model needs). A file that can be
used but may not mean what the user thinks gets an :class:`~nightshift.core.command.InputWarning`: no
celestial WCS (sky positions will be NaN), a ``BUNIT`` other than the model's, integer pixels, mostly
missing pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.core.command import warn_input
from nightshift.core.errors import InvalidInput

__all__ = ["FitsImage", "read_fits_image", "read_picture", "check_pixels", "has_celestial_wcs"]

_MOSTLY_MISSING = 0.5


@dataclasses.dataclass(frozen=True)
class FitsImage:
    """Pixels as float32, shape (H, W) or (planes, H, W), with the header of the HDU they came from."""

    path: Path
    data: np.ndarray
    header: fits.Header


def read_fits_image(path: Path, *, extension: int | str | None = None) -> FitsImage:
    """The image of ``path`` (the first HDU with image data, or ``extension``) as float32; leading axes of
    length 1 are dropped (``(1, H, W)`` cubes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file" if not path.exists() else "Not a file", str(path))
    try:
        with fits.open(path, memmap=False) as hdus:
            candidates = [hdus[extension]] if extension is not None else list(hdus)
            hdu = next((h for h in candidates if h.is_image and h.data is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise InvalidInput(f"{path}: no image HDU (a FITS file holding a 2-D image or a cube is expected)")
            raw, header = hdu.data, hdu.header.copy()
    except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
        if isinstance(error, InvalidInput):
            raise
        reason = " ".join(str(error).split()).split(". ")[0] or type(error).__name__
        raise InvalidInput(f"{path}: not a readable FITS image ({reason})") from None
    if np.issubdtype(raw.dtype, np.integer):
        warn_input(path, f"integer pixels ({raw.dtype}) read as float32")
    data = np.asarray(raw, dtype=np.float32)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return FitsImage(path, data, header)


def read_picture(path: Path) -> np.ndarray:
    """An RGB picture (JPEG, PNG...) as uint8 (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file" if not path.exists() else "Not a file", str(path))
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InvalidInput(f"{path}: not a readable picture ({' '.join(str(error).split())})") from None


def has_celestial_wcs(header: fits.Header) -> bool:
    """Whether ``header`` holds a celestial WCS (sky positions can be computed)."""
    try:
        return WCS(header, naxis=2).has_celestial
    except Exception:  # astropy raises many types for malformed WCS keywords; all mean "no usable WCS"
        return False


def check_pixels(source: object, data: np.ndarray, *, min_px: int, planes: int | None = None, header: fits.Header | None = None,
                 units: Sequence[str] = (), needs_wcs: bool = True) -> None:
    """Refuse pixels a model cannot use, warn about what it can but the user should know.

    ``data`` is (H, W) or (planes, H, W); ``min_px`` the smallest side the model takes; ``planes`` the
    planes expected (None: any); ``units`` the ``BUNIT`` spellings of the unit the model is trained on,
    the usual one first (compared without case and spaces); ``needs_wcs`` whether the outputs' sky positions need the header's WCS.
    """
    if data.size == 0:
        raise InvalidInput(f"{source}: empty image (shape {data.shape})")
    if planes is not None and (data.ndim == 2 and planes != 1 or data.ndim == 3 and data.shape[0] != planes or data.ndim > 3):
        raise InvalidInput(f"{source}: image of shape {data.shape}; expected {planes} plane{'s' if planes > 1 else ''} of H x W pixels")
    height, width = data.shape[-2:]
    if min(height, width) < min_px:
        raise InvalidInput(f"{source}: {height}x{width} pixels, smaller than the {min_px} x {min_px} the model needs")
    finite = np.isfinite(data)
    if not finite.any():
        raise InvalidInput(f"{source}: no finite pixel (all NaN or infinite)")
    if (missing := 1.0 - float(finite.mean())) > _MOSTLY_MISSING:
        warn_input(source, f"{missing:.0%} of the pixels are NaN or infinite")
    if header is not None:
        unit = str(header.get("BUNIT", "")).strip()
        if units and not unit:
            warn_input(source, f"no BUNIT; the pixels are taken to be in {units[0]}")
        elif units and unit.lower().replace(" ", "") not in {u.lower().replace(" ", "") for u in units}:
            warn_input(source, f"BUNIT {unit!r} where the model expects {units[0]}; the pixels are used as they are")
        if needs_wcs and not has_celestial_wcs(header):
            warn_input(source, "no celestial WCS: its sky positions are NaN")
