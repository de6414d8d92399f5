"""Flat FITS fields into square windows, each with its own cut WCS.

Reading: one 2-D image per band from a FITS file (single- or multi-extension, float or integer),
converted to float32 with missing pixels (BLANK, NaN) as NaN; the sizes the headers declare are
checked before any pixel is read, so a small file whose header claims a huge image is refused, never
allocated. Alignment: bands whose pixel grid
differs from the reference band's are resampled onto it with ``reproject`` (bilinear), so every
tile's bands are aligned pixel for pixel. Windowing: square windows of one or several sizes laid
with a given overlap, the last window of a row or column flush with the image edge so every pixel
is covered; each window's WCS is the reference WCS cut with ``WCS.slice`` (and downsampled the same
way when windows are resampled to a fixed output size).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from reproject import reproject_interp

from nightshift.core.errors import InvalidInput
from nightshift.core.tiles import window_origin_count, window_origins
from nightshift.ingest.config import FlatTiling, IngestLimits
from nightshift.ingest.sky import pixel_scale_arcsec, wcs_cards

__all__ = ["BandImage", "Window", "FlatTile", "read_fits_image", "declared_image_px", "align_bands",
           "window_count", "plan_windows", "WindowWcs", "cut_windows", "resample_area"]

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
# WCS values equal to this (degrees, pixels) are one grid: headers print values to 16 digits
_SAME_GRID_TOLERANCE = 1e-12


@dataclasses.dataclass(frozen=True)
class BandImage:
    """One band's image as read from its file.

    Attributes
    ----------
    pixels : ndarray
        Shape (height, width), float32, missing pixels NaN.
    wcs : WCS
        Its 2-D celestial WCS.
    unit : str
        The file's ``BUNIT`` ("" when absent).
    what : str
        How error messages name it, e.g. ``"band 'irac4' (s3://raw/l030_I4.fits)"``.
    """

    pixels: np.ndarray
    wcs: WCS
    unit: str
    what: str


@dataclasses.dataclass(frozen=True)
class Window:
    """A square window of the reference grid: 0-based column and row of its first pixel, side in pixels."""

    x0: int
    y0: int
    size_px: int

    @property
    def center_px(self) -> tuple[float, float]:
        """0-based (x, y) pixel position of the window centre in the reference grid."""
        half = (self.size_px - 1) / 2.0
        return self.x0 + half, self.y0 + half


@dataclasses.dataclass(frozen=True)
class FlatTile:
    """A cut window: pixels of shape (bands, n, n) float32, the WCS of exactly those pixels as FITS cards, its pixel side."""

    window: Window
    pixels: np.ndarray
    wcs_cards: list[str]
    pixel_scale_arcsec: float


def _float_pixels(hdu: fits.PrimaryHDU | fits.ImageHDU) -> np.ndarray:
    """The HDU's unscaled data as float32: BSCALE/BZERO applied, BLANK integers turned NaN."""
    raw = np.asarray(hdu.data)
    header = hdu.header
    scale, zero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    if scale == 1.0 and zero == 0.0:
        pixels = raw.astype(np.float32)
    else:  # in float64 so a 32-bit integer and its offset combine before rounding to float32
        pixels = (raw.astype(np.float64) * scale + zero).astype(np.float32)
    blank = header.get("BLANK")
    if raw.dtype.kind in "iu" and blank is not None:
        pixels[raw == blank] = np.nan
    return pixels


def _declared_px(hdu: fits.hdu.base.ExtensionHDU) -> tuple[list[int], int]:
    """The image axes an image HDU's header declares (NAXIS1 first) and their product, nothing read."""
    header = hdu.header
    axes = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, int(header.get("NAXIS", 0)) + 1)]
    return axes, math.prod(axes) if axes else 0


def _check_declared_size(hdu: fits.hdu.base.ExtensionHDU, file_bytes: int, max_image_px: int, what: str) -> None:
    """Refuse an image HDU whose header declares more pixels than the limit, or more bytes than the file holds."""
    axes, pixels = _declared_px(hdu)
    if pixels > max_image_px:
        raise InvalidInput(f"{what}: HDU {hdu.name!r} declares {' x '.join(map(str, axes))} = {pixels} pixels, more than "
                           f"the service's limit of {max_image_px} per band (max_image_px)")
    data_bytes = pixels * abs(int(hdu.header.get("BITPIX", 8))) // 8
    if not isinstance(hdu, fits.CompImageHDU) and data_bytes > file_bytes:
        raise InvalidInput(f"{what}: not a readable FITS file, corrupt or truncated (HDU {hdu.name!r} declares "
                           f"{data_bytes} bytes of pixels, the whole file holds {file_bytes})")


def _image_of(hdu: fits.hdu.base.ExtensionHDU, what: str, *, file_bytes: int, max_image_px: int) -> BandImage | None:
    """The HDU's 2-D image, WCS (possibly without celestial axes) and unit, or None if it holds no image."""
    if not isinstance(hdu, _IMAGE_HDUS):
        return None
    _check_declared_size(hdu, file_bytes, max_image_px, what)
    if hdu.data is None:
        return None
    shape = hdu.data.shape
    if len(shape) < 2 or any(n != 1 for n in shape[:-2]):
        raise InvalidInput(f"{what}: HDU {hdu.name!r} holds an array of shape {shape}, expected a 2-D image")
    pixels = _float_pixels(hdu).reshape(shape[-2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # astropy repairing old-style keywords is not an input error
        wcs = WCS(hdu.header)
    return BandImage(pixels=pixels, wcs=wcs, unit=str(hdu.header.get("BUNIT", "")), what=what)


def _unreadable(what: str, exc: Exception) -> InvalidInput:
    return InvalidInput(f"{what}: not a readable FITS file, corrupt or truncated ({exc})")


def declared_image_px(path: Path, *, what: str, max_image_px: int = IngestLimits.max_image_px) -> int:
    """Pixels of every image HDU of a FITS file, as the headers declare them (no pixel is read).

    Raises
    ------
    InvalidInput
        The file is not readable FITS, or an image's header declares more pixels than
        ``max_image_px`` or more bytes than the file holds.
    """
    file_bytes = path.stat().st_size
    try:
        with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
            images = [hdu for hdu in hdul if isinstance(hdu, _IMAGE_HDUS)]
            for hdu in images:
                _check_declared_size(hdu, file_bytes, max_image_px, what)
            return sum(_declared_px(hdu)[1] for hdu in images)
    except InvalidInput:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise _unreadable(what, exc) from None


def read_fits_image(path: Path, *, hdu: str = "", what: str, max_image_px: int = IngestLimits.max_image_px) -> BandImage:
    """Read one band's image and celestial WCS from a FITS file.

    Parameters
    ----------
    path : Path
        The FITS file.
    hdu : str
        HDU name or 0-based index; "" takes the first HDU holding an image with a celestial WCS.
    what : str
        How error messages name the band and its file.
    max_image_px : int
        Most pixels an image HDU's header may declare (default: the ingest's default limit);
        checked, with the bytes the file holds, before its pixels are read.

    Raises
    ------
    InvalidInput
        The file is not readable FITS (corrupt or truncated), an image's header declares more
        pixels than ``max_image_px`` or than the file holds, the HDU does not exist or holds no
        2-D image, the image has no celestial WCS, or it has no finite pixel.
    """
    file_bytes = path.stat().st_size
    try:
        with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
            if hdu:
                try:
                    candidates = [hdul[int(hdu) if hdu.isdigit() else hdu]]
                except (KeyError, IndexError):
                    raise InvalidInput(f"{what}: no HDU {hdu!r} (the file has {[h.name for h in hdul]})") from None
            else:
                candidates = list(hdul)
            images = [image for h in candidates
                      if (image := _image_of(h, what, file_bytes=file_bytes, max_image_px=max_image_px)) is not None]
    except InvalidInput:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise _unreadable(what, exc) from None
    celestial = [image for image in images if image.wcs.has_celestial]
    if not celestial:
        problem = "has no celestial WCS" if images else "holds no image"
        raise InvalidInput(f"{what}: {f'HDU {hdu!r}' if hdu else 'the file'} {problem}")
    image = celestial[0]
    if sorted((image.wcs.wcs.lng, image.wcs.wcs.lat)) != [0, 1]:
        raise InvalidInput(f"{what}: the celestial axes must be the image's two axes, got CTYPE {list(image.wcs.wcs.ctype)}")
    if not np.isfinite(image.pixels).any():
        raise InvalidInput(f"{what}: every pixel is NaN or BLANK")
    return dataclasses.replace(image, wcs=image.wcs.celestial)


def align_bands(images: Sequence[BandImage], reference: int) -> tuple[np.ndarray, WCS]:
    """Stack bands on the pixel grid of ``images[reference]``.

    Bands already on that grid (same shape, WCS equal to 1e-12) are stacked as read (bit for
    bit); others are resampled with
    ``reproject_interp`` (bilinear), NaN where they do not cover the reference.

    Returns
    -------
    cube : ndarray
        Shape (bands, height, width) float32 on the reference grid.
    wcs : WCS
        The reference band's WCS.

    Raises
    ------
    InvalidInput
        A band does not overlap the reference band at all.
    """
    ref = images[reference]
    cube = np.empty((len(images), *ref.pixels.shape), dtype=np.float32)
    for plane, image in zip(cube, images):
        if image.pixels.shape == ref.pixels.shape and image.wcs.wcs.compare(ref.wcs.wcs, tolerance=_SAME_GRID_TOLERANCE):
            plane[...] = image.pixels
            continue
        resampled, footprint = reproject_interp((image.pixels, image.wcs), ref.wcs, shape_out=ref.pixels.shape)
        if not footprint.any():
            raise InvalidInput(f"{image.what} does not overlap the reference {ref.what}: no pixel in common")
        plane[...] = resampled
    return cube, ref.wcs


def window_count(shape: tuple[int, int], tiling: FlatTiling) -> int:
    """How many windows :func:`plan_windows` lays over an image of ``shape`` (height, width), counted, not laid."""
    height, width = shape
    return sum(window_origin_count(height, size, tiling.overlap_fraction) * window_origin_count(width, size, tiling.overlap_fraction)
               for size in tiling.window_px if size <= min(height, width))


def plan_windows(shape: tuple[int, int], tiling: FlatTiling, *, what: str) -> list[Window]:
    """Every window of every size over an image of ``shape`` (height, width), size by size, row by row.

    Raises
    ------
    InvalidInput
        A window is larger than the image.
    """
    height, width = shape
    windows = []
    for size in tiling.window_px:
        if size > min(height, width):
            raise InvalidInput(f"{what}: window of {size} px is larger than the image ({width} x {height} px)")
        for y0 in window_origins(height, size, tiling.overlap_fraction):
            windows.extend(Window(x0, y0, size) for x0 in window_origins(width, size, tiling.overlap_fraction))
    return windows


def _bin_sums(values: np.ndarray, bins: int, axis: int) -> np.ndarray:
    """Sums of ``values`` over ``bins`` equal intervals along ``axis``, pixels cut by an interval edge split by area.

    The running sum, interpolated linearly inside each pixel, is the exact integral of the
    piecewise-constant image, so each bin's sum is a difference of two interpolated values.
    """
    values = np.moveaxis(values, axis, -1)
    length = values.shape[-1]
    running = np.concatenate([np.zeros((*values.shape[:-1], 1)), np.cumsum(values, axis=-1, dtype=np.float64)], axis=-1)
    edges = np.arange(bins + 1) * (length / bins)
    pixel = np.minimum(edges.astype(int), length - 1)
    at_edges = running[..., pixel] + (edges - pixel) * values[..., pixel]
    return np.moveaxis(np.diff(at_edges, axis=-1), -1, axis)


def resample_area(pixels: np.ndarray, output_px: int) -> np.ndarray:
    """Resample (bands, n, n) pixels to (bands, output_px, output_px) by area-weighted mean.

    Each output pixel is the mean of the input pixels it covers, weighted by covered area and
    ignoring NaN; it is NaN only where it covers no finite pixel. An integer factor is a plain
    block mean.
    """
    valid = np.isfinite(pixels)
    total = _bin_sums(_bin_sums(np.where(valid, pixels, 0.0), output_px, -1), output_px, -2)
    covered = _bin_sums(_bin_sums(valid.astype(np.float64), output_px, -1), output_px, -2)
    # differences of running sums leave rounding residue (~1e-12) where no finite pixel is covered;
    # a real coverage is at least (output_px / n)**2 of a pixel, far above the threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 1e-9, total / covered, np.nan).astype(np.float32)


class WindowWcs:
    """The WCS of any window of one image, and of its resampling, as FITS cards.

    A window only moves the reference pixel; resampling by a factor f also maps it to
    ``(CRPIX - 0.5) / f + 0.5`` and scales ``CDELT`` by f (what ``WCS.slice`` does, without its deep
    copy of the whole WCS per window, most of the FITS tiling's time after the pixels). A WCS with
    distortions (SIP, lookup tables) or a CD matrix is sliced by astropy as before.
    """

    _MOVED = ("CRPIX1", "CRPIX2", "CDELT1", "CDELT2")

    def __init__(self, wcs: WCS) -> None:
        self.wcs = wcs
        header = wcs.to_header(relax=True)
        self.linear = not wcs.has_distortion and all(key in header for key in self._MOVED)
        self.pixel_scale_arcsec = pixel_scale_arcsec(wcs)
        self._images = [card.image for card in header.cards]
        self._moved = {key: (header.index(key), header[key], header.comments[key]) for key in self._MOVED if key in header}

    def cards(self, window: Window, output_px: int = 0) -> tuple[list[str], float]:
        """(cards, pixel side in arcsec) of ``window`` resized to ``output_px`` (0: not resized)."""
        factor = window.size_px / output_px if output_px and output_px != window.size_px else 1.0
        if not self.linear:
            return self._sliced(window, factor)
        values = {"CRPIX1": (self._moved["CRPIX1"][1] - window.x0 - 0.5) / factor + 0.5,
                  "CRPIX2": (self._moved["CRPIX2"][1] - window.y0 - 0.5) / factor + 0.5}
        if factor != 1.0:
            values.update(CDELT1=self._moved["CDELT1"][1] * factor, CDELT2=self._moved["CDELT2"][1] * factor)
        images = list(self._images)
        for key, value in values.items():
            index, _, comment = self._moved[key]
            images[index] = fits.Card(key, value, comment).image
        return images, self.pixel_scale_arcsec * factor

    def _sliced(self, window: Window, factor: float) -> tuple[list[str], float]:
        tile_wcs = self.wcs.slice((slice(window.y0, window.y0 + window.size_px), slice(window.x0, window.x0 + window.size_px)))
        if factor != 1.0:
            with warnings.catch_warnings():
                # a fractional step leaves NAXIS unset, as it should be: the tile's shape is in its pixel array
                warnings.filterwarnings("ignore", message="NAXIS. attribute is not updated", category=AstropyUserWarning)
                tile_wcs = tile_wcs.slice((slice(0, window.size_px, factor), slice(0, window.size_px, factor)))
        return wcs_cards(tile_wcs), pixel_scale_arcsec(tile_wcs)


def cut_windows(cube: np.ndarray, wcs: WCS, windows: Sequence[Window], *, output_px: int = 0) -> Iterator[FlatTile]:
    """Cut ``cube`` (bands, height, width) into the windows, in order.

    Each tile's WCS is ``wcs`` moved to the window and, when ``output_px`` differs from the
    window size, downsampled by the same (fractional) factor, so every pixel of the tile maps to
    the sky as the pixels it was made from.
    """
    window_wcs = WindowWcs(wcs)
    for window in windows:
        pixels = cube[:, window.y0:window.y0 + window.size_px, window.x0:window.x0 + window.size_px]
        cards, scale = window_wcs.cards(window, output_px)
        if output_px and output_px != window.size_px:
            pixels = resample_area(pixels, output_px)
        yield FlatTile(window=window, pixels=np.ascontiguousarray(pixels), wcs_cards=cards, pixel_scale_arcsec=scale)