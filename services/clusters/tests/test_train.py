"""A tiny training run lowers its loss, writes a card and registers; an interrupted run resumes where it stopped."""

from __future__ import annotations

import json

import pytest

from nightshift.clusters.train import train_model
from nightshift.core.registry import ModelRegistry

# tiny's learning rate (5e-3) leaves the Tversky loss on its predict-nothing plateau (0.98 after 6
# epochs); at 2e-2 the network starts to overlap the cluster disks (0.99 -> 0.87). Patience beyond
# the run: a resumed run restarts the callbacks' counters, which must not change its schedule.
LEARNING = {"epochs": 6, "learning_rate": 2e-2, "patience": 10, "reduce_lr_patience": 10}
CUT_AFTER = 3


def test_tiny_training_lowers_the_loss_registers_and_resumes_where_it_stopped(tmp_path, tiny_config, tiny_data, store) -> None:
    """The resume contract (train.py): weights and learning rate restored, the optimizer's moments restarted.

    So the resumed run cannot match the uninterrupted one bit for bit after the cut; it must repeat
    its epochs before the cut exactly (another run, same seed, on CPU), not retrain them, and go on
    from the checkpointed weights: its first epoch after the cut scores as the uninterrupted run's
    did, below the checkpointed epoch, where a fresh network would be back at epoch 1's loss.
    """
    config = tiny_config.with_overrides(LEARNING)
    seen = []
    registry = ModelRegistry(store, "clusters")
    result = train_model(config, output_dir=tmp_path / "whole", data=tiny_data, registry=registry, show_progress=False,
                         progress=lambda epoch, total, metrics: seen.append((epoch, total, metrics["loss"])))
    losses = [loss for _, _, loss in seen]
    assert [(e, t) for e, t, _ in seen] == [(e, 6) for e in range(1, 7)]
    assert losses[-1] < 0.93 * losses[0], losses
    card = json.loads(result.card_path.read_text())
    assert card["config"] == json.loads(config.to_json()) and card["data_seed"] == config.seed
    assert result.weights_path.suffix == ".keras" and result.weights_path.stat().st_size < 10_000_000
    registered = registry.get(result.version)
    assert registered.metrics["val_loss"] == card["metrics"]["val_loss"] and registered.config == card["config"]

    def interrupt(epoch: int, total: int, metrics: dict[str, float]) -> None:
        if epoch == CUT_AFTER:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(config, output_dir=tmp_path / "cut", data=tiny_data, progress=interrupt, show_progress=False)
    after_cut = []
    resumed = train_model(config, output_dir=tmp_path / "resumed", data=tiny_data, resume_dir=tmp_path / "cut" / "checkpoints",
                          show_progress=False, progress=lambda epoch, total, metrics: after_cut.append(epoch))
    assert after_cut == list(range(CUT_AFTER + 1, 7))
    resumed_losses = [h["loss"] for h in resumed.history]
    assert resumed.history[:CUT_AFTER] == result.history[:CUT_AFTER]
    # the restarted moments move that epoch by up to ~0.02 (TensorFlow 2.21 here); a fresh network is ~0.06 off
    assert resumed_losses[CUT_AFTER] == pytest.approx(losses[CUT_AFTER], abs=0.03), (resumed_losses, losses)
    assert resumed_losses[CUT_AFTER] < losses[CUT_AFTER - 1] < losses[0], (resumed_losses, losses)
    assert resumed_losses[-1] < 0.93 * losses[0], resumed_losses
