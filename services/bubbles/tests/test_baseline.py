"""The ring template-matching baseline."""

import numpy as np

from nightshift.bubbles.baseline import RingTemplateDetector, ring_template


def test_templates_are_zero_sum() -> None:
    for radius in (12, 40):
        assert abs(ring_template(radius).sum()) < 1e-12


def test_finds_an_injected_ring_at_its_position_and_radius() -> None:
    yy, xx = np.mgrid[:300, :300]
    distance = np.hypot(xx + 0.5 - 180, yy + 0.5 - 120)
    window = np.zeros((1, 2, 300, 300), np.float32)
    window[0, 0] = 0.2 + 0.8 * np.exp(-0.5 * ((distance - 40) / 4) ** 2)
    boxes, scores = RingTemplateDetector()(window)[0]
    best = boxes[np.argmax(scores)]
    assert np.allclose([(best[0] + best[2]) / 2, (best[1] + best[3]) / 2], [180, 120], atol=2)
    assert abs((best[2] - best[0]) / 2.6 - 40) <= 8
    empty_boxes, _ = RingTemplateDetector()(np.zeros((1, 2, 300, 300), np.float32))[0]
    assert len(empty_boxes) == 0


def test_a_filled_cavity_at_24um_raises_the_score() -> None:
    """A clear bubble (8 um ring, 24 um filling its cavity) outscores the same ring with an empty 24 um band."""
    yy, xx = np.mgrid[:300, :300]
    distance = np.hypot(xx + 0.5 - 150, yy + 0.5 - 150)
    window = np.zeros((2, 2, 300, 300), np.float32)
    window[:, 0] = 0.2 + 0.5 * np.exp(-0.5 * ((distance - 40) / 4) ** 2)
    window[0, 1] = np.exp(-0.5 * (distance / 18) ** 2)
    for weight, more in ((1.0, True), (0.0, False)):
        (_, clear), (_, empty) = RingTemplateDetector(fill_weight=weight)(window)
        assert bool(clear.max() > empty.max() + 0.05) == more
