"""Sliding windows, resizing and the windows' WCS."""

import numpy as np
from astropy.wcs import WCS

from nightshift.bubbles.windows import Window, car_header, plan_windows, resize_crop, window_header


def test_plan_windows_skips_sizes_larger_than_the_field() -> None:
    windows = plan_windows((400, 800), (300, 600), 0.5)
    assert {w.size_px for w in windows} == {300}
    assert len(windows) == 2 * 5


def test_resize_crop_area_mean_and_identity() -> None:
    crop = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    assert np.allclose(resize_crop(crop, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    assert np.array_equal(resize_crop(crop, 4), crop)
    assert resize_crop(np.ones((2, 150, 150), np.float32), 300).shape == (2, 300, 300)


def test_window_header_maps_window_pixels_to_the_field_sky() -> None:
    header = car_header(30.0, -0.2, (768, 768), 1.2)
    field, window = WCS(header), Window(x0=150, y0=300, size_px=600)
    cut = WCS(window_header(header, window, 300))
    # window pixel (q) covers field position x0 + (q + 0.5) * f - 0.5 (0-based centres)
    for q in (0.0, 149.5, 299.0):
        expected = field.pixel_to_world_values(150 + (q + 0.5) * 2 - 0.5, 300 + (q + 0.5) * 2 - 0.5)
        assert np.allclose(cut.pixel_to_world_values(q, q), expected, atol=1e-9)
    assert np.isclose(field.pixel_to_world_values(383.5, 383.5)[1], -0.2)
