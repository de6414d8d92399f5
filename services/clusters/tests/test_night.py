"""The night kit: simulate-night writes a partial-sky night the ingest tiles for this service; score-night scores honestly."""

from __future__ import annotations

import json

import healpy as hp
import numpy as np
import pytest
from astropy.table import Table

from nightshift.clusters.cli import main
from nightshift.clusters.config import catalogue_dir
from nightshift.clusters.night import SKY_SEED_OFFSET, night_config, score_night
from nightshift.clusters.patches import sample_patches
from nightshift.clusters.servicer import ClustersModel

_NSIDE, _RADIUS_DEG, _SEED = 128, 6.0, 3  # a small sky: the kit in about a second


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("clusters-night")
    return out


@pytest.fixture(scope="module")
def summary(kit):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["simulate-night", "--output", str(kit), "--seed", str(_SEED), "--radius-deg", str(_RADIUS_DEG),
              "--set", f"nside={_NSIDE}"])
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def _observed_maps(kit, bands):
    field = next((kit / "raw").iterdir())
    maps, headers = [], []
    for band in bands:
        values, header = hp.read_map(field / f"{band}.fits", h=True, dtype=np.float32)
        maps.append(np.where(values == hp.UNSEEN, np.nan, values))
        headers.append(dict(header))
    return np.stack(maps), headers


def test_simulate_night_writes_a_night_the_service_accepts(kit, summary) -> None:
    night = json.loads((kit / "night.json").read_text())
    config = night_config(_SEED + 1, {"nside": _NSIDE})
    spec = ClustersModel().spec
    survey = night["survey"]
    assert set(night) == {"survey", "service"} and set(survey) == {"name", "bands", "tiling"}
    assert [b["name"] for b in survey["bands"]] == list(spec.bands) == list(config.band_names)
    assert all(b["wavelength_um"] > 0 and b["unit"] in ("K_CMB", "MJy/sr") for b in survey["bands"])
    tiling = survey["tiling"]
    assert tiling["kind"] == "healpix" and tiling["frame"] == "galactic" and 0 <= tiling["overlap_fraction"] < 1
    assert tiling["patch_px"] == spec.height == spec.width and tiling["pixel_scale_arcmin"] == 1.7
    assert tiling["validation_cells"] == [] and tiling["test_cells"] == []
    assert night["service"] == {"duplicate_radius_arcsec": 240.0, "crossmatch_radius_arcsec": 420.0}
    assert summary["sky_seed"] == _SEED + 1 and summary["fields"] == 1 and summary["files"] == 6 == len(list((kit / "raw").rglob("*.fits")))

    # the maps: partial sky, Galactic, finite inside the disc and UNSEEN (NaN when read) outside
    maps, headers = _observed_maps(kit, spec.bands)
    assert all(h["COORDSYS"] == "G" and h["NSIDE"] == _NSIDE for h in headers)
    region = json.loads((kit / "truth" / "region.json").read_text())
    centre = hp.ang2vec(region["glon"], region["glat"], lonlat=True)
    inside = np.zeros(maps.shape[1], bool)
    inside[hp.query_disc(_NSIDE, centre, np.radians(_RADIUS_DEG))] = True
    assert np.isfinite(maps[:, inside]).all() and np.isnan(maps[:, ~inside]).all()

    # the ingest's rule (nearest-pixel gnomonic patches; kept when a pixel is finite in every band):
    # a patch at the centre is whole, one on the border is kept with NaN, one far outside is skipped
    lon = region["glon"] + np.array([0.0, 0.0, 0.0])
    lat = region["glat"] + np.array([0.0, _RADIUS_DEG, _RADIUS_DEG + 3.0])
    patches = sample_patches(maps, lon, lat, patch_px=tiling["patch_px"], pixel_arcmin=tiling["pixel_scale_arcmin"])
    usable = np.isfinite(patches).all(axis=1)
    assert patches.shape[1:] == (len(spec.bands), spec.height, spec.width) and patches.dtype == np.float32
    assert usable[0].all() and 0 < usable[1].mean() < 1 and not usable[2].any()

    truth = Table.read(kit / "truth" / "clusters.ecsv", format="ascii.ecsv")
    assert summary["truth_objects"] == int(np.sum(truth["inside"])) > 0
    assert np.isfinite(truth["snr"]).all()
    references = sorted(p.stem for p in (kit / "reference").glob("*.ecsv")) if (kit / "reference").exists() else []
    assert references == (["mcxc", "psz2", "redmapper"] if catalogue_dir() is not None else [])
    if references:
        psz2 = Table.read(kit / "reference" / "psz2.ecsv", format="ascii.ecsv")
        mcxc = Table.read(kit / "reference" / "mcxc.ecsv", format="ascii.ecsv")
        assert {"name", "glon", "glat"} <= set(psz2.colnames) and {"name", "ra", "dec"} <= set(mcxc.colnames)
        assert int(np.sum(truth["psz2_analogue"] != "")) > 0  # PSZ2 analogues fall in the disc


def _catalogue(path, glon, glat):
    """A catalogue in the nightly flow's column layout for detection tasks."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    glon, glat = np.asarray(glon, float), np.asarray(glat, float)
    icrs = SkyCoord(l=glon * u.deg, b=glat * u.deg, frame="galactic").icrs
    n = len(glon)
    Table({"name": [f"c{i}" for i in range(n)], "glon": glon, "glat": glat, "ra": icrs.ra.deg, "dec": icrs.dec.deg,
           "radius_arcsec": np.full(n, 240.0), "score": np.full(n, 0.99), "label": ["cluster"] * n,
           "n_tiles": np.ones(n, int), "tile_id": ["t"] * n, "survey": ["planck-sim"] * n,
           "field": ["f"] * n}).write(path, overwrite=True)
    return path


def test_score_night_is_perfect_on_the_truth_and_worse_otherwise(kit, summary, tmp_path) -> None:
    truth = Table.read(kit / "truth" / "clusters.ecsv", format="ascii.ecsv")
    seen = truth[np.asarray(truth["inside"], bool)]
    lon, lat = np.asarray(seen["glon"], float), np.asarray(seen["glat"], float)

    perfect = score_night(kit, _catalogue(tmp_path / "perfect.fits", lon, lat))
    assert perfect["truth"] == summary["truth_objects"] == perfect["detections"] == perfect["matched"]
    assert perfect["completeness_all"] == 1.0 and perfect["purity"] == 1.0
    assert perfect["completeness"] in (1.0, None)  # None when no cluster is above the headline S/N

    # shifted by 10' (beyond the 7' match radius, away from every cluster) and half missing
    shifted = score_night(kit, _catalogue(tmp_path / "shifted.fits", lon, lat + 10.0 / 60.0))
    assert shifted["completeness_all"] < 1.0 and shifted["purity"] < 1.0
    half = score_night(kit, _catalogue(tmp_path / "half.fits", lon[::2], lat[::2]))
    assert half["completeness_all"] == pytest.approx(len(lon[::2]) / len(lon)) and half["purity"] == 1.0
    false = score_night(kit, _catalogue(tmp_path / "false.fits", np.append(lon, lon[0] + 3.0), np.append(lat, lat[0])))
    assert false["purity"] == pytest.approx(len(lon) / (len(lon) + 1)) and false["detections"] == len(lon) + 1
    empty = score_night(kit, _catalogue(tmp_path / "empty.fits", [], []))
    assert empty["detections"] == 0 and empty["completeness_all"] == 0.0 and empty["purity"] is None


def test_score_night_reports_real_catalogue_matches_beside_chance(kit, summary, tmp_path) -> None:
    """The injected clusters match the real catalogues by chance only; detections at real PSZ2 clusters all match."""
    if catalogue_dir() is None:
        pytest.skip("the real catalogues (/work/shared/data/clusters) are absent")
    truth = Table.read(kit / "truth" / "clusters.ecsv", format="ascii.ecsv")
    seen = truth[np.asarray(truth["inside"], bool)]
    scores = score_night(kit, _catalogue(tmp_path / "truth.fits", seen["glon"], seen["glat"]))
    expected = scores["real_catalogue_matches_expected_by_chance"]
    assert 0 < scores["real_catalogue_chance_rate"] < 0.5 and expected == pytest.approx(scores["real_catalogue_chance_rate"] * len(seen))
    assert scores["real_catalogue_matches"] <= expected + 4 * np.sqrt(expected) + 2
    psz2 = Table.read(kit / "reference" / "psz2.ecsv", format="ascii.ecsv")
    region = json.loads((kit / "truth" / "region.json").read_text())
    centre = hp.ang2vec(region["glon"], region["glat"], lonlat=True)
    in_disc = np.degrees(np.arccos(np.clip(hp.ang2vec(np.asarray(psz2["glon"], float), np.asarray(psz2["glat"], float),
                                                       lonlat=True) @ centre, -1, 1))) < region["radius_deg"]
    real = score_night(kit, _catalogue(tmp_path / "psz2.fits", psz2["glon"][in_disc], psz2["glat"][in_disc]))
    assert real["real_catalogue_matches"] == real["detections"] == int(in_disc.sum()) > 0


def test_score_night_command_prints_one_json_line(kit, summary, tmp_path, capsys) -> None:
    truth = Table.read(kit / "truth" / "clusters.ecsv", format="ascii.ecsv")
    path = _catalogue(tmp_path / "catalogue.fits", truth["glon"], truth["glat"])
    main(["score-night", "--kit", str(kit), "--catalogue", str(path)])
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"truth", "detections", "matched", "completeness", "purity"} <= set(scores)


def test_border_patches_get_no_probability_on_missing_pixels(kit, summary) -> None:
    """A patch across the disc's border: NaN filled before the network, probability 0 there, finite elsewhere."""
    from nightshift.clusters.infer import predict_probabilities
    from nightshift.clusters.model import load_model
    from nightshift.clusters.bundle import bundled_weights

    maps, _ = _observed_maps(kit, night_config(_SEED + 1).band_names)
    region = json.loads((kit / "truth" / "region.json").read_text())
    patches = sample_patches(maps, [region["glon"]] * 2, [region["glat"] + _RADIUS_DEG, region["glat"] - _RADIUS_DEG],
                             patch_px=64, pixel_arcmin=1.7)
    missing = ~np.isfinite(patches).all(axis=1)
    assert missing.any(axis=(1, 2)).all() and not missing.all(axis=(1, 2)).any()
    probability = predict_probabilities(load_model(str(bundled_weights())), patches)
    assert np.isfinite(probability).all() and (probability[missing] == 0).all()
    assert ((probability >= 0) & (probability <= 1)).all()


def test_a_night_on_a_training_sky_is_refused() -> None:
    with pytest.raises(ValueError, match="training skies"):
        night_config(999 + SKY_SEED_OFFSET)  # sky 1000: the shipped model's second training sky
    assert night_config(SKY_SEED_OFFSET).seed == 1
