"""The simulator: its images carry the truth its parameters say."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.inclination.baseline import moments_axis_ratio
from nightshift.inclination.simulate import (
    REJECT_REASONS, GalaxyParameters, SimulationOverrides, Star, draw_parameters, hubble_axis_ratio, render_galaxy, replace,
    simulate_galaxies,
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


def _moment_width(image: np.ndarray) -> float:
    """RMS radius of an image about its centroid, less the pixel's own (1/12 per axis)."""
    y, x = np.indices(image.shape, dtype=np.float64)
    weight = image / image.sum()
    xc, yc = (weight * x).sum(), (weight * y).sum()
    return float(np.sqrt((weight * ((x - xc) ** 2 + (y - yc) ** 2)).sum() - 2 / 12))


def test_default_overrides_reproduce_the_default_simulation_bit_for_bit() -> None:
    plain = simulate_galaxies(12, size=32, seed=7, split="test")
    explicit = simulate_galaxies(12, size=32, seed=7, split="test", overrides=SimulationOverrides(psf_scale=1.0, sky_noise_scale=1.0))
    assert plain.parameters == explicit.parameters
    assert plain.images.tobytes() == explicit.images.tobytes()  # NaN-safe exact comparison


def test_a_1_5x_psf_adds_1_5x_the_width_to_a_compact_galaxy() -> None:
    """Convolution adds second moments, so the PSF's share of the width is sqrt(w^2 - w_unconvolved^2)."""
    compact = replace(pure_disk(60.0, 0.15, scale_length_px=0.5), psf_fwhm_px=2.5)
    wider = SimulationOverrides(psf_scale=1.5).apply(compact)
    assert wider.psf_fwhm_px == pytest.approx(3.75) and replace(wider, psf_fwhm_px=compact.psf_fwhm_px) == compact
    unconvolved, *widths = (_moment_width(render_galaxy(p, size=64)[1].astype(np.float64))
                            for p in (replace(compact, psf_fwhm_px=0.0), compact, wider))
    psf_share = [np.sqrt(w**2 - unconvolved**2) for w in widths]
    assert psf_share[1] / psf_share[0] == pytest.approx(1.5, rel=0.02)


def test_overrides_change_only_their_condition_in_a_simulated_set() -> None:
    base = simulate_galaxies(10, size=48, seed=3, split="test")
    blurred = simulate_galaxies(10, size=48, seed=3, split="test", overrides=SimulationOverrides(psf_scale=1.5))
    noisier = simulate_galaxies(10, size=48, seed=3, split="test", overrides=SimulationOverrides(sky_noise_scale=1.5))
    for p, b, n in zip(base.parameters, blurred.parameters, noisier.parameters):
        assert b == replace(p, psf_fwhm_px=1.5 * p.psf_fwhm_px) and n == replace(p, snr=p.snr / 1.5)
    # the galaxy's light spreads: its r-band second moment grows (noise-free renderings of the same galaxies)
    accepted = [k for k, p in enumerate(base.parameters) if p.label == "accept" and not p.missing]
    for k in accepted:
        clean = [render_galaxy(replace(s.parameters[k], noise=False, stars=()), size=48)[1].astype(np.float64) for s in (base, blurred)]
        assert _moment_width(clean[1]) > _moment_width(clean[0])
    # the sky noise in the outer frame (same noise draws) is 1.5 times as large
    frame = np.ones((48, 48), bool)
    frame[6:-6, 6:-6] = False
    for k in accepted:
        clean = render_galaxy(replace(base.parameters[k], noise=False), size=48)[1]
        ratio = np.std((noisier.images[k, 1] - clean)[frame]) / np.std((base.images[k, 1] - clean)[frame])
        assert ratio == pytest.approx(1.5, rel=0.02)


def test_overrides_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SimulationOverrides(psf_scale=0.0)
