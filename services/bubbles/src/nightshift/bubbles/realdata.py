"""Real GLIMPSE 8 um / MIPSGAL 24 um colour composites and the MWP DR1 catalogue: the real-data check.

The three composites (800 x 400 JPEG) carry 24 um in red and 8 um in green (blue: IRAC 3.6/4.5 um
stars, unused). They have no WCS: each file name gives a rounded centre (``GLM_LLLLLL[+-]BBBBB``:
three integer digits of l, two of |b|, the rest decimals) and only the first the extent. Each field's
scale and centre are therefore fitted to the data (:mod:`nightshift.bubbles.registration`: the MWP
DR1 rings onto the image's rings) and stored as a FITS header beside the loader
(``registration/<file stem>.hdr``, written by ``nightshift-bubbles register-real``); a composite
without one gets a header from its name (and the first field's scale). The pixels are display values
(stretched 8-bit), not MJy/sr: the per-channel normalisation makes the detector indifferent to the
scale but not to the stretch.
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

__all__ = ["DEFAULT_REAL_DIR", "CATALOGUE_FILE", "HIGH_QUALITY_FILE", "REGISTRATION_DIR", "RealField", "parse_field_name",
           "name_header", "registered_header", "load_composite", "load_composites", "MwpCatalogue", "load_catalogue",
           "CatalogueBubble", "catalogue_in_field"]

DEFAULT_REAL_DIR = Path(__file__).resolve().parents[5] / ".." / "shared" / "data" / "bubbles"
"""The project's shared real data (``../shared/data/bubbles`` beside the repository), when present."""
CATALOGUE_FILE = "mwp_dr1_large_bubbles.csv"
HIGH_QUALITY_FILE = "mwp_dr1_high_quality.csv"
"""The 504 high-quality bubbles (a subset of the large ones, same positions): the "clear" bubbles of the real check."""
REGISTRATION_DIR = Path(__file__).parent / "registration"
"""The fitted FITS headers of the real composites, one ``<file stem>.hdr`` each."""
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


def name_header(name: str, shape: tuple[int, int]) -> fits.Header:
    """A CAR header from a composite's file name: its centre, its extent or else the first field's scale."""
    lon, lat, width_deg = parse_field_name(name)
    scale = width_deg * 3600.0 / shape[1] if width_deg else _FIRST_EXTENT_SCALE_ARCSEC
    return car_header(lon, lat, shape, scale)


def registered_header(name: str, directory: Path = REGISTRATION_DIR) -> fits.Header | None:
    """The fitted header of the composite ``name`` stored in ``directory``, or None."""
    path = directory / f"{Path(name).stem}.hdr"
    return fits.Header.fromtextfile(path) if path.is_file() else None


def load_composite(path: Path) -> RealField:
    """Read a composite: 8 um from green, 24 um from red, with its fitted WCS (else one from its name).

    Raises ``InvalidInput`` for a file that is not a readable picture, ``ValueError`` for a name that
    gives no WCS."""
    from nightshift.core.inputs import read_picture

    rgb = read_picture(path)
    # image row 0 is the top (highest b) in the JPEG: flip so row 0 is the lowest b, as FITS
    pixels = np.stack([rgb[::-1, :, 1], rgb[::-1, :, 0]]).astype(np.float32)
    header = registered_header(path.name)
    return RealField(path.name, pixels, rgb, header if header is not None else name_header(path.name, pixels.shape[1:]))


def load_composites(directory: Path) -> list[RealField]:
    """Every ``GLM_*.jpg`` composite in ``directory``, by name."""
    return [load_composite(p) for p in sorted(directory.glob("GLM_*.jpg"))]


@dataclasses.dataclass(frozen=True)
class MwpCatalogue:
    """The MWP DR1 CSV as arrays: ``row`` (the CSV's row number), ``glon``, ``glat``, semi-axes in degrees, ``clear``.

    ``clear`` marks the high-quality subset (when its CSV is beside the large-bubble one).
    """

    row: np.ndarray
    glon: np.ndarray
    glat: np.ndarray
    semi_major: np.ndarray
    semi_minor: np.ndarray
    clear: np.ndarray

    @property
    def radius(self) -> np.ndarray:
        """Effective ring radius ``sqrt(semi_major * semi_minor)`` in degrees (the rim of the stacked 8 um profile)."""
        return np.sqrt(self.semi_major * self.semi_minor)


def load_catalogue(catalogue_csv: Path) -> MwpCatalogue:
    """Read an MWP DR1 CSV (columns ``row``, ``lon_deg``, ``lat_deg``, ``semi_major``, ``semi_minor`` in degrees)."""
    with open(catalogue_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    glon, glat, major, minor = (np.array([float(r[key]) for r in rows]) for key in ("lon_deg", "lat_deg", "semi_major", "semi_minor"))
    clear = np.zeros(len(rows), dtype=bool)
    high_quality = catalogue_csv.parent / HIGH_QUALITY_FILE
    if high_quality.is_file():
        with open(high_quality, newline="") as handle:
            best = np.array([(float(r["lon_deg"]), float(r["lat_deg"])) for r in csv.DictReader(handle)]).reshape(-1, 2)
        # the subset repeats the large catalogue's positions to 7 decimals
        distance = np.hypot(glon[:, None] - best[None, :, 0], glat[:, None] - best[None, :, 1])
        clear = distance.min(axis=1) < 1e-5 if best.size else clear
    return MwpCatalogue(np.array([int(r["row"]) for r in rows], dtype=int), glon, glat, major, minor, clear)


@dataclasses.dataclass(frozen=True)
class CatalogueBubble:
    """An MWP DR1 bubble in a field: 0-based pixel centre, effective radius in pixels, (l, b) in degrees, high quality."""

    row: int
    x_px: float
    y_px: float
    radius_px: float
    glon: float
    glat: float
    clear: bool


def catalogue_in_field(catalogue_csv: Path, header: fits.Header, shape: tuple[int, int]) -> list[CatalogueBubble]:
    """MWP DR1 bubbles whose centre lies in a field of ``shape`` with ``header``."""
    wcs = WCS(header)
    scale_deg = abs(header["CDELT2"])
    catalogue = load_catalogue(catalogue_csv)
    x, y = wcs.world_to_pixel_values(catalogue.glon, catalogue.glat)
    inside = (x >= -0.5) & (x <= shape[1] - 0.5) & (y >= -0.5) & (y <= shape[0] - 0.5)
    return [CatalogueBubble(int(catalogue.row[i]), float(x[i]), float(y[i]), float(catalogue.radius[i]) / scale_deg,
                            float(catalogue.glon[i]), float(catalogue.glat[i]), bool(catalogue.clear[i]))
            for i in np.nonzero(inside)[0]]
