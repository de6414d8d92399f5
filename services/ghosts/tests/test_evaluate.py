"""The seed's metrics on hand-made cases with known answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.evaluate import (_coco, _match_records, annotator_agreement, ap_intervals, ccd_scores, coco_scores, headline,
                                       image_confusion, pooled_ap, score_all)
from nightshift.ghosts.focalplane import ccd_boxes


def disk(cx: float, cy: float, r: float, size: int = 400) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def test_perfect_and_useless_predictions() -> None:
    truth = [[Artefact("bright", disk(100, 100, 20)), Artefact("faint", disk(250, 250, 60))]]
    perfect = [[Artefact(a.label, a.mask, 0.9) for a in truth[0]]]
    scores = coco_scores(truth, perfect)
    assert scores["ap50"] == pytest.approx(1.0) and scores["ap"] == pytest.approx(1.0)
    assert scores["ap50_bright"] == pytest.approx(1.0) and np.isnan(scores["ap50_rays"])
    elsewhere = [[Artefact("bright", disk(300, 60, 20), 0.9)]]
    assert coco_scores(truth, elsewhere)["ap50"] == 0.0
    assert coco_scores(truth, [[]])["ap50"] == 0.0


def test_ap_of_a_false_positive_ranked_first() -> None:
    """Two truths; a false positive (0.9) then one hit (0.8): precision 1/2 up to recall 1/2, so AP = 0.5 x 51/101."""
    truth = [[Artefact("bright", disk(100, 100, 20)), Artefact("bright", disk(300, 300, 20))]]
    predicted = [[Artefact("bright", disk(200, 60, 20), 0.9), Artefact("bright", disk(100, 100, 20), 0.8)]]
    assert coco_scores(truth, predicted)["ap50"] == pytest.approx(0.5 * 51 / 101)


def test_all_types_merge_classes_but_per_class_does_not() -> None:
    truth = [[Artefact("bright", disk(100, 100, 20))]]
    wrong_class = [[Artefact("faint", disk(100, 100, 20), 0.9)]]
    scores = coco_scores(truth, wrong_class)
    assert scores["ap50"] == pytest.approx(1.0) and scores["ap50_bright"] == 0.0


def test_iou_threshold_half() -> None:
    truth = [[Artefact("rays", disk(200, 200, 40))]]
    shifted = [[Artefact("rays", disk(230, 200, 40), 0.9)]]  # IoU about 0.39
    scores = coco_scores(truth, shifted)
    assert scores["ap50"] == 0.0


def test_confusion_and_ccd_scores() -> None:
    x0, y0, x1, y1 = ccd_boxes()[28]
    on_28 = np.zeros((400, 400), bool)
    on_28[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2] = True
    x0, y0, x1, y1 = ccd_boxes()[10]
    on_10 = np.zeros((400, 400), bool)
    on_10[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2] = True
    truths = [[Artefact("bright", on_28)], [], [Artefact("faint", on_10)]]
    predictions = [[Artefact("bright", on_28 | on_10, 0.95)], [Artefact("rays", on_28, 0.5)], []]
    confusion = image_confusion(truths, predictions, score_threshold=0.8)
    assert confusion == {"clean_as_clean": 1, "clean_as_artefact": 0, "artefact_as_clean": 1, "artefact_as_artefact": 1}
    ccd = ccd_scores(truths, predictions, score_threshold=0.8)
    assert ccd["ccd_precision"] == pytest.approx(0.5) and ccd["ccd_recall"] == pytest.approx(0.5)
    scores = score_all(truths, predictions, score_threshold=0.8)
    assert scores["image_recall"] == 0.5 and scores["image_precision"] == 1.0
    assert headline(scores)["confusion_artefact_as_clean"] == 1.0 and "pr_curve" not in headline(scores)


def test_empty_input_and_length_mismatch() -> None:
    scores = coco_scores([], [])
    assert np.isnan(scores["ap50"])
    with pytest.raises(ValueError, match="1 truth images and 0 prediction images"):
        coco_scores([[]], [])


def _via(path: Path, regions: list[dict]) -> Path:
    path.write_text(json.dumps({"_via_img_metadata": {"x": {"filename": "a.jpg", "regions": regions}}}))
    return path


def test_annotator_agreement(tmp_path: Path) -> None:
    circle = {"shape_attributes": {"name": "circle", "cx": 100, "cy": 100, "r": 30}, "region_attributes": {"Type": "Bright"}}
    moved = {"shape_attributes": {"name": "circle", "cx": 300, "cy": 300, "r": 30}, "region_attributes": {"Type": "Bright"}}
    same = annotator_agreement([_via(tmp_path / "a.json", [circle]), _via(tmp_path / "b.json", [circle])], ["a.jpg"])
    assert same["ap50"] == pytest.approx(1.0) and same["mask_iou"] == pytest.approx(1.0) and same["pairs"] == 2
    differ = annotator_agreement([_via(tmp_path / "a.json", [circle]), _via(tmp_path / "c.json", [moved])], ["a.jpg"])
    assert differ["ap50"] == 0.0 and differ["mask_iou"] == 0.0


def _mixed_images() -> tuple[list[list[Artefact]], list[list[Artefact]]]:
    """Three images: a hit, a false positive ranked above a hit, a miss and a partial overlap."""
    truths = [[Artefact("bright", disk(100, 100, 20)), Artefact("faint", disk(250, 250, 60))],
              [Artefact("bright", disk(100, 100, 20)), Artefact("rays", disk(300, 300, 30))],
              [Artefact("rays", disk(200, 200, 40))]]
    predicted = [[Artefact("bright", disk(100, 100, 20), 0.9), Artefact("faint", disk(260, 250, 60), 0.4)],
                 [Artefact("bright", disk(200, 60, 20), 0.95), Artefact("rays", disk(300, 300, 30), 0.6)],
                 [Artefact("rays", disk(215, 200, 40), 0.7), Artefact("bright", disk(50, 350, 10), 0.3)]]
    return truths, predicted


def test_pooled_match_records_give_pycocotools_aps() -> None:
    truths, predicted = _mixed_images()
    scores = coco_scores(truths, predicted)
    ground, detected = _coco(truths, predicted, merge_classes=True)
    ap50, ap = pooled_ap(_match_records(ground, detected, 1))
    assert ap50 == pytest.approx(scores["ap50"]) and ap == pytest.approx(scores["ap"])
    assert 0.0 < scores["ap"] < scores["ap50"] < 1.0
    ground, detected = _coco(truths, predicted, merge_classes=False)
    for index, name in enumerate(("bright", "faint", "rays"), start=1):
        assert pooled_ap(_match_records(ground, detected, index))[0] == pytest.approx(scores[f"ap50_{name}"])
    records = _match_records(ground, detected, 1)
    assert pooled_ap(records[:1] * 2)[0] == pytest.approx(1.0)  # image 1 twice: its one bright ghost found first both times


def test_intervals_over_images_bracket_the_figure_and_pair_model_and_baseline() -> None:
    truths, predicted = _mixed_images()
    truths, predicted = truths * 4, predicted * 4
    perfect = [[Artefact(a.label, a.mask, 0.9) for a in truth] for truth in truths]
    model, baseline = ap_intervals(truths, perfect, predicted)
    assert model["ap50_ci95_low"] == model["ap50_ci95_high"] == pytest.approx(1.0)
    ap50 = coco_scores(truths, predicted)["ap50"]
    assert baseline["ap50_ci95_low"] < ap50 < baseline["ap50_ci95_high"]
    assert model["ap50_over_baseline_ci95_low"] > 0.0  # the same images resampled for both: a gap without overlap
