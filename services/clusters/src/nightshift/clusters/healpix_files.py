"""Per-band HEALPix FITS maps in the Planck layout: written from a simulated sky, read with bounded memory.

Planck's frequency maps (e.g. ``HFI_SkyMap_100_2048_R3.01_full.fits``) are one file per band: a
BINTABLE extension (``EXTNAME = 'FREQ-MAP'``) whose first column ``I_STOKES`` is the intensity
(then Q, U, hit counts, covariances), with ``PIXTYPE = 'HEALPIX'``, ``NSIDE``, ``ORDERING``
(``NESTED`` for Planck), ``COORDSYS = 'GALACTIC'``, the unit in ``TUNIT1`` and the band in
``FREQ``. :func:`read_band_files` checks every file's header before it reads any data, then
copies only the intensity column of one file at a time from a memory map into a single float32
array (bands, 12 nside^2): six nside-2048 maps take 1.2 GB, with no float64 copy of any.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import healpy as hp
import numpy as np

from nightshift.clusters.config import BandInfo
from nightshift.core.errors import InvalidInput

__all__ = ["INTENSITY_COLUMN", "planck_file_name", "unit_scale", "write_planck_maps", "read_band_files"]

INTENSITY_COLUMN = "I_STOKES"
_K_CMB = re.compile(r"([muµμ]?)(?i:k_?cmb)")
_K_CMB_PREFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6}


def planck_file_name(band: BandInfo, nside: int) -> str:
    """A Planck-style name for a simulated band map, e.g. ``HFI_SkyMap_100_2048_SIM_full.fits``."""
    return f"HFI_SkyMap_{band.frequency_ghz:.0f}_{nside}_SIM_full.fits"


def unit_scale(unit: str, band: BandInfo) -> float | None:
    """The factor taking a map in ``unit`` to ``band.unit`` (K_CMB or MJy/sr), or None when it is not a pure rescaling.

    K_CMB, mK_CMB and uK_CMB are accepted for the K_CMB bands; any intensity per solid angle
    astropy parses (MJy/sr, Jy/sr, ...) for the MJy/sr bands. Converting between K_CMB, K_RJ and
    MJy/sr needs the band's bandpass (colour correction), so those give None.
    """
    from astropy import units as u

    text = unit.strip().replace(" ", "")
    if band.unit == "K_CMB":
        match = _K_CMB.fullmatch(text)
        return _K_CMB_PREFIX[match.group(1)] if match else None
    if band.unit == "MJy/sr":
        try:
            return float(u.Unit(text).to(u.MJy / u.sr))
        except (ValueError, TypeError, u.UnitsError):
            return None
    return None


def write_planck_maps(
    maps: np.ndarray, bands: Sequence[BandInfo], directory: Path, *, nside: int | None = None, nest: bool = True,
) -> list[Path]:
    """Write RING maps (bands, 12 n^2) as one Planck-layout file per band at ``nside``, one band at a time.

    A map at another nside than ``nside`` is regridded with ``healpy.ud_grade`` (upgrading
    repeats each pixel in its 4^k children: the sky keeps the input's resolution and its noise
    the input pixels' variance). Columns: ``I_STOKES`` in the band's unit and ``II_COV``, the
    white-noise variance of a pixel (the simulator's noise depth over the input pixel size, squared);
    Planck's files also carry hit counts and, up to 353 GHz, Q and U, which are not simulated.
    """
    from astropy.io import fits

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    maps = np.atleast_2d(maps)
    nside_in = hp.npix2nside(maps.shape[-1])
    nside = nside or nside_in
    pixel_arcmin = hp.nside2resol(nside_in, arcmin=True)
    paths = []
    for values, band in zip(maps, bands):
        if band.frequency_ghz <= 0:
            raise ValueError(f"band {band.name}: the Planck layout holds frequency maps only")
        sky = np.asarray(values, dtype=np.float32)
        if nside != nside_in:
            sky = hp.ud_grade(sky, nside, order_in="RING", order_out="RING", dtype=np.float32)
        if nest:
            sky = hp.reorder(sky, r2n=True).astype(np.float32, copy=False)
        variance = np.full(sky.shape, (band.noise_depth / pixel_arcmin) ** 2, dtype=np.float32)
        table = fits.BinTableHDU.from_columns([
            fits.Column(name=INTENSITY_COLUMN, format="E", unit=band.unit, array=sky),
            fits.Column(name="II_COV", format="E", unit=f"({band.unit})^2", array=variance),
        ], name="FREQ-MAP")
        del sky, variance
        table.header.extend([
            ("PIXTYPE", "HEALPIX", "HEALPIX pixelisation"),
            ("ORDERING", "NESTED" if nest else "RING", "pixel ordering scheme"),
            ("NSIDE", nside, "resolution parameter"),
            ("FIRSTPIX", 0, "first pixel #"),
            ("LASTPIX", hp.nside2npix(nside) - 1, "last pixel #"),
            ("INDXSCHM", "IMPLICIT", "indexing: implicit (full sky)"),
            ("OBJECT", "FULLSKY", "sky coverage"),
            ("COORDSYS", "GALACTIC", "coordinate system"),
            ("BAD_DATA", hp.UNSEEN, "value of missing pixels"),
            ("FREQ", f"{band.frequency_ghz:.0f}", "band centre [GHz]"),
            ("NSIDEIN", nside_in, "nside the sky was simulated at"),
        ])
        path = directory / planck_file_name(band, nside)
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
        del table
        paths.append(path)
    return paths


@dataclasses.dataclass(frozen=True)
class _BandFile:
    path: Path
    hdu: int
    column: str
    nside: int
    nested: bool
    explicit: bool
    scale: float


def _band_frequency(path: Path, header, bands: Sequence[BandInfo]) -> float | None:
    """The band a file holds: its FREQ card, else the one band frequency its name contains."""
    known = {round(b.frequency_ghz) for b in bands}
    if "FREQ" in header:
        found = re.search(r"\d+(\.\d+)?", str(header["FREQ"]))
        if found:
            return float(found.group())
    named = {int(n) for n in re.findall(r"(?<![\d.])(\d{2,3})(?![\d.])", path.name)} & known
    return float(named.pop()) if len(named) == 1 else None


def _inspect(path: Path, band: BandInfo, position: int, bands: Sequence[BandInfo]) -> _BandFile:
    """Check one per-band file's header (HEALPix table, NSIDE, ORDERING, Galactic, band, unit) without reading its data."""
    from astropy.io import fits

    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    order = ", ".join(f"{b.frequency_ghz:.0f}" for b in bands)
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdus:
            found = [(i, h.header.copy()) for i, h in enumerate(hdus) if isinstance(h, fits.BinTableHDU)]
    except OSError as error:
        raise InvalidInput(f"{path}: not a FITS file ({' '.join(str(error).split())})") from None
    if not found:
        raise InvalidInput(f"{path}: no BINTABLE extension: expected a HEALPix map table (Planck layout)")
    index, header = found[0]
    if str(header.get("PIXTYPE", "")).strip().upper() != "HEALPIX":
        raise InvalidInput(f"{path}: PIXTYPE {header.get('PIXTYPE')!r}, expected 'HEALPIX'")
    nside = header.get("NSIDE")
    if not isinstance(nside, int) or nside < 1 or nside & (nside - 1):
        raise InvalidInput(f"{path}: NSIDE {nside!r}, expected a power of 2")
    ordering = str(header.get("ORDERING", "")).strip().upper()
    if ordering not in ("RING", "NESTED", "NEST"):
        raise InvalidInput(f"{path}: ORDERING {header.get('ORDERING')!r}, expected 'RING' or 'NESTED'")
    coordsys = str(header.get("COORDSYS", "")).strip().upper()
    if coordsys not in ("G", "GALACTIC"):
        raise InvalidInput(f"{path}: COORDSYS {header.get('COORDSYS')!r}, expected Galactic ('G' or 'GALACTIC')")
    explicit = str(header.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT"
    names = [str(header.get(f"TTYPE{i}", "")).strip() for i in range(1, header.get("TFIELDS", 0) + 1)]
    data_names = [n for n in names if n.upper() != "PIXEL"] if explicit else names
    if not data_names or (explicit and "PIXEL" not in (n.upper() for n in names)):
        raise InvalidInput(f"{path}: no map column" + (" or no PIXEL column (explicit indexing)" if explicit else ""))
    column = next((n for n in data_names if n.upper() == INTENSITY_COLUMN), data_names[0])
    frequency = _band_frequency(path, header, bands)
    if frequency is None:
        raise InvalidInput(f"{path}: cannot tell its band: no FREQ card and no band frequency ({order} GHz) in the file name")
    if round(frequency) != round(band.frequency_ghz):
        raise InvalidInput(f"{path}: the {frequency:.0f} GHz map given as band {position + 1}, which is {band.frequency_ghz:.0f} GHz: "
                           f"give the files in the model's band order {order} GHz")
    unit = str(header.get(f"TUNIT{names.index(column) + 1}", "")).strip()
    if not unit:
        raise InvalidInput(f"{path}: column {column} has no unit (TUNIT): expected {band.unit}")
    scale = unit_scale(unit, band)
    if scale is None:
        raise InvalidInput(f"{path}: unit {unit!r} of the {band.frequency_ghz:.0f} GHz map, expected {band.unit} "
                           + ("(or mK_CMB, uK_CMB)" if band.unit == "K_CMB" else "(or Jy/sr, ...)")
                           + ": K_CMB <-> K_RJ <-> MJy/sr needs the band's colour correction, not applied here")
    return _BandFile(path, index, column, nside, ordering.startswith("NEST"), explicit, scale)


def read_band_files(paths: Sequence[Path], bands: Sequence[BandInfo]) -> tuple[np.ndarray, bool]:
    """The maps (bands, 12 nside^2) float32 of one HEALPix file per band, in ``bands``' order and units, and whether they are NESTED.

    Missing pixels (UNSEEN, or outside an explicit-indexed partial map) become NaN.

    Raises
    ------
    InvalidInput
        Another number of files than bands, a file that is not a Galactic HEALPix table, NSIDE or
        ORDERING differing between files, a file of another band than its position, a unit that
        is not the band's up to a power of ten, or a band without any finite pixel.
    """
    from astropy.io import fits

    paths = [Path(p) for p in paths]
    if len(paths) != len(bands):
        raise InvalidInput(f"{len(paths)} map files, expected one per band: {[b.name for b in bands]}")
    if any(b.frequency_ghz <= 0 for b in bands):
        raise InvalidInput(f"the model's bands {[b.name for b in bands]} include a non-frequency map: give one multi-column file")
    files = [_inspect(path, band, i, bands) for i, (path, band) in enumerate(zip(paths, bands))]
    for name, values in (("NSIDE", [f.nside for f in files]), ("ORDERING", ["NESTED" if f.nested else "RING" for f in files])):
        if len(set(values)) > 1:
            raise InvalidInput(f"{name} differs between the files: " + ", ".join(f"{f.path.name} {v}" for f, v in zip(files, values)))
    npix = hp.nside2npix(files[0].nside)
    maps = np.empty((len(files), npix), dtype=np.float32)
    for band, (file, target) in enumerate(zip(files, maps)):
        with fits.open(file.path, memmap=True) as hdus:
            table = hdus[file.hdu].data
            values = table.field(file.column).reshape(-1)  # a view of the memory map: one column, no copy
            if file.explicit:
                target[:] = np.nan
                target[np.asarray(table.field("PIXEL")).reshape(-1).astype(np.int64)] = values
            elif len(values) != npix:
                raise InvalidInput(f"{file.path}: {len(values)} pixels, NSIDE {file.nside} has {npix}")
            else:
                target[:] = values
            del table, values
        target[hp.mask_bad(target)] = np.nan
        if file.scale != 1.0:
            target *= np.float32(file.scale)
        if not np.isfinite(target).any():
            raise InvalidInput(f"{file.path}: no finite pixel (all UNSEEN, NaN or infinite)")
    return maps, files[0].nested
