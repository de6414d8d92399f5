"""Real-image augmentation (issue 18): copy-paste puts a donor's pixels exactly where the pasted mask says, flips and
rotations move masks and boxes with the image, and a cross-validation fold never draws on its scored images."""

from pathlib import Path

import numpy as np
import pytest

from nightshift.ghosts.artefacts import Artefact, mask_box
from nightshift.ghosts.focalplane import GAP_LEVEL, INTERMITTENT_CCD, ccd_map
from nightshift.ghosts.realaug import RealAugmentation, _paste, augment_real, live_pixels
from nightshift.ghosts.realdata import RealImage

REAL_DIR = Path("/work/shared/data/ghosts")
NEEDS_REAL = pytest.mark.skipif(not (REAL_DIR / "images").is_dir(),
                                reason="the real DES images (/work/shared/data/ghosts) are not on this machine")


def _plane(sky: int, *, off: tuple[int, ...] = ()) -> np.ndarray:
    """A 400 x 400 focal plane: ``sky`` on the CCDs, the gap level between them and on the CCDs in ``off``."""
    labels = ccd_map(400)
    grey = np.where((labels > 0) & ~np.isin(labels, off), sky, int(GAP_LEVEL)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _disk(cy: int, cx: int, r: int) -> np.ndarray:
    y, x = np.mgrid[:400, :400]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _donor(sky: int = 60, level: int = 200, **kwargs) -> tuple[RealImage, np.ndarray]:
    image = _plane(sky, **kwargs)
    mask = _disk(120, 150, 30)
    image[mask & (ccd_map(400) > 0)] = level
    if kwargs.get("off"):
        image[mask & np.isin(ccd_map(400), kwargs["off"])] = int(GAP_LEVEL)
    return RealImage("donor.jpg", image, [Artefact("faint", mask)]), mask


def test_live_pixels_follow_the_ccds_that_are_on() -> None:
    labels = ccd_map(400)
    assert np.array_equal(live_pixels(_plane(50)), labels > 0)
    off = live_pixels(_plane(50, off=(INTERMITTENT_CCD,)))
    assert not off[labels == INTERMITTENT_CCD].any() and off[labels == 1].all()


def test_pasted_instance_mask_and_box_are_where_its_pixels_went() -> None:
    """Sky-matched paste: the changed pixels are the mask's live ones, at the donor's level minus the sky difference."""
    donor, mask = _donor(sky=60, level=200)
    target = _plane(50)
    covered = _disk(150, 150, 20)  # a target annotation half under the pasted disk
    keeps = Artefact("bright", covered | _disk(150, 185, 12))
    settings = RealAugmentation(paste_sky=True, paste_max=1)
    out, artefacts = _paste(target, [keeps], donor, np.random.default_rng(0), settings)
    live = ccd_map(400) > 0
    changed = np.any(out != target, axis=2)
    assert np.array_equal(changed, mask & live)  # every changed pixel is the mask's, every live mask pixel changed
    assert np.all(out[mask & live] == 190)  # 200 - (60 - 50): the donor's light on the target's sky
    assert np.all(out[mask & ~live] == int(GAP_LEVEL))  # gaps stay gaps
    pasted = artefacts[-1]
    assert pasted.label == "faint" and np.array_equal(pasted.mask, mask) and pasted.box == mask_box(mask)
    assert pasted.box == (120.0, 90.0, 181.0, 151.0)
    kept = artefacts[0]
    assert kept.label == "bright" and not (kept.mask & mask).any()  # the occluded part is removed
    assert np.array_equal(kept.mask, keeps.mask & ~mask)


def test_hard_paste_copies_the_donor_pixels_under_the_mask() -> None:
    donor, mask = _donor(sky=60, level=200)
    target = _plane(50)
    out, artefacts = _paste(target, [], donor, np.random.default_rng(0), RealAugmentation())
    assert np.array_equal(out[mask], donor.image[mask]) and np.array_equal(out[~mask], target[~mask])
    assert [a.label for a in artefacts] == ["faint"]


def test_a_donor_ccd_that_is_off_is_not_pasted_over_a_live_target_ccd() -> None:
    labels = ccd_map(400)
    off = int(labels[120, 150])  # the CCD under the disk's centre
    donor, mask = _donor(sky=60, level=200, off=(off,))
    target = _plane(50)
    out, artefacts = _paste(target, [], donor, np.random.default_rng(0), RealAugmentation(paste_sky=True))
    assert np.all(out[labels == off] == 50)  # the target's CCD keeps its own pixels
    assert np.all(out[mask & (labels > 0) & (labels != off)] == 190)
    assert np.array_equal(artefacts[0].mask, mask)  # the annotation is the whole footprint, as drawn


def test_feathered_paste_changes_only_mask_pixels_and_rises_to_the_donor_inside() -> None:
    donor, mask = _donor(sky=50, level=200)
    target = _plane(50)
    out, _ = _paste(target, [], donor, np.random.default_rng(0), RealAugmentation(paste_sky=True, paste_feather=4.0))
    changed = np.any(out != target, axis=2)
    assert not (changed & ~mask).any()
    grey = out[..., 0].astype(int)
    assert grey[120, 150] == 200  # the centre (on a CCD) is the donor's
    edge = mask & ~np.roll(mask, 1, axis=1) & (ccd_map(400) > 0)  # the mask's left edge on live pixels
    assert (grey[edge] < 200).all() and (grey[edge] > 50).all()  # blended at the edge


def test_flipped_paste_moves_mask_and_pixels_together() -> None:
    donor, mask = _donor(sky=50, level=200)
    target = _plane(50)
    seen = set()
    for seed in range(12):
        out, artefacts = _paste(target, [], donor, np.random.default_rng(seed), RealAugmentation(paste_sky=True, paste_flip=1.0))
        pasted = artefacts[-1].mask
        assert not np.array_equal(pasted, mask)  # always mirrored at paste_flip 1
        seen.add(mask_box(pasted))
        live = live_pixels(target.copy())
        under = out[..., 0][pasted & live]
        # the donor's light where the mirrored donor is live too (its CCD rows sit 2 px off when mirrored up-down)
        assert set(np.unique(under)) <= {50, 200} and (under == 200).mean() > 0.85
        assert (out[..., 0][~pasted & live] == 50).all()
    assert len(seen) == 3  # left-right, up-down and both


def test_flips_rotations_and_copy_paste_move_boxes_with_the_image() -> None:
    image = np.full((64, 64, 3), 10, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[5:12, 30:50] = True  # an asymmetric bar: every flip and turn moves its box
    image[mask] = 250
    item = RealImage("a.jpg", image, [Artefact("rays", mask)])
    donor_mask = np.zeros((64, 64), bool)
    donor_mask[40:60, 3:9] = True
    donor_image = np.full((64, 64, 3), 10, np.uint8)
    donor_image[donor_mask] = 250
    donor = RealImage("b.jpg", donor_image, [Artefact("faint", donor_mask)])
    settings = RealAugmentation(copy_paste=0.5, brightness=0.0, contrast=(1.0, 1.0), colour=0.0, jpeg=0.0, scale=(1.0, 1.0))
    rng = np.random.default_rng(5)
    boxes = set()
    for _ in range(40):
        out, artefacts = augment_real(item, rng, donors=[item, donor], settings=settings)
        bright = out[..., 0] > 128
        assert np.array_equal(np.logical_or.reduce([a.mask for a in artefacts]), bright)
        for artefact in artefacts:
            assert (out[..., 0][artefact.mask] > 128).all()
            ys, xs = np.nonzero(artefact.mask)
            assert artefact.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            if artefact.label == "rays":
                boxes.add(artefact.box)
    assert len(boxes) == 8  # all eight orientations of the bar were drawn


def test_copy_paste_never_draws_on_an_image_outside_the_donors() -> None:
    target = RealImage("a.jpg", _plane(50), [Artefact("bright", _disk(300, 300, 15))])
    donor, _ = _donor()
    outsider = RealImage("scored.jpg", _plane(50), [Artefact("rays", _disk(60, 200, 25))])
    settings = RealAugmentation(copy_paste=1.0, paste_max=3, paste_sky=True, paste_flip=0.5, scale=(1.0, 1.0))
    rng = np.random.default_rng(1)
    for _ in range(10):
        _, artefacts = augment_real(target, rng, donors=[target, donor], settings=settings)
        assert "rays" not in {a.label for a in artefacts}  # only the outsider has rays
        assert "faint" in {a.label for a in artefacts}
    _, artefacts = augment_real(target, rng, donors=[target], settings=settings)  # itself only: nothing to paste
    assert [a.label for a in artefacts] == ["bright"]


@NEEDS_REAL
def test_sky_matched_paste_on_real_images_keeps_the_target_sky() -> None:
    from nightshift.ghosts.realdata import load_real_images

    images = load_real_images(REAL_DIR)[:2]
    target, donor = images
    out, artefacts = _paste(target.image, list(target.artefacts), donor, np.random.default_rng(0),
                            RealAugmentation(paste_sky=True, paste_feather=3.0, paste_max=1))
    pasted = artefacts[-1].mask
    changed = np.any(out != target.image, axis=2)
    assert not (changed & ~pasted).any()
    ring = np.zeros_like(pasted)
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(pasted, iterations=6) & ~pasted & live_pixels(target.image)
    inner = pasted & ~binary_dilation(~pasted, iterations=6) & live_pixels(target.image) & live_pixels(donor.image)
    if ring.sum() > 50 and inner.sum() > 50:
        # the paste's edge: just inside vs just outside differ by the artefact's light, not by a sky step of the donor
        step = np.median(out[..., 0][binary_dilation(~pasted, iterations=3) & pasted & live_pixels(out)].astype(float))
        assert abs(step - np.median(out[..., 0][ring].astype(float))) < 25
