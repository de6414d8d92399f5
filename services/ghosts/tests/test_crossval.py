"""Real-image cross-validation: folds, leakage, thresholds, augmentation, resumption and the evaluate JSON."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.cli import main
from nightshift.ghosts.crossval import (
    THRESHOLD_GRID, ccd_counts, choose_threshold, decode_predictions, encode_predictions, fold_figures, real_folds,
    real_headline, summarise,
)
from nightshift.ghosts.realaug import RealAugmentation, augment_real
from nightshift.ghosts.realdata import RealImage

REAL_DIR = Path("/work/shared/data/ghosts")
NEEDS_REAL = pytest.mark.skipif(not (REAL_DIR / "images").is_dir(),
                                reason="the real DES images (/work/shared/data/ghosts) are not on this machine")
PACKAGE = Path(__file__).parents[1] / "src" / "nightshift" / "ghosts"


def test_folds_are_disjoint_cover_every_image_and_are_stable() -> None:
    names = [f"Ghost_img_D{i:08d}.jpg" for i in range(30)]
    folds = real_folds(names, 5)
    assert [len(f) for f in folds] == [6] * 5
    assert sorted(n for f in folds for n in f) == sorted(names)
    assert all(not set(a) & set(b) for i, a in enumerate(folds) for b in folds[i + 1:])
    assert real_folds(list(reversed(names)), 5) == folds  # independent of the input order
    assert [len(f) for f in real_folds(names[:7], 3)] == [3, 2, 2]
    with pytest.raises(ValueError):
        real_folds(names, 31)
    with pytest.raises(ValueError):
        real_folds(names[:3] + names[:1], 2)


def _square(y: int, x: int, size: int = 20, shape: int = 64) -> np.ndarray:
    mask = np.zeros((shape, shape), bool)
    mask[y:y + size, x:x + size] = True
    return mask


def test_augmented_masks_stay_on_their_pixels() -> None:
    """Flips, rotations, zoom and copy-paste move image and masks together."""
    image = np.zeros((64, 64, 3), np.uint8)
    mask = _square(5, 30)
    image[mask] = 250
    donor_image = np.zeros((64, 64, 3), np.uint8)
    donor_mask = _square(40, 4, 16)
    donor_image[donor_mask] = 250
    item = RealImage("a.jpg", image, [Artefact("bright", mask)])
    donor = RealImage("b.jpg", donor_image, [Artefact("faint", donor_mask)])
    settings = RealAugmentation(copy_paste=1.0, brightness=0.0, contrast=(1.0, 1.0), colour=0.0, jpeg=0.0, scale=(0.8, 1.2))
    rng = np.random.default_rng(3)
    seen_labels = set()
    for _ in range(20):
        out, artefacts = augment_real(item, rng, donors=[item, donor], settings=settings)
        assert out.shape == image.shape and out.dtype == np.uint8
        for artefact in artefacts:
            seen_labels.add(artefact.label)
            assert artefact.mask.shape == (64, 64)
            assert out[..., 0][artefact.mask].mean() > 150  # the mask still covers the bright pixels
        assert out[..., 0][~np.logical_or.reduce([a.mask for a in artefacts])].mean() < 40
    assert seen_labels == {"bright", "faint"}  # the donor's artefact was pasted with its label


def test_copy_paste_uses_only_the_given_donors() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    item = RealImage("a.jpg", image, [Artefact("bright", _square(5, 5))])
    settings = RealAugmentation(copy_paste=1.0)
    out, artefacts = augment_real(item, np.random.default_rng(0), donors=[item], settings=settings)  # itself only
    assert [a.label for a in artefacts] == ["bright"]


def counts_ok(truth) -> bool:
    return ccd_counts(truth, truth, 0.0)["tp"] > 0


def test_threshold_is_chosen_from_the_given_images_only() -> None:
    truth = [[Artefact("bright", _square(180, 120, 40, 400))]]  # on live CCDs near the centre
    hit = Artefact("bright", _square(180, 120, 40, 400), 0.9)
    false_alarm = Artefact("faint", _square(180, 250, 40, 400), 0.6)
    assert counts_ok(truth)
    assert choose_threshold(truth, [[hit, false_alarm]]) > 0.6  # the false alarm is thresholded away
    assert choose_threshold(truth, [[Artefact("bright", _square(180, 120, 40, 400), 0.3)]]) <= 0.3
    assert set(THRESHOLD_GRID) <= {round(0.05 * i, 2) for i in range(1, 20)}
    counts = ccd_counts(truth, [[hit, false_alarm]], 0.5)
    assert counts["fp"] > 0 and counts["fn"] == 0 and counts["images_found"] == 1


def test_predictions_round_trip() -> None:
    predictions = [[Artefact("rays", _square(3, 7, 9), 0.42)], []]
    back = decode_predictions(json.loads(json.dumps(encode_predictions(predictions))))
    assert back[1] == [] and back[0][0].label == "rays" and back[0][0].score == pytest.approx(0.42)
    assert np.array_equal(back[0][0].mask, predictions[0][0].mask)


def _fake_report() -> dict:
    """A crossval report built by the module's own functions from two made-up folds."""
    folds = []
    truths, predictions, thresholds = [], [], []
    for index, quality in enumerate((0.9, 0.2)):
        truth = [[Artefact("bright", _square(10, 10, 40, 400)), Artefact("rays", _square(200, 200, 50, 400))]]
        predicted = [[Artefact("bright", _square(10, 10, 40, 400), quality), Artefact("faint", _square(300, 20, 30, 400), 0.5)]]
        figures = fold_figures(truth, predicted, threshold=0.4, fixed_threshold=0.8)
        folds.append({"fold": index, "scored": [f"img{index}"], "trained_on": [f"img{1 - index}"], "threshold": 0.4, "figures": figures})
        truths += truth
        predictions += predicted
        thresholds += [0.4]
    return {"images": 2, "folds": folds, "summary": summarise(folds, truths, predictions, thresholds), "settings": {"folds": 2}}


def test_summary_is_mean_and_spread_over_folds() -> None:
    report = _fake_report()
    per_fold = [f["figures"]["ap50"] for f in report["folds"]]
    assert report["summary"]["ap50"]["mean"] == pytest.approx(np.mean(per_fold))
    assert report["summary"]["ap50"]["std"] == pytest.approx(np.std(per_fold, ddof=1))
    block = real_headline(report)
    assert block["ap50"] == pytest.approx(np.mean(per_fold)) and block["per_fold_ap50"] == per_fold
    assert set(block["per_class"]) == {"bright", "faint", "rays"}


def test_fold_intervals_resample_folds_and_pair_only_the_same_folds() -> None:
    from nightshift.ghosts.crossval import fold_intervals

    report = _fake_report()
    per_fold = [f["figures"]["ap50"] for f in report["folds"]]
    worse = json.loads(json.dumps(report))
    for fold in worse["folds"]:
        fold["figures"] = {k: v / 2 if k.startswith("ap50") else v for k, v in fold["figures"].items()}
    model, baseline = fold_intervals(report, worse)
    assert model["ap50_ci95_low"] == pytest.approx(min(per_fold)) and model["ap50_ci95_high"] == pytest.approx(max(per_fold))
    assert baseline["ap50_ci95_high"] == pytest.approx(max(per_fold) / 2)
    assert model["ap50_over_baseline_ci95_low"] == pytest.approx(min(per_fold) / 2)
    worse["folds"][0]["scored"] = ["another"]
    assert "ap50_over_baseline_ci95_low" not in fold_intervals(report, worse)[0]


def test_evaluate_ends_with_the_real_and_simulated_blocks(tmp_path: Path, capsys) -> None:
    report = tmp_path / "crossval_real.json"
    report.write_text(json.dumps(_fake_report()))
    assert main(["evaluate", "--count", "2", "--no-real", "--crossval", str(report), "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    real = figures["real"]
    assert {"ap50", "ap50_std", "per_class", "ccd_precision", "ccd_recall", "image_recall"} <= set(real)
    assert real["ap50"] == pytest.approx(_fake_report()["summary"]["ap50"]["mean"])
    assert set(real["per_class"]) == {"bright", "faint", "rays"}
    assert 0.0 <= figures["simulated"]["ap50"] <= 1.0 and figures["simulated"]["ap50"] == figures["ap50"]


def test_the_committed_results_are_what_evaluate_reads() -> None:
    committed = Path(__file__).parents[1] / "docs" / "crossval_real.json"
    from nightshift.ghosts.crossval import CROSSVAL_RESULTS

    assert CROSSVAL_RESULTS == committed.resolve()
    if not committed.exists():
        pytest.skip("no committed crossval_real.json yet")
    report = json.loads(committed.read_text())
    names = [n for f in report["folds"] for n in f["scored"]]
    assert len(names) == len(set(names)) == report["images"]
    assert all(not set(f["scored"]) & set(f["trained_on"]) for f in report["folds"])


def test_servicer_and_workflows_do_not_import_each_other() -> None:
    def imported(module: str) -> set[str]:
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert "nightshift.ghosts.workflows" not in imported("servicer")
    assert "nightshift.ghosts.servicer" not in imported("workflows")


@NEEDS_REAL
def test_crossval_on_real_images_scores_each_image_once_with_a_model_that_never_saw_it(tmp_path: Path, capsys, monkeypatch) -> None:
    from nightshift.ghosts import crossval
    from nightshift.ghosts.crossval import FinetuneConfig
    from nightshift.ghosts.realdata import load_real_images
    from nightshift.ghosts.workflows import crossval_real

    # a small real directory: 8 of the 30 images (links, nothing copied) with the full annotation file
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    (real / "annotations").mkdir()
    (real / "annotations" / "annotations_full.json").symlink_to(REAL_DIR / "annotations" / "annotations_full.json")
    chosen = [r.name for r in load_real_images(REAL_DIR)][::4][:8]
    for name in chosen:
        (real / "images" / name).symlink_to(REAL_DIR / "images" / name)
    settings = FinetuneConfig(folds=4, epochs=1, low_lr_epochs=0, real_repeats=1, sim_per_epoch=1, sim_pool=2,
                              augmentation=RealAugmentation(copy_paste=1.0, paste_max=3, paste_sky=True, paste_flip=0.5))
    work = tmp_path / "work"
    drawn: list[tuple[str, frozenset]] = []  # every augmented real image and the donors it was offered
    real_augment = crossval.augment_real

    def recording(item, rng, *, donors=(), settings=RealAugmentation()):
        drawn.append((item.name, frozenset(d.name for d in donors)))
        return real_augment(item, rng, donors=donors, settings=settings)

    monkeypatch.setattr(crossval, "augment_real", recording)
    report = crossval_real(work=work, real_dir=real, seed=3, settings=settings, output=tmp_path / "cv.json",
                           all_real=False, preset="tiny")
    # each fold's fine-tuning augments only its training images, with donors from them alone (never a scored image)
    trained = {frozenset(f["trained_on"]): set(f["scored"]) for f in report["folds"]}
    assert {donors for _, donors in drawn} == set(trained)
    for name, donors in drawn:
        assert name in donors and not donors & trained[donors]
    scored = [n for f in report["folds"] for n in f["scored"]]
    assert sorted(scored) == sorted(chosen) and len(report["folds"]) == 4
    for fold in report["folds"]:
        assert not set(fold["scored"]) & set(fold["trained_on"])
        assert sorted(fold["scored"] + fold["trained_on"]) == sorted(chosen)
        assert fold["threshold"] in THRESHOLD_GRID
    assert {"mean", "std"} <= set(report["summary"]["ap50"]) and "pooled" in report["summary"]
    # resumption: the finished folds are read back, not retrained
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("fold-*/result.json")}
    again = crossval_real(work=work, real_dir=real, seed=3, settings=settings, all_real=False, preset="tiny")
    assert again["summary"]["ap50"] == report["summary"]["ap50"]
    assert {p: p.stat().st_mtime_ns for p in work.glob("fold-*/result.json")} == stamps
    with pytest.raises(ValueError, match="other settings"):
        crossval_real(work=work, real_dir=real, seed=3, settings=FinetuneConfig(folds=4, epochs=2), all_real=False, preset="tiny")


def test_a_larger_ccd_area_threshold_drops_barely_touched_ccds() -> None:
    truth = [[Artefact("bright", _square(180, 120, 40, 400))]]
    sliver = np.zeros((400, 400), bool)
    sliver[180:220, 160:163] = True  # a thin strip beside the true square
    predicted = [[Artefact("bright", _square(180, 120, 40, 400) | sliver, 0.9)]]
    loose, strict = ccd_counts(truth, predicted, 0.5, min_pixels=1), ccd_counts(truth, predicted, 0.5, min_pixels=400)
    assert loose["tp"] > 0 and strict["tp"] <= loose["tp"] and strict["fp"] <= loose["fp"]
    assert ccd_counts(truth, truth, 0.0, min_pixels=10**6) == {**strict, "tp": 0, "fp": 0, "fn": 0}
