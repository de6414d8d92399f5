"""The synthetic survey files: seeded, as documented, and readable as the surveys' own."""

from __future__ import annotations

from pathlib import Path

import healpy as hp
import numpy as np
from astropy.io import fits

from nightshift.ingest.synthetic import field_image, field_wcs, healpix_maps, write_field, write_healpix


def test_field_is_seeded_with_a_nan_corner() -> None:
    image = field_image((80, 120), seed=3)
    np.testing.assert_array_equal(image, field_image((80, 120), seed=3))
    assert not np.array_equal(image, field_image((80, 120), seed=4), equal_nan=True)
    assert np.isnan(image[:10, :15]).all() and np.isfinite(image[10:, :]).all()
    assert image.dtype == np.float32 and np.isfinite(field_image((8, 8), missing=False)).all()


def test_field_wcs_is_centred_north_up_east_left() -> None:
    wcs = field_wcs((101, 201), lon_deg=45.0, lat_deg=10.0, pixel_scale_arcsec=3.6)
    centre = wcs.pixel_to_world_values(100.0, 50.0)
    np.testing.assert_allclose(centre, (45.0, 10.0))
    assert wcs.pixel_to_world_values(101.0, 50.0)[0] < 45.0 < wcs.pixel_to_world_values(99.0, 50.0)[0]
    assert wcs.pixel_to_world_values(100.0, 51.0)[1] > 10.0


def test_written_files_read_back(tmp_path: Path) -> None:
    image = field_image((16, 24))
    path = write_field(tmp_path / "f.fits", image, field_wcs((16, 24)), unit="adu")
    np.testing.assert_array_equal(fits.getdata(path), image)
    assert fits.getheader(path)["BUNIT"] == "adu"
    maps = healpix_maps(8, 2, seed=1)
    assert maps.shape == (2, hp.nside2npix(8)) and maps.dtype == np.float32
    read = hp.read_map(str(write_healpix(tmp_path / "m.fits", maps, nest=True)), field=(0, 1), nest=True)
    np.testing.assert_array_equal(read, maps)
