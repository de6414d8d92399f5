"""The real cluster catalogues: PSZ2 masses and redshifts for the simulator and cross-matching of detections.

Read from the directory :func:`nightshift.clusters.config.catalogue_dir` names (never shipped
with the package): the SZ compilation FITS table (PSZ2 names, positions, M500, z, S/N), MCXC and
redMaPPer (clusters not in Planck) as CSV. A detection within the match radius of a catalogue
cluster is *known* and labelled with the first catalogue that has one, in the order PSZ2, MCXC,
redMaPPer; otherwise it is *new*. A detection unrelated to the catalogues is known by chance at
the rate :func:`chance_match_fraction` gives (about 0.1 at high Galactic latitude in the SDSS
area, where redMaPPer is dense): on the simulated skies, whose clusters are placed independently
of these catalogues, that is all a cross-match finds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

__all__ = [
    "Psz2Catalogue", "ReferenceCatalogue", "CrossMatch", "read_psz2", "read_references", "crossmatch", "chance_match_fraction",
]

SZ_COMPILATION = "exp_joined_ami_carma_plck_psz1_psz2_act_spt_YT.fits"
_CSV_CATALOGUES = (("MCXC", "MCXC_no_planck.csv"), ("redMaPPer", "RedMaPPer_no_planck.csv"))


@dataclasses.dataclass(frozen=True)
class Psz2Catalogue:
    """PSZ2 clusters: name, Galactic position (deg), M500 (Msun, 0 = unknown), z (0 = unknown), S/N."""

    name: np.ndarray
    glon: np.ndarray
    glat: np.ndarray
    m500_msun: np.ndarray
    z: np.ndarray
    snr: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


@dataclasses.dataclass(frozen=True)
class ReferenceCatalogue:
    """One catalogue to cross-match with: its label, the clusters' names and ICRS positions."""

    label: str
    names: np.ndarray
    coords: SkyCoord


@dataclasses.dataclass(frozen=True)
class CrossMatch:
    """Per detection: the matching catalogue ("" when new), the matched name and separation (arcmin)."""

    catalogue: np.ndarray
    name: np.ndarray
    separation_arcmin: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return self.catalogue != ""


def _filled(column: object, fill: float) -> np.ndarray:
    return np.asarray(np.ma.filled(np.ma.asarray(column, dtype=float), fill), dtype=float)


def read_psz2(directory: Path) -> Psz2Catalogue:
    """The 1653 PSZ2 clusters of the SZ compilation table in ``directory``.

    Raises
    ------
    FileNotFoundError
        The table is not in ``directory``.
    """
    table = Table.read(directory / SZ_COMPILATION)
    table = table[np.ma.filled(table["INDEX_PSZ2"], -1) >= 0]
    return Psz2Catalogue(
        name=np.array([str(n).strip() for n in table["PSZ2_NAME"]]),
        glon=_filled(table["PSZ2_GLON"], np.nan),
        glat=_filled(table["PSZ2_GLAT"], np.nan),
        m500_msun=np.nan_to_num(_filled(table["PSZ2_MSZ"], 0.0)) * 1e14,
        z=np.nan_to_num(np.maximum(_filled(table["PSZ2_REDSHIFT"], 0.0), 0.0)),
        snr=_filled(table["PSZ2_SNR"], np.nan),
    )


def _icrs_name(prefix: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.array([f"{prefix} J{r:08.4f}{d:+08.4f}" for r, d in zip(ra, dec)])


def read_references(directory: Path) -> list[ReferenceCatalogue]:
    """PSZ2, MCXC and redMaPPer from ``directory``, in cross-match priority order.

    MCXC and redMaPPer clusters have no names in the CSV files: they are named by catalogue and
    ICRS position, e.g. ``"MCXC J234.8913-83.5922"``.
    """
    psz2 = read_psz2(directory)
    references = [ReferenceCatalogue(
        "PSZ2", psz2.name, SkyCoord(l=psz2.glon * u.deg, b=psz2.glat * u.deg, frame="galactic").icrs,
    )]
    for label, file_name in _CSV_CATALOGUES:
        table = Table.read(directory / file_name, format="ascii.csv")
        ra, dec = np.asarray(table["RA"], float), np.asarray(table["DEC"], float)
        references.append(ReferenceCatalogue(label, _icrs_name(label, ra, dec), SkyCoord(ra=ra * u.deg, dec=dec * u.deg)))
    return references


def crossmatch(glon: np.ndarray, glat: np.ndarray, references: list[ReferenceCatalogue], *, radius_arcmin: float) -> CrossMatch:
    """Label each position with the first reference catalogue holding a cluster within ``radius_arcmin``.

    Parameters
    ----------
    glon, glat : ndarray
        Galactic positions in degrees, shape (n,).
    references : list of ReferenceCatalogue
        In priority order.
    radius_arcmin : float
        Match radius in arcmin (7 in the seed).
    """
    n = len(glon)
    catalogue = np.full(n, "", dtype=object)
    name = np.full(n, "", dtype=object)
    separation = np.full(n, np.nan)
    if n == 0:
        return CrossMatch(catalogue.astype(str), name.astype(str), separation)
    coords = SkyCoord(l=np.asarray(glon) * u.deg, b=np.asarray(glat) * u.deg, frame="galactic").icrs
    for reference in references:
        if not len(reference.names):
            continue
        index, sep, _ = coords.match_to_catalog_sky(reference.coords)
        sep_arcmin = sep.to_value(u.arcmin)
        hit = (catalogue == "") & (sep_arcmin <= radius_arcmin)
        catalogue[hit] = reference.label
        name[hit] = reference.names[index[hit]]
        separation[hit] = sep_arcmin[hit]
    return CrossMatch(catalogue.astype(str), name.astype(str), separation)


def chance_match_fraction(
    glon: np.ndarray, glat: np.ndarray, references: list[ReferenceCatalogue], *, radius_arcmin: float,
    samples: int = 20000, seed: int = 0,
) -> float:
    """The fraction of a searched area within ``radius_arcmin`` of a reference cluster: the chance match rate.

    A detection placed independently of the catalogues (a false one, or any on a simulated sky)
    is labelled known with this probability; ``rate * detections`` is the number of known labels
    to expect from chance alone.

    Parameters
    ----------
    glon, glat : ndarray
        Positions sampling the searched area uniformly (e.g. the centres of its HEALPix pixels),
        Galactic, in degrees.
    references : list of ReferenceCatalogue
        The catalogues of the cross-match.
    radius_arcmin : float
        Match radius in arcmin.
    samples : int
        At most this many of the positions, drawn seeded by ``seed``, are cross-matched.

    Returns
    -------
    float
        The fraction, NaN for an empty area; 0 without references.
    """
    if len(glon) == 0:
        return float("nan")
    if len(glon) > samples:
        drawn = np.random.default_rng(seed).choice(len(glon), samples, replace=False)
        glon, glat = np.asarray(glon)[drawn], np.asarray(glat)[drawn]
    return float(crossmatch(glon, glat, references, radius_arcmin=radius_arcmin).known.mean())
