"""The DECam layout: 62 CCDs, the CCD map and the affected-CCD rule, checked against the real images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nightshift.ghosts.focalplane import DEAD_CCD, GAP_LEVEL, affected_ccds, ccd_boxes, ccd_map

REAL_IMAGES = Path("/work/shared/data/ghosts/images")


def test_layout_has_62_ccds_of_the_measured_size() -> None:
    boxes = ccd_boxes()
    assert sorted(boxes) == list(range(1, 63))
    labels = ccd_map()
    assert labels.shape == (400, 400) and set(np.unique(labels)) == set(range(63))
    assert (labels == 28).sum() == 58 * 29  # a CCD in the middle of a row: 58 x 29 pixels
    assert labels[150, 150] != 0 and labels[0, 0] == 0


def test_affected_ccds() -> None:
    mask = np.zeros((400, 400), bool)
    assert affected_ccds(mask) == []
    x0, y0, x1, y1 = ccd_boxes()[28]
    mask[int(y0) + 5 : int(y0) + 10, int(x0) + 5 : int(x0) + 10] = True  # 25 pixels in CCD 28
    assert affected_ccds(mask) == [28]
    assert affected_ccds(mask, min_pixels=26) == []
    mask[:] = True
    assert DEAD_CCD not in affected_ccds(mask) and len(affected_ccds(mask)) == 61
    with pytest.raises(ValueError, match="expected a square"):
        affected_ccds(np.zeros((4, 5), bool))


@pytest.mark.skipif(not REAL_IMAGES.is_dir(), reason="the real DES images (/work/shared/data/ghosts) are not on this machine")
def test_layout_matches_the_real_images() -> None:
    stack = np.stack([np.asarray(Image.open(p))[..., 0] for p in sorted(REAL_IMAGES.glob("*.jpg"))[:10]]).astype(float)
    median = np.median(stack, axis=0)
    labels = ccd_map()
    live = (labels > 0) & (labels != DEAD_CCD) & (labels != 2)
    assert np.median(median[labels == 0]) == pytest.approx(GAP_LEVEL, abs=1)
    assert np.mean(median[live] > GAP_LEVEL + 5) > 0.97  # CCD pixels are above the gap level


@pytest.mark.skipif(not REAL_IMAGES.is_dir(), reason="the real DES images (/work/shared/data/ghosts) are not on this machine")
def test_each_folds_training_images_alone_give_the_simulated_layout() -> None:
    """The focal plane was measured on all 30 real images, the cross-validation's scored ones included: measured on a
    fold's 24 training images alone, the live pixels and CCD 2's off rate are what the simulator uses anyway."""
    from nightshift.ghosts.crossval import real_folds
    from nightshift.ghosts.focalplane import INTERMITTENT_CCD

    images = {p.name: np.asarray(Image.open(p))[..., 0].astype(float) for p in sorted(REAL_IMAGES.glob("*.jpg"))}
    labels = ccd_map()
    judged = labels != INTERMITTENT_CCD  # on in some exposures, off in others
    simulated_live = (labels > 0) & (labels != DEAD_CCD)
    for scored in real_folds(sorted(images), 5):
        training = [image for name, image in images.items() if name not in scored]
        live = np.median(training, axis=0) > GAP_LEVEL + 5
        assert np.mean(live[judged] == simulated_live[judged]) > 0.98
        ccd2_off = np.mean([np.median(image[labels == INTERMITTENT_CCD]) < GAP_LEVEL + 5 for image in training])
        assert 0.35 < ccd2_off < 0.7  # the simulator switches it off in half the exposures
