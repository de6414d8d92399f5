"""Multi-scale sliding windows over a field, each resized to the network's size with its own WCS.

The same windowing as the ingest service's flat-FITS tiling (square windows of several sizes, a
regular step, the last window flush with the edge; each window's WCS is the field's, shifted and
rescaled by the resampling factor), re-implemented here because services import no other service.
Resampling: area mean when a window is shrunk (the paper Gaussian-smooths and resizes; the area
mean is the same low-pass-then-decimate), bilinear when a window is enlarged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from astropy.io import fits

from nightshift.core.tiles import window_origins

__all__ = ["Window", "plan_windows", "resize_crop", "window_header", "car_header"]


@dataclasses.dataclass(frozen=True)
class Window:
    """A square window of a field: 0-based column and row of its first pixel and its side, in field pixels."""

    x0: int
    y0: int
    size_px: int

    def scale(self, output_px: int) -> float:
        """Field pixels per output pixel when the window is resized to ``output_px``."""
        return self.size_px / output_px


def plan_windows(shape: tuple[int, int], window_px: Sequence[int], overlap_fraction: float) -> list[Window]:
    """Every window of every size that fits in a field of ``shape`` (height, width), size by size, row by row."""
    height, width = shape
    return [Window(x0, y0, size) for size in window_px
            for y0 in window_origins(height, size, overlap_fraction)
            for x0 in window_origins(width, size, overlap_fraction)]


def resize_crop(pixels: np.ndarray, output_px: int) -> np.ndarray:
    """Resize a (bands, n, n) float32 crop to (bands, output_px, output_px); NaN stays NaN where it dominates."""
    if pixels.shape[-1] == output_px and pixels.shape[-2] == output_px:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
    shrinking = pixels.shape[-1] > output_px
    resized = torch.nn.functional.interpolate(
        tensor, size=(output_px, output_px), mode="area" if shrinking else "bilinear",
        **({} if shrinking else {"align_corners": False}),
    )
    return resized[0].numpy()


def car_header(glon_deg: float, glat_deg: float, shape: tuple[int, int], pixel_scale_arcsec: float) -> fits.Header:
    """A Galactic plate-carree (CAR) header of a field of ``shape`` (height, width) centred on (l, b).

    As the GLIMPSE mosaics: ``CRVAL2 = 0`` so the projection is the plain plate carree, longitude
    increasing to the left (``CDELT1 < 0``).
    """
    height, width = shape
    step = pixel_scale_arcsec / 3600.0
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = width
    header["NAXIS2"] = height
    header["CTYPE1"] = "GLON-CAR"
    header["CTYPE2"] = "GLAT-CAR"
    header["CRVAL1"] = glon_deg % 360.0
    header["CRVAL2"] = 0.0
    header["CRPIX1"] = (width + 1) / 2.0
    header["CRPIX2"] = (height + 1) / 2.0 - glat_deg / step
    header["CDELT1"] = -step
    header["CDELT2"] = step
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    return header


def window_header(header: fits.Header, window: Window, output_px: int) -> fits.Header:
    """The WCS header of ``window`` cut from a field with ``header`` and resized to ``output_px``.

    A window pixel q (1-based) covers field position ``x0 + (q - 0.5) * f + 0.5`` with ``f`` the
    resampling factor, so the reference pixel moves and the pixel steps scale by ``f``.
    """
    factor = window.scale(output_px)
    cut = header.copy()
    cut["NAXIS1"] = output_px
    cut["NAXIS2"] = output_px
    cut["CRPIX1"] = (header["CRPIX1"] - 0.5 - window.x0) / factor + 0.5
    cut["CRPIX2"] = (header["CRPIX2"] - 0.5 - window.y0) / factor + 0.5
    cut["CDELT1"] = header["CDELT1"] * factor
    cut["CDELT2"] = header["CDELT2"] * factor
    return cut
