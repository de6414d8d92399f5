"""Training pieces and a tiny-preset run that lowers the loss."""

import numpy as np

from nightshift.bubbles.config import preset
from nightshift.bubbles.simulate import simulate_field
from nightshift.bubbles.train import augment, bubble_crop, sample_negatives, train_model

CONFIG = preset("tiny")


def test_augment_moves_boxes_with_the_pixels() -> None:
    pixels = np.zeros((2, 300, 300), np.float32)
    pixels[:, 10:20, 200:240] = 1.0  # rows 10..19, columns 200..239
    box = np.array([[200, 10, 240, 20]], np.float32)
    for seed in range(8):
        rotated, moved = augment(pixels, box, np.random.default_rng(seed))
        x0, y0, x1, y1 = moved[0].astype(int)
        assert rotated[0, y0:y1, x0:x1].all() and rotated[0].sum() == (x1 - x0) * (y1 - y0) == 400


def test_crops_contain_their_bubble_and_negatives_touch_none() -> None:
    field = simulate_field(CONFIG.with_overrides({"field_px": "768", "bubbles_per_field": "2"}), 3, 0)
    rng = np.random.default_rng(0)
    for index, bubble in enumerate(field.bubbles):
        window = bubble_crop(field, index, rng)
        assert window.x0 <= bubble.x_px <= window.x0 + window.size_px and window.y0 <= bubble.y_px <= window.y0 + window.size_px
    negatives = sample_negatives(field, rng, 5)
    assert negatives
    for window in negatives:
        for b in field.bubbles:
            assert (b.x_px + 1.5 * b.radius_px <= window.x0 or b.x_px - 1.5 * b.radius_px >= window.x0 + window.size_px
                    or b.y_px + 1.5 * b.radius_px <= window.y0 or b.y_px - 1.5 * b.radius_px >= window.y0 + window.size_px)


def test_tiny_training_lowers_the_loss_and_resumes(tmp_path) -> None:
    config = CONFIG.with_overrides({"train_fields": "3", "epochs": "3", "window_px": "[300]", "patience": "5", "cluster_epoch": "1"})
    reports = []
    result = train_model(config, seed=2, on_epoch=reports.append, checkpoint=tmp_path / "c.pt", show_progress=False)
    losses = [r.metrics["loss"] for r in reports]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    assert {"val_f2", "val_detection_rate", "val_precision", "loss"} <= set(reports[0].metrics)
    assert result.metrics["epochs_run"] == 3
    resumed = train_model(config.with_overrides({"epochs": "4"}), seed=2, checkpoint=tmp_path / "c.pt", resume=True,
                          show_progress=False)
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
