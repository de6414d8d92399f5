"""The simulator: its images carry the truth its parameters say."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.inclination.baseline import moments_axis_ratio
from nightshift.inclination.simulate import (
    REJECT_REASONS, GalaxyParameters, Star, draw_parameters, hubble_axis_ratio, render_galaxy, replace, simulate_galaxies,
)


def pure_disk(inclination_deg: float, q0: float, *, scale_length_px: float = 4.0) -> GalaxyParameters:
    """A bare disk: no bulge, bar, arms, clumps, dust, PSF, stars or noise."""
    return GalaxyParameters(label="accept", reason="", inclination_deg=inclination_deg, q0=q0, scale_length_px=scale_length_px,
                            d25_arcsec=60.0, pixel_scale_arcsec=1.0, flux_r=100.0, snr=100.0, noise=False)


@pytest.mark.parametrize(("inclination", "q0"), [(50.0, 0.15), (70.0, 0.2), (85.0, 0.12), (90.0, 0.25)])
def test_disk_moments_follow_the_hubble_relation(inclination: float, q0: float) -> None:
    r_band = render_galaxy(pure_disk(inclination, q0), size=128)[1]
    measured = moments_axis_ratio(r_band, np.ones(r_band.shape, bool))
    assert measured == pytest.approx(float(hubble_axis_ratio(inclination, q0)), abs=0.01)


def test_flux_is_conserved_and_centred() -> None:
    image = render_galaxy(replace(pure_disk(60.0, 0.15), psf_fwhm_px=2.0, bulge_to_total=0.3), size=128)
    assert image[1].sum() == pytest.approx(100.0, rel=0.01)
    y, x = np.indices(image[1].shape)
    assert (image[1] * x).sum() / image[1].sum() == pytest.approx(63.5, abs=0.05)
    assert (image[1] * y).sum() / image[1].sum() == pytest.approx(63.5, abs=0.05)


def test_major_axis_is_horizontal() -> None:
    image = render_galaxy(pure_disk(75.0, 0.15), size=64)[1]
    assert image[31:33, :].sum() > 2 * image[:, 31:33].sum()  # more light along the middle row than the middle column


def test_dust_darkens_the_mid_plane_of_an_edge_on_disk() -> None:
    bare = replace(pure_disk(88.0, 0.15, scale_length_px=6.0), psf_fwhm_px=1.0)
    dusty = replace(bare, dust_tau_r=1.5)
    clear_image, dusty_image = render_galaxy(bare, size=64)[1], render_galaxy(dusty, size=64)[1]
    transmitted = dusty_image / np.maximum(clear_image, 1e-12)
    centre = 31.5
    mid_plane = transmitted[31:33, 24:40].mean()
    above = transmitted[int(centre + 4) : int(centre + 6), 24:40].mean()
    assert mid_plane < 0.7 * above
    # bluer light is absorbed more
    assert render_galaxy(dusty, size=64)[0].sum() / render_galaxy(bare, size=64)[0].sum() < dusty_image.sum() / clear_image.sum()


def test_a_star_is_where_its_parameters_put_it() -> None:
    galaxy = replace(pure_disk(60.0, 0.15), psf_fwhm_px=1.5, stars=(Star(x_px=20.0, y_px=-12.0, flux_ratio=2.0, colour_gr=0.5),))
    image = render_galaxy(galaxy, size=128)[1]
    row, col = np.unravel_index(np.argmax(image), image.shape)
    assert (col - 63.5, row - 63.5) == pytest.approx((20.0, -12.0), abs=0.6)


def test_noise_level_matches_the_snr() -> None:
    galaxy = replace(pure_disk(60.0, 0.15), noise=True, snr=50.0, sky_gradient=(0.0, 0.0), noise_seed=3)
    image = render_galaxy(galaxy, size=128)[1]
    area = np.pi * galaxy.r25_px**2 * float(hubble_axis_ratio(60.0, 0.15))
    expected_sigma = galaxy.flux_r / (50.0 * np.sqrt(area))
    assert image[:10, :10].std() == pytest.approx(expected_sigma, rel=0.15)


def test_sets_have_exact_label_fractions_and_are_reproducible() -> None:
    first = simulate_galaxies(20, size=32, seed=5, split="train", face_on_fraction=0.1, reject_fraction=0.2)
    again = simulate_galaxies(20, size=32, seed=5, split="train", face_on_fraction=0.1, reject_fraction=0.2)
    other_split = simulate_galaxies(20, size=32, seed=5, split="test", face_on_fraction=0.1, reject_fraction=0.2)
    assert first.images.shape == (20, 3, 32, 32) and first.images.dtype == np.float32
    assert sorted(first.labels.tolist()).count("face_on") == 2 and (first.labels == "reject").sum() == 4
    assert set(first.reasons[first.labels == "reject"]) == set(REJECT_REASONS)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(np.nan_to_num(first.images), np.nan_to_num(other_split.images))
    accepted = first.inclination_deg[first.accepted]
    assert ((accepted >= 45) & (accepted <= 90)).all()
    assert (first.inclination_deg[first.labels == "face_on"] < 45).all()
    assert len(simulate_galaxies(0, size=32, seed=1)) == 0


@pytest.mark.parametrize("reason", REJECT_REASONS)
def test_reject_reasons_leave_their_mark(reason: str) -> None:
    rng = np.random.default_rng(11)
    galaxy = draw_parameters(rng, size=64, label="reject", reason=reason)
    image = render_galaxy(galaxy, size=64)
    if reason == "disturbed":
        assert galaxy.companion is not None and galaxy.lopsidedness > 0
    elif reason == "bright_star":
        star = next(s for s in galaxy.stars if s.saturated)
        assert star.flux_ratio >= 0.3
        # the star's pixel lies on the saturated plateau, the brightest level of the tile
        assert image[1, int(round(31.5 + star.y_px)), int(round(31.5 + star.x_px))] > 0.9 * np.nanmax(image[1])
    elif reason == "faint":
        assert galaxy.snr <= 10
    else:
        off_centre = np.hypot(galaxy.center_x_px, galaxy.center_y_px) > 0.25 * 64
        assert off_centre or np.isnan(image).mean() > 0.1 or galaxy.d25_arcsec / galaxy.pixel_scale_arcsec > 0.8 * 64


def test_bad_labels_are_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="label 'spiral'"):
        draw_parameters(rng, size=64, label="spiral")
    with pytest.raises(ValueError, match="rejects need one of"):
        draw_parameters(rng, size=64, label="reject")
