"""Sky geometry a tile carries: its WCS as FITS cards, its centre, its frame and its pixel scale."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.coordinates import Galactic, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

from nightshift.v1 import tile_pb2

__all__ = ["wcs_cards", "wcs_from_cards", "sky_frame_of", "centers_of", "pixel_scale_arcsec"]


def wcs_cards(wcs: WCS) -> list[str]:
    """The WCS as FITS header cards, 80 characters each (SIP distortion terms included)."""
    return [card.image for card in wcs.to_header(relax=True).cards]


def wcs_from_cards(cards: list[str]) -> WCS:
    """The WCS a tile's ``wcs_cards`` describe (the inverse of :func:`wcs_cards`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # e.g. MJDREF filled in: not a problem of the tile
        return WCS(fits.Header.fromstring("".join(cards)))


def sky_frame_of(wcs: WCS) -> int:
    """The contract frame tile centres of this WCS are reported in: Galactic, or ICRS for every other frame."""
    return tile_pb2.SKY_FRAME_GALACTIC if isinstance(wcs_to_celestial_frame(wcs), Galactic) else tile_pb2.SKY_FRAME_ICRS


def centers_of(wcs: WCS, x_px: np.ndarray, y_px: np.ndarray) -> list[tile_pb2.SkyPosition]:
    """Sky positions of 0-based pixel positions, in the frame :func:`sky_frame_of` names.

    Parameters
    ----------
    wcs : WCS
        A celestial WCS.
    x_px, y_px : ndarray
        Pixel positions (0-based; may be fractional), any equal shapes.

    Returns
    -------
    list of SkyPosition
        One per position, longitudes in [0, 360) degrees; equatorial frames other than ICRS (FK5,
        FK4...) are converted to ICRS.
    """
    coords = wcs.pixel_to_world(np.ravel(x_px), np.ravel(y_px))
    frame = sky_frame_of(wcs)
    if frame == tile_pb2.SKY_FRAME_GALACTIC:
        lon, lat = coords.galactic.l.deg, coords.galactic.b.deg
    else:
        icrs = SkyCoord(coords).icrs
        lon, lat = icrs.ra.deg, icrs.dec.deg
    return [tile_pb2.SkyPosition(lon_deg=float(lo) % 360.0, lat_deg=float(la), frame=frame) for lo, la in zip(lon, lat)]


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel side at the reference point, in arcseconds."""
    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
