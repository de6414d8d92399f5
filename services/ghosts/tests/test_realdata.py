"""VIA shapes to masks, and the real DES images with their annotations."""

import json
from pathlib import Path

import numpy as np
import pytest

from nightshift.ghosts.realdata import load_real_images, load_via, region_mask, split_real, via_regions

REAL_DIR = Path("/work/shared/data/ghosts")


def test_circle_and_rect() -> None:
    circle = region_mask({"name": "circle", "cx": 50, "cy": 40, "r": 10}, 100, 100)
    assert circle.sum() == pytest.approx(np.pi * 100, rel=0.03)
    assert circle[40, 60] and not circle[40, 61] and circle[30, 50]
    rect = region_mask({"name": "rect", "x": 2, "y": 3, "width": 4, "height": 2}, 10, 10)
    assert rect.sum() == 5 * 3 and rect[3, 2] and rect[5, 6] and not rect[6, 6]


def test_ellipse_rotation_follows_via() -> None:
    flat = region_mask({"name": "ellipse", "cx": 50, "cy": 50, "rx": 20, "ry": 5, "theta": 0.0}, 100, 100)
    assert flat[50, 70] and not flat[70, 50]
    turned = region_mask({"name": "ellipse", "cx": 50, "cy": 50, "rx": 20, "ry": 5, "theta": np.pi / 2}, 100, 100)
    assert turned[70, 50] and not turned[50, 70]
    assert np.mean(turned == flat.T) > 0.999  # equal up to rounding on the boundary
    # VIA rotates clockwise on the image (y down): +45 degrees puts the long axis from top-left to bottom-right
    diagonal = region_mask({"name": "ellipse", "cx": 50, "cy": 50, "rx": 20, "ry": 3, "theta": np.pi / 4}, 100, 100)
    assert diagonal[62, 62] and not diagonal[62, 38]


def test_polygon_and_polyline_are_filled_and_points_have_no_area() -> None:
    square = {"all_points_x": [10, 20, 20, 10], "all_points_y": [10, 10, 20, 20]}
    polygon = region_mask({"name": "polygon", **square}, 30, 30)
    assert polygon.sum() == 11 * 11 and polygon[15, 15]
    assert np.array_equal(region_mask({"name": "polyline", **square}, 30, 30), polygon)
    assert region_mask({"name": "point", "cx": 3, "cy": 3}, 30, 30) is None
    with pytest.raises(ValueError, match="VIA shape 'blob'"):
        region_mask({"name": "blob"}, 30, 30)


def test_regions_without_a_class_are_skipped(tmp_path: Path) -> None:
    record = {"filename": "a.jpg", "regions": [
        {"shape_attributes": {"name": "circle", "cx": 5, "cy": 5, "r": 3}, "region_attributes": {"Type": "Bright"}},
        {"shape_attributes": {"name": "circle", "cx": 5, "cy": 5, "r": 3}, "region_attributes": {}},
        {"shape_attributes": {"name": "point", "cx": 5, "cy": 5}, "region_attributes": {"Type": "Faint"}},
    ]}
    assert [a.label for a in via_regions(record, 20, 20)] == ["bright"]
    path = tmp_path / "via.json"
    path.write_text(json.dumps({"_via_img_metadata": {"a.jpg123": record}}))
    assert list(load_via(path)) == ["a.jpg"]


@pytest.mark.skipif(not (REAL_DIR / "images").is_dir(), reason="the real DES images (/work/shared/data/ghosts) are not on this machine")
def test_real_images_load_with_every_shape_as_a_mask() -> None:
    images = load_real_images(REAL_DIR)
    assert len(images) == 30
    records = load_via(REAL_DIR / "annotations" / "annotations_full.json")
    shapes = {r["shape_attributes"]["name"] for im in images for r in records[im.name]["regions"]}
    assert shapes == {"circle", "ellipse", "polygon", "polyline"}
    assert sum(len(r["regions"]) for r in (records[im.name] for im in images)) == sum(len(im.artefacts) for im in images)
    assert {a.label for im in images for a in im.artefacts} == {"bright", "faint", "rays"}
    train, held_out = split_real(images, 20)
    assert len(train) == 20 and len(held_out) == 10 and not {t.name for t in train} & {h.name for h in held_out}
    rects = [r for rec in load_via(REAL_DIR / "annotations" / "annotations_train.json").values()
             for r in rec["regions"] if r["shape_attributes"]["name"] == "rect"]
    assert rects and all(region_mask(r["shape_attributes"]).any() for r in rects)
