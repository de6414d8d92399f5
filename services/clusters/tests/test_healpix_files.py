"""Six per-band Planck-layout FITS maps: written by the simulator, read back, checked, and inferred on end to end."""

from __future__ import annotations

import json

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from nightshift.clusters.cli import main
from nightshift.clusters.config import HFI_BANDS, get_config
from nightshift.clusters.healpix_files import read_band_files, unit_scale, write_planck_maps
from nightshift.clusters.infer import infer_healpix_file
from nightshift.clusters.simulate import simulate_sky
from nightshift.core.errors import InvalidInput


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """Six nside-16 band maps (RING, random) and their Planck-layout files."""
    maps = np.random.default_rng(3).normal(size=(6, hp.nside2npix(16))).astype(np.float32)
    return maps, write_planck_maps(maps, HFI_BANDS, tmp_path_factory.mktemp("small"))


def _edit(path, target, **cards):
    """A copy of a band file at ``target`` with header cards changed (None: removed)."""
    with fits.open(path) as hdus:
        for key, value in cards.items():
            if value is None:
                del hdus[1].header[key]
            else:
                hdus[1].header[key] = value
        hdus.writeto(target)
    return target


def test_files_have_the_planck_layout_and_read_back_exactly(small_files) -> None:
    maps, paths = small_files
    assert [p.name for p in paths] == [f"HFI_SkyMap_{f}_16_SIM_full.fits" for f in (100, 143, 217, 353, 545, 857)]
    header = fits.getheader(paths[4], 1)
    assert (header["TTYPE1"], header["TUNIT1"], header["PIXTYPE"], header["ORDERING"], header["NSIDE"], header["COORDSYS"],
            header["FREQ"], header["EXTNAME"]) == ("I_STOKES", "MJy/sr", "HEALPIX", "NESTED", 16, "GALACTIC", "545", "FREQ-MAP")
    # healpy reads the layout too (its intensity column, reordered to RING)
    np.testing.assert_array_equal(hp.read_map(paths[0], field=0, dtype=np.float32), maps[0])
    read, nested = read_band_files(paths, HFI_BANDS)
    assert nested and read.dtype == np.float32
    np.testing.assert_array_equal(hp.reorder(read, n2r=True), maps)


def test_upgrade_repeats_each_pixel_and_units_convert_by_powers_of_ten(small_files, tmp_path) -> None:
    maps, paths = small_files
    upgraded = write_planck_maps(maps[:1], HFI_BANDS[:1], tmp_path, nside=64, nest=False)[0]
    values = hp.read_map(upgraded, field=0, dtype=np.float32)
    np.testing.assert_array_equal(values, hp.ud_grade(maps[0], 64))
    np.testing.assert_allclose(hp.ud_grade(values, 16), maps[0], rtol=1e-6)
    micro = tmp_path / "HFI_SkyMap_100_uK.fits"
    with fits.open(paths[0]) as hdus:
        hdus[1].data["I_STOKES"] *= 1e6
        hdus[1].columns["I_STOKES"].unit = "uK_CMB"  # the table's columns, not its header, decide what is written
        hdus.writeto(micro)
    read, _ = read_band_files([micro, *paths[1:]], HFI_BANDS)
    np.testing.assert_allclose(hp.reorder(read[0], n2r=True), maps[0], rtol=1e-6, atol=1e-12)
    assert unit_scale("mK_CMB", HFI_BANDS[0]) == 1e-3 and unit_scale("Jy/sr", HFI_BANDS[5]) == pytest.approx(1e-6)
    assert unit_scale("MK_CMB", HFI_BANDS[0]) is None and unit_scale("K_RJ", HFI_BANDS[0]) is None


def test_each_bad_file_is_refused_naming_what_was_expected(small_files, tmp_path) -> None:
    maps, paths = small_files
    (tmp_path / "notes.fits").write_text("not FITS")
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image_100.fits")
    coarse = write_planck_maps(hp.ud_grade(maps[:1], 8), HFI_BANDS[:1], tmp_path / "coarse")[0]
    ring = write_planck_maps(maps[1:2], HFI_BANDS[1:2], tmp_path / "ring", nest=False)[0]
    unseen = write_planck_maps(np.full((1, maps.shape[1]), hp.UNSEEN, np.float32), HFI_BANDS[2:3], tmp_path / "unseen")[0]
    cases = {
        "five files": (paths[:5], "5 map files, expected one per band"),
        "order": ([paths[1], paths[0], *paths[2:]], "the 143 GHz map given as band 1, which is 100 GHz: give the files in "
                                                    "the model's band order 100, 143, 217, 353, 545, 857 GHz"),
        "not fits": ([tmp_path / "notes.fits", *paths[1:]], "not a FITS file"),
        "image": ([tmp_path / "image_100.fits", *paths[1:]], "no BINTABLE extension"),
        "pixtype": ([_edit(paths[0], tmp_path / "p.fits", PIXTYPE="CAR"), *paths[1:]], "PIXTYPE 'CAR', expected 'HEALPIX'"),
        "nside": ([coarse, *paths[1:]], "NSIDE differs between the files: HFI_SkyMap_100_8_SIM_full.fits 8"),
        "ordering": ([paths[0], ring, *paths[2:]], "ORDERING differs between the files"),
        "ordering card": ([_edit(paths[0], tmp_path / "o.fits", ORDERING="ZIGZAG"), *paths[1:]], "ORDERING 'ZIGZAG'"),
        "frame": ([_edit(paths[0], tmp_path / "e.fits", COORDSYS="ECLIPTIC"), *paths[1:]], "COORDSYS 'ECLIPTIC', expected Galactic"),
        "no frame": ([_edit(paths[0], tmp_path / "n.fits", COORDSYS=None), *paths[1:]], "COORDSYS None"),
        "rj unit": ([_edit(paths[0], tmp_path / "rj.fits", TUNIT1="K_RJ"), *paths[1:]], "unit 'K_RJ' of the 100 GHz map, expected K_CMB"),
        "kcmb at 545": ([*paths[:4], _edit(paths[4], tmp_path / "k545.fits", TUNIT1="K_CMB"), paths[5]],
                        "unit 'K_CMB' of the 545 GHz map, expected MJy/sr"),
        "no unit": ([_edit(paths[0], tmp_path / "u.fits", TUNIT1=None), *paths[1:]], "column I_STOKES has no unit (TUNIT): expected K_CMB"),
        "no band": ([_edit(paths[0], tmp_path / "map_a.fits", FREQ=None), *paths[1:]], "cannot tell its band"),
        "unseen": ([*paths[:2], unseen, *paths[3:]], "no finite pixel"),
    }
    for name, (files, message) in cases.items():
        with pytest.raises(InvalidInput) as error:
            read_band_files(files, HFI_BANDS)
        assert message in str(error.value), (name, str(error.value))
    # without FREQ the band frequency in the name decides (Planck's names carry it)
    read, _ = read_band_files([_edit(paths[0], tmp_path / "planck_100_16.fits", FREQ=None), *paths[1:]], HFI_BANDS)
    assert np.isfinite(read).all()


def test_six_planck_files_give_the_catalogue_of_the_multi_column_file(tmp_path, capsys) -> None:
    """A simulated sky as six NESTED per-band files and as one RING multi-column file: the same detections (cell 7).

    nside 512: at the tiny preset's 256 (13.7' pixels) the shipped model, trained at 1024, detects nothing.
    """
    sky = simulate_sky(get_config("tiny", overrides={"nside": "512"}), None)
    single = tmp_path / "sky_maps.fits"
    hp.write_map(str(single), list(sky.maps), coord="G", column_units=[b.unit for b in HFI_BANDS], dtype=np.float32)
    paths = write_planck_maps(sky.maps, HFI_BANDS, tmp_path / "planck")
    del sky
    one = infer_healpix_file(single, weights=None, cells=[7], output=tmp_path / "one")
    assert main(["infer", *map(str, paths), "--cells", "7", "--output", str(tmp_path / "six")]) == 0
    six = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (one["input"], six["input"], six["nested"], six["nside"]) == ("one multi-column file", "one file per band", True, 512)
    assert one["detections"] > 0 and six["detections"] == one["detections"] and six["peak_rss_mb"] > 0
    a, b = Table.read(tmp_path / "one" / "clusters.ecsv"), Table.read(tmp_path / "six" / "clusters.ecsv")
    for column in ("name", "glon", "glat", "score", "n_pixels", "radius_arcsec"):
        assert list(a[column]) == list(b[column]), column
    # a wrong file through the CLI: exit 2, one line naming the file
    assert main(["infer", *map(str, paths[:5]), str(single), "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nightshift-clusters: error: {single}: ") and err.count("\n") == 1


def test_synth_writes_six_planck_files_at_the_asked_nside(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_CLUSTERS_CATALOGUES", str(tmp_path / "none"))  # no PSZ2 analogues: seconds, not 20 s
    base = ["synth", "--preset", "tiny", "--set", "nside=64", "--set", "random_clusters=20", "--set", "train_patches=8",
            "--set", "validation_patches=4", "--planck-files"]
    assert main([*base, "--map-nside", "100", "--output", str(tmp_path / "bad")]) == 2
    assert "--map-nside 100: expected a power of 2" in capsys.readouterr().err
    main([*base, "--map-nside", "128", "--output", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p.rsplit("/", 1)[-1] for p in summary["maps"]] == [f"HFI_SkyMap_{f}_128_SIM_full.fits" for f in (100, 143, 217, 353, 545, 857)]
    assert not (tmp_path / "sky_maps.fits").exists()
    maps, nested = read_band_files(summary["maps"], HFI_BANDS)
    assert nested and maps.shape == (6, hp.nside2npix(128)) and np.isfinite(maps).all()
