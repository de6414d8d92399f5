"""The simulated night: files a survey would deliver, with their truth."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.core.store import ObjectStore
from nightshift.orchestration.simulate import simulate_night


def test_simulated_night_writes_fits_fields_and_healpix_maps_with_their_truth(store: ObjectStore, tmp_path) -> None:
    truth = simulate_night(store, "2026-07-08", seed=3, malformed=True)
    keys = [k.split("2026-07-08/")[1] for k in store.list_keys(store.key("raw", "2026-07-08"))]
    assert "glimpse/l030/irac4.fits" in keys and "planck/hfi-sky/hfi_353.fits" in keys and "glimpse/l031/irac4.fits" in keys
    with fits.open(store.get_file(store.key("raw", "2026-07-08", "glimpse/l030/irac4.fits"), tmp_path / "a.fits")) as hdus:
        pixels, header = hdus[0].data, hdus[0].header
    assert WCS(header).celestial.wcs.ctype[0] == "GLON-TAN"
    irac4 = next(t for t in truth if t.band == "irac4")
    assert abs(np.nanmedian(pixels) - irac4.background) < 0.1 * irac4.noise
    assert np.isnan(pixels[0]).all()
