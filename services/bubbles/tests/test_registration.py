"""Registration of the real composites: the fit recovers a known scale, and the stored headers put MWP rings on rings."""

import numpy as np
import pytest

from nightshift.bubbles.realdata import (CATALOGUE_FILE, DEFAULT_REAL_DIR, MwpCatalogue, catalogue_in_field, load_catalogue,
                                         load_composites, name_header, parse_field_name)
from nightshift.bubbles.registration import _prepared, field_ring_score, register_field, ring_contrasts


def _ring_sky(scale_arcsec: float, rng: np.random.Generator) -> tuple[np.ndarray, MwpCatalogue]:
    """A 200 x 400 sky at (l, b) = (30, 0) with 10 catalogue rings drawn at ``scale_arcsec``, a gradient and noise."""
    count = 10
    glon = 30.0 + rng.uniform(-0.045, 0.045, count)
    glat = rng.uniform(-0.022, 0.022, count)
    radius = rng.uniform(0.004, 0.01, count)
    yy, xx = np.mgrid[0:200, 0:400].astype(float)
    sky = 0.01 * xx + rng.normal(0.0, 1.0, xx.shape)
    step = scale_arcsec / 3600.0
    for lon, lat, r in zip(glon, glat, radius):
        x, y = 199.5 - (lon - 30.0) / step, 99.5 + lat / step
        sky += 6.0 * np.exp(-0.5 * ((np.hypot(xx - x, yy - y) - r / step) / 1.5) ** 2)
    catalogue = MwpCatalogue(np.arange(count), glon, glat, radius, radius, np.ones(count, bool))
    return sky.astype(np.float32), catalogue


def test_fit_recovers_the_scale_and_centre_of_a_sky_with_known_rings() -> None:
    sky, catalogue = _ring_sky(2.7, np.random.default_rng(3))
    # the nominal centre is off by 0.005 deg in each coordinate, as the file names' rounding allows
    fitted = register_field(sky, catalogue, 30.005, -0.005, scales_arcsec=(1.0, 6.0), scale_steps=25, offset_steps=5)
    assert fitted.scale_arcsec == pytest.approx(2.7, rel=0.03)
    assert abs(fitted.glon - 30.0) * 3600 < 2 * 2.7 and abs(fitted.glat) * 3600 < 2 * 2.7
    assert fitted.bubbles == 10


@pytest.fixture(scope="module")
def real():
    if not (DEFAULT_REAL_DIR / CATALOGUE_FILE).exists():
        pytest.skip(f"the real bubble data ({DEFAULT_REAL_DIR}) is not available on this machine")
    return load_composites(DEFAULT_REAL_DIR), load_catalogue(DEFAULT_REAL_DIR / CATALOGUE_FILE)


def test_stored_registration_matches_the_extent_the_first_file_name_gives(real) -> None:
    fields, _ = real
    named = [f for f in fields if parse_field_name(f.name)[2] is not None]
    assert named, "no composite names its extent"
    for field in named:
        assert abs(field.header["CDELT2"]) * 3600 == pytest.approx(abs(name_header(field.name, (400, 800))["CDELT2"]) * 3600, rel=0.02)


def test_high_quality_bubbles_land_on_rings_at_the_stored_registration_only(real) -> None:
    fields, catalogue = real
    contrasts = []
    for field in fields:
        registered, _ = field_ring_score(field.pixels[0], catalogue, field.header)
        assert registered > 10.0, field.name
        for factor in (0.85, 1.15):  # a scale 15% off puts the rings on random sky
            wrong = field.header.copy()
            wrong["CDELT1"], wrong["CDELT2"] = field.header["CDELT1"] * factor, field.header["CDELT2"] * factor
            wrong["CRPIX2"] = (field.header["CRPIX2"] - 200.5) / factor + 200.5
            assert field_ring_score(field.pixels[0], catalogue, wrong)[0] < 0.7 * registered, (field.name, factor)
        clear = [b for b in catalogue_in_field(DEFAULT_REAL_DIR / CATALOGUE_FILE, field.header, (400, 800)) if b.clear]
        contrasts += list(ring_contrasts(_prepared(field.pixels[0]), *(np.array([getattr(b, k) for b in clear])
                                                                      for k in ("x_px", "y_px", "radius_px"))))
    contrasts = np.array(contrasts)
    assert len(contrasts) >= 5
    assert np.mean(contrasts > 1.0) >= 0.7, contrasts
