"""The real composites: names, orientation and the catalogue cross-match."""

import pytest

from nightshift.bubbles.realdata import CATALOGUE_FILE, DEFAULT_REAL_DIR, catalogue_in_field, load_composites, parse_field_name


def test_parse_field_name() -> None:
    assert parse_field_name("GLM_028828-00228_mosaic_0.2133x0.1067_I24M1.jpg") == (28.828, -0.228, 0.2133)
    assert parse_field_name("GLM_04130-0013_mosaic_I24M1.jpg") == (41.30, -0.13, None)
    assert parse_field_name("GLM_04393+0006_mosaic_I24M1.jpg") == (43.93, 0.06, None)
    with pytest.raises(ValueError, match="expected GLM_"):
        parse_field_name("m31.jpg")


def test_catalogued_bubble_lands_on_the_visible_bubble() -> None:
    if not (DEFAULT_REAL_DIR / CATALOGUE_FILE).exists():
        pytest.skip(f"the real bubble data ({DEFAULT_REAL_DIR}) is not available on this machine")
    first = load_composites(DEFAULT_REAL_DIR)[0]
    assert first.pixels.shape == (2, 400, 800)
    catalogue = catalogue_in_field(DEFAULT_REAL_DIR / CATALOGUE_FILE, first.header, (400, 800))
    big = max(catalogue, key=lambda c: c.radius_px)
    # the bright bubble of l = 28.8 deg is centred near column 410, row 190 from the top of the JPEG
    assert abs(big.x_px - 410) < 25 and abs((399 - big.y_px) - 190) < 25
    # its rim is bright at 8 um (green) and its inside bright at 24 um (red); it is a high-quality bubble
    assert first.pixels[1, int(big.y_px), int(big.x_px)] > first.pixels[1].mean()
    assert big.clear
