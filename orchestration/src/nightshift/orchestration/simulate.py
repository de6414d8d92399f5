"""A cheap simulated night in the raw area, with its truth: what the flow's tests and benchmarks process.

The demo night is made by the science services themselves (see :mod:`.demo`); this one needs no
model: its truth is what the tile-statistics data-quality service measures, so the flow can be
tested end to end in seconds.

Two surveys arrive as the nightly transfer would deliver them (``raw/<night>/<survey>/<field>/<band>.fits``):

- ``glimpse``: Galactic-plane fields in the Spitzer IRAC 8 um and MIPS 24 um bands, one FITS file per
  band on a shared gnomonic grid (1.2 arcsec pixels), Gaussian noise on a flat background, with a
  stripe of blank (NaN) rows as real mosaics have at their edges;
- ``planck``: a low-resolution full-sky HEALPix map (nside 32, Galactic, RING) in two HFI bands.

The truth is each band's background and noise level, which the tile-statistics service measures. A
malformed input (a "FITS" file that is not one) can be added to exercise the quarantine.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import BandConfig, FitsTiling, HealpixTiling, SurveyConfig
from nightshift.orchestration.layout import NightLayout

__all__ = ["BandTruth", "SIMULATED_SURVEYS", "simulate_night", "MALFORMED_INPUT"]

SIMULATED_SURVEYS = (
    SurveyConfig(
        name="glimpse",
        bands=(BandConfig(name="irac4", wavelength_um=7.87, unit="MJy/sr"),
               BandConfig(name="mips24", wavelength_um=23.7, unit="MJy/sr")),
        tiling=FitsTiling(window_px=(128,), overlap_fraction=0.25),
    ),
    SurveyConfig(
        name="planck",
        bands=(BandConfig(name="hfi_143", wavelength_um=2096.0, unit="uK_CMB"),
               BandConfig(name="hfi_353", wavelength_um=849.3, unit="uK_CMB")),
        tiling=HealpixTiling(patch_px=48, pixel_scale_arcmin=60.0, frame="galactic"),
    ),
)
MALFORMED_INPUT = "glimpse/l031"
"""The field whose 8 um file is not a FITS file, when the night is simulated with ``malformed=True``."""

_FIELD_PX = 256
_PIXEL_SCALE_DEG = 1.2 / 3600
_BLANK_ROWS = 24
_HEALPIX_NSIDE = 32


@dataclasses.dataclass(frozen=True)
class BandTruth:
    """Simulated background and Gaussian noise sigma of one band of one survey, in the band's unit."""

    survey: str
    band: str
    background: float
    noise: float


_TRUTH = (
    BandTruth("glimpse", "irac4", background=60.0, noise=2.0),
    BandTruth("glimpse", "mips24", background=40.0, noise=1.5),
    BandTruth("planck", "hfi_143", background=20.0, noise=30.0),
    BandTruth("planck", "hfi_353", background=150.0, noise=60.0),
)
_GLIMPSE_FIELDS = {"l030": 30.0, "l032": 32.0}  # field name: Galactic longitude of its centre in degrees


def _write_field(path: Path, pixels: np.ndarray, glon_deg: float, unit: str) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [glon_deg, 0.0]
    wcs.wcs.crpix = [(pixels.shape[1] + 1) / 2, (pixels.shape[0] + 1) / 2]
    wcs.wcs.cdelt = [-_PIXEL_SCALE_DEG, _PIXEL_SCALE_DEG]
    header = wcs.to_header()
    header["BUNIT"] = unit
    fits.PrimaryHDU(pixels, header=header).writeto(path, overwrite=True)


def _write_healpix(path: Path, values: np.ndarray, unit: str) -> None:
    import healpy as hp

    hp.write_map(str(path), values, coord="G", nest=False, dtype=np.float32, column_units=unit, overwrite=True)


def simulate_night(store: ObjectStore, night: str, *, seed: int = 0, malformed: bool = False) -> list[BandTruth]:
    """Write the simulated night into ``raw/<night>/`` of ``store``; return the truth per band.

    Parameters
    ----------
    store : ObjectStore
        Where the raw area is.
    night : str
        The night, YYYY-MM-DD.
    seed : int
        Seed of the noise: the same seed writes the same bytes.
    malformed : bool
        Also deliver the field :data:`MALFORMED_INPUT`, whose 8 um file is not a FITS file.
    """
    rng = np.random.default_rng(seed)
    prefix = NightLayout(store, night).raw_prefix
    truth = {(t.survey, t.band): t for t in _TRUTH}
    surveys = {s.name: s for s in SIMULATED_SURVEYS}
    with tempfile.TemporaryDirectory(prefix="nightshift-sim-") as directory:
        out = Path(directory)
        for field, glon in _GLIMPSE_FIELDS.items():
            for band in surveys["glimpse"].bands:
                t = truth[("glimpse", band.name)]
                pixels = rng.normal(t.background, t.noise, size=(_FIELD_PX, _FIELD_PX)).astype(np.float32)
                pixels[:_BLANK_ROWS] = np.nan
                path = out / f"{field}-{band.name}.fits"
                _write_field(path, pixels, glon, band.unit)
                store.put_file(f"{prefix}glimpse/{field}/{band.name}.fits", path)
        npix = 12 * _HEALPIX_NSIDE**2
        for band in surveys["planck"].bands:
            t = truth[("planck", band.name)]
            path = out / f"planck-{band.name}.fits"
            _write_healpix(path, rng.normal(t.background, t.noise, size=npix).astype(np.float32), band.unit)
            store.put_file(f"{prefix}planck/hfi-sky/{band.name}.fits", path)
        if malformed:
            survey, field = MALFORMED_INPUT.split("/")
            store.put_bytes(f"{prefix}{survey}/{field}/irac4.fits", b"SIMPLE  = this is not a FITS file\n")
            good = out / "l030-mips24.fits"
            store.put_file(f"{prefix}{survey}/{field}/mips24.fits", good)
    return list(_TRUTH)
