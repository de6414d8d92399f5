"""Tile sky geometry: WCS cards, centres, frames and pixel scales on hand-made WCSs."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from nightshift.ingest.sky import centers_of, pixel_scale_arcsec, sky_frame_of, wcs_cards, wcs_from_cards
from nightshift.ingest.synthetic import field_wcs
from nightshift.v1 import tile_pb2


def test_cards_are_80_characters_and_give_the_same_wcs_back() -> None:
    wcs = field_wcs((50, 70), lon_deg=10.0, lat_deg=-20.0, pixel_scale_arcsec=2.0, frame="icrs")
    cards = wcs_cards(wcs)
    assert cards and all(len(card) == 80 for card in cards)
    assert any(card.startswith("CTYPE1  = 'RA---TAN'") for card in cards)
    again = wcs_from_cards(cards)
    np.testing.assert_allclose(again.pixel_to_world_values(3.0, 40.0), wcs.pixel_to_world_values(3.0, 40.0), atol=1e-12)


def test_distortion_terms_travel_in_the_cards() -> None:
    header = field_wcs((32, 32)).to_header()
    header.update(CTYPE1="GLON-TAN-SIP", CTYPE2="GLAT-TAN-SIP", A_ORDER=2, B_ORDER=2, A_2_0=1e-5, B_0_2=-2e-5)
    wcs = WCS(header)
    again = wcs_from_cards(wcs_cards(wcs))
    assert again.sip is not None
    np.testing.assert_allclose(again.pixel_to_world_values(30.0, 2.0), wcs.pixel_to_world_values(30.0, 2.0), atol=1e-12)


def test_centres_are_reported_in_the_frame_of_the_wcs() -> None:
    galactic = field_wcs((11, 11), lon_deg=359.99, lat_deg=1.0, pixel_scale_arcsec=36.0)
    (centre, left_edge) = centers_of(galactic, np.array([5.0, 0.0]), np.array([5.0, 5.0]))
    assert sky_frame_of(galactic) == centre.frame == tile_pb2.SKY_FRAME_GALACTIC
    assert (centre.lon_deg, centre.lat_deg) == pytest.approx((359.99, 1.0))
    assert left_edge.lon_deg == pytest.approx(0.04, abs=1e-4)  # 5 px x 36" east of 359.99 wraps past 0
    icrs = field_wcs((11, 11), lon_deg=83.6, lat_deg=22.0, frame="icrs")
    (centre,) = centers_of(icrs, np.array([5.0]), np.array([5.0]))
    assert centre.frame == tile_pb2.SKY_FRAME_ICRS and (centre.lon_deg, centre.lat_deg) == pytest.approx((83.6, 22.0))


def test_pixel_scale_in_arcseconds() -> None:
    assert pixel_scale_arcsec(field_wcs((8, 8), pixel_scale_arcsec=1.2)) == pytest.approx(1.2)
