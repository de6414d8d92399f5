"""Reading the real catalogues and cross-matching positions with them."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from nightshift.clusters.catalogues import ReferenceCatalogue, chance_match_fraction, crossmatch, read_psz2, read_references
from nightshift.clusters.config import catalogue_dir


def _reference(label: str, names: list[str], glon: list[float], glat: list[float]) -> ReferenceCatalogue:
    coords = SkyCoord(l=np.array(glon) * u.deg, b=np.array(glat) * u.deg, frame="galactic").icrs
    return ReferenceCatalogue(label, np.array(names), coords)


def test_crossmatch_labels_by_priority_within_the_radius() -> None:
    psz2 = _reference("PSZ2", ["PSZ2 A"], [10.0], [20.0])
    mcxc = _reference(
        "MCXC", ["MCXC A", "MCXC B"], [10.0, 50.0], [20.05, -5.0])
    # 6' from PSZ2 A (matched), 8' from MCXC B (not), far from everything (new)
    match = crossmatch(np.array([10.0, 50.0, 200.0]), np.array([20.1, -5.0 + 8 / 60, 0.0]), [psz2, mcxc], radius_arcmin=7.0)
    assert match.catalogue.tolist() == ["PSZ2", "", ""]
    assert match.name.tolist() == ["PSZ2 A", "", ""]
    assert match.separation_arcmin[0] == pytest.approx(6.0, abs=0.01)
    assert match.known.tolist() == [True, False, False]
    assert len(crossmatch(np.zeros(0), np.zeros(0), [psz2], radius_arcmin=7.0).name) == 0


def test_chance_match_fraction_is_the_share_of_positions_near_a_reference() -> None:
    psz2 = _reference("PSZ2", ["PSZ2 A"], [10.0], [20.0])
    mcxc = _reference("MCXC", ["MCXC A"], [50.0], [-5.0])
    glon, glat = np.array([10.0, 10.0, 50.0, 200.0]), np.array([20.0, 20.3, -5.05, 0.0])  # 0', 18', 3', far
    assert chance_match_fraction(glon, glat, [psz2, mcxc], radius_arcmin=7.0) == 0.5
    assert chance_match_fraction(glon, glat, [], radius_arcmin=7.0) == 0.0
    assert np.isnan(chance_match_fraction(np.zeros(0), np.zeros(0), [psz2], radius_arcmin=7.0))
    # more positions than samples: a seeded subsample estimates the same share
    many_lon, many_lat = np.tile(glon, 500), np.tile(glat, 500)
    assert chance_match_fraction(many_lon, many_lat, [psz2, mcxc], radius_arcmin=7.0, samples=1000) == pytest.approx(0.5, abs=0.06)


def test_real_catalogues() -> None:
    directory = catalogue_dir()
    if directory is None:
        pytest.skip("the real catalogues (/work/shared/data/clusters) are absent")
    psz2 = read_psz2(directory)
    assert len(psz2) == 1653 and psz2.name[0].startswith("PSZ2 G")
    assert (psz2.snr >= 4.5).all() and (psz2.m500_msun > 0).sum() > 1000
    references = read_references(directory)
    assert [r.label for r in references] == ["PSZ2", "MCXC", "redMaPPer"]
    match = crossmatch(psz2.glon[:5], psz2.glat[:5], references, radius_arcmin=7.0)
    assert match.name.tolist() == psz2.name[:5].tolist()
