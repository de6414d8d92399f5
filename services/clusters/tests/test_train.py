"""A tiny training run lowers its loss, writes a card, registers, and resumes."""

from __future__ import annotations

import json

from nightshift.clusters.train import train_model
from nightshift.core.registry import ModelRegistry


def test_tiny_training_lowers_the_loss_registers_and_resumes(tmp_path, tiny_config, tiny_data, store) -> None:
    config = tiny_config.with_overrides({"epochs": 4, "patience": 10, "reduce_lr_patience": 10})
    seen = []
    registry = ModelRegistry(store, "clusters")
    result = train_model(config, output_dir=tmp_path, data=tiny_data, registry=registry, show_progress=False,
                         progress=lambda epoch, total, metrics: seen.append((epoch, total, metrics["loss"])))
    losses = [loss for _, _, loss in seen]
    assert [(e, t) for e, t, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert losses[-1] < losses[0] - 0.005
    card = json.loads(result.card_path.read_text())
    assert card["config"] == json.loads(config.to_json()) and card["data_seed"] == config.seed
    assert result.weights_path.suffix == ".keras" and result.weights_path.stat().st_size < 10_000_000
    registered = registry.get(result.version)
    assert registered.metrics["val_loss"] == card["metrics"]["val_loss"] and registered.config == card["config"]
    resumed = train_model(config, output_dir=tmp_path / "again", data=tiny_data, resume_dir=tmp_path / "checkpoints",
                          show_progress=False)
    assert len(resumed.history) == 4 and resumed.metrics["val_loss"] == result.metrics["val_loss"]
