"""Training on the tiny preset: the loss falls, runs are deterministic and resumable."""

from pathlib import Path

import pytest

from nightshift.ghosts.config import preset
from nightshift.ghosts.train import train_model


def test_tiny_training_lowers_the_loss(tmp_path: Path) -> None:
    config = preset("tiny").with_overrides({"train_images": "8", "stage_epochs": "[3]", "val_images": "1"})
    reports = []
    result = train_model(config, seed=1, on_epoch=reports.append, checkpoint=tmp_path / "c.pt", show_progress=False)
    losses = [r.metrics["loss"] for r in result.history]
    assert [r.stage for r in reports] == ["heads", "all-1", "all-1", "all-1"]
    assert losses[-1] < 0.8 * losses[0]
    assert (tmp_path / "c.pt").exists() and "val_ap50" in result.metrics
    resumed = train_model(config, seed=1, checkpoint=tmp_path / "c.pt", resume=True, show_progress=False)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in result.history]  # nothing left to run


def test_deterministic_for_a_seed() -> None:
    config = preset("tiny").with_overrides({"train_images": "2", "heads_epochs": "0", "stage_epochs": "[1]", "val_images": "0"})
    first = train_model(config, seed=4, show_progress=False).metrics["loss"]
    assert train_model(config, seed=4, show_progress=False).metrics["loss"] == pytest.approx(first, rel=1e-6)
