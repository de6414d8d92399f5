"""bench's full-sky-from-files section: the band files are cached, and the gnomview baseline cuts the patches infer cuts."""

from __future__ import annotations

import pytest

from nightshift.clusters.config import get_config
from nightshift.clusters.fullsky import _gnomview_baseline, planck_files
from nightshift.clusters.patches import cell_tiling


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTSHIFT_CLUSTERS_CACHE", str(tmp_path))
    return tmp_path


def test_band_files_are_written_once_at_the_asked_nside_and_match_gnomview(cache) -> None:
    config = get_config("tiny", overrides={"nside": "64", "random_clusters": "20"})
    paths, seconds = planck_files(config, 128)
    assert seconds is not None and [p.name for p in paths][0] == "HFI_SkyMap_100_128_SIM_full.fits"
    assert all(p.is_relative_to(cache) for p in paths)
    again, cached = planck_files(config, 128)
    assert again == paths and cached is None
    lon, lat = cell_tiling([7, 30], 4)
    figures = _gnomview_baseline(paths, config, lon, lat)
    # NESTED nside-128 files: every pixel of every band equals gnomview's
    assert figures["gnomview_pixel_agreement"] == 1.0 and figures["gnomview_s_per_patch"] > 0
