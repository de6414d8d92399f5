"""Real GLIMPSE 8 um / MIPSGAL 24 um colour composites and the MWP DR1 catalogue: the real-data check.

The three composites (800 x 400 JPEG) carry 24 um in red and 8 um in green (blue: IRAC 3.6/4.5 um
stars, unused). They have no WCS: each file name gives the centre (``GLM_LLLLLL[+-]BBBBB``: three
integer digits of l, two of |b|, the rest decimals) and the first also the extent in degrees, which
gives 0.96"/pixel; the others are assumed to share it. A Galactic CAR WCS with longitude increasing
to the left (as the GLIMPSE mosaics) is built from these. The pixels are display values (stretched
8-bit), not MJy/sr: the per-channel normalisation makes the detector indifferent to the scale but not
to the stretch, so this is a plausibility check, not a calibrated measurement.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.bubbles.windows import car_header

__all__ = ["DEFAULT_REAL_DIR", "CATALOGUE_FILE", "RealField", "parse_field_name", "load_composite", "load_composites",
           "MwpCatalogue", "load_catalogue", "catalogue_in_field"]

DEFAULT_REAL_DIR = Path(__file__).resolve().parents[5] / ".." / "shared" / "data" / "bubbles"
"""The project's shared real data (``../shared/data/bubbles`` beside the repository), when present."""
CATALOGUE_FILE = "mwp_dr1_large_bubbles.csv"
_NAME = re.compile(r"GLM_(\d{3})(\d+)([+-])(\d{2})(\d+)(?:_mosaic)?(?:_([\d.]+)x([\d.]+))?")
_FIRST_EXTENT_SCALE_ARCSEC = 0.2133 * 3600.0 / 800.0


@dataclasses.dataclass(frozen=True)
class RealField:
    """A real composite: display pixels (2, H, W) float32 (8 um, 24 um), the RGB image, its WCS header."""

    name: str
    pixels: np.ndarray
    rgb: np.ndarray
    header: fits.Header


def parse_field_name(name: str) -> tuple[float, float, float | None]:
    """(l, b, width in degrees or None) from a composite's file name.

    >>> parse_field_name("GLM_028828-00228_mosaic_0.2133x0.1067_I24M1.jpg")
    (28.828, -0.228, 0.2133)

    Raises
    ------
    ValueError
        The name does not follow the ``GLM_LLLLLL[+-]BBBBB`` pattern.
    """
    match = _NAME.search(name)
    if match is None:
        raise ValueError(f"file name {name!r}: expected GLM_<l digits><+|-><b digits>[_mosaic_<W>x<H>]")
    lon = float(f"{match[1]}.{match[2]}")
    lat = float(f"{match[4]}.{match[5]}") * (-1.0 if match[3] == "-" else 1.0)
    return lon, lat, float(match[6]) if match[6] else None


def load_composite(path: Path) -> RealField:
    """Read a composite: 8 um from green, 24 um from red, with a CAR WCS from its name."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    lon, lat, width_deg = parse_field_name(path.name)
    scale = width_deg * 3600.0 / rgb.shape[1] if width_deg else _FIRST_EXTENT_SCALE_ARCSEC
    # image row 0 is the top (highest b) in the JPEG: flip so row 0 is the lowest b, as FITS
    pixels = np.stack([rgb[::-1, :, 1], rgb[::-1, :, 0]]).astype(np.float32)
    return RealField(path.name, pixels, rgb, car_header(lon, lat, pixels.shape[1:], scale))


def load_composites(directory: Path) -> list[RealField]:
    """Every ``GLM_*.jpg`` composite in ``directory``, by name."""
    return [load_composite(p) for p in sorted(directory.glob("GLM_*.jpg"))]


@dataclasses.dataclass(frozen=True)
class MwpCatalogue:
    """The MWP DR1 CSV as arrays: ``row`` (the CSV's row number), ``glon``, ``glat`` and ``semi_major`` in degrees."""

    row: np.ndarray
    glon: np.ndarray
    glat: np.ndarray
    semi_major: np.ndarray


def load_catalogue(catalogue_csv: Path) -> MwpCatalogue:
    """Read an MWP DR1 CSV (columns ``row``, ``lon_deg``, ``lat_deg``, ``semi_major`` in degrees)."""
    with open(catalogue_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return MwpCatalogue(np.array([int(r["row"]) for r in rows], dtype=int),
                        *(np.array([float(r[key]) for r in rows]) for key in ("lon_deg", "lat_deg", "semi_major")))


def catalogue_in_field(catalogue_csv: Path, header: fits.Header, shape: tuple[int, int]) -> list[dict[str, float]]:
    """MWP DR1 bubbles whose centre lies in a field: x, y (0-based pixels), radius_px (semi-major), l, b."""
    wcs = WCS(header)
    scale_deg = abs(header["CDELT2"])
    catalogue = load_catalogue(catalogue_csv)
    x, y = wcs.world_to_pixel_values(catalogue.glon, catalogue.glat)
    inside = (x >= -0.5) & (x <= shape[1] - 0.5) & (y >= -0.5) & (y <= shape[0] - 0.5)
    return [{"x_px": float(x[i]), "y_px": float(y[i]), "radius_px": float(catalogue.semi_major[i]) / scale_deg,
             "glon": float(catalogue.glon[i]), "glat": float(catalogue.glat[i])} for i in np.nonzero(inside)[0]]
