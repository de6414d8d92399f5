"""Training: the loss on known cases, a tiny run that lowers the loss, determinism, resuming, registration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nightshift.core.registry import ModelRegistry
from nightshift.core.store import ObjectStore
from nightshift.filaments.config import preset
from nightshift.filaments.train import build_patches, segmentation_loss, train_model

TINY = dict(epochs=4)


def test_loss_is_small_for_confident_right_answers_and_ignores_missing_pixels() -> None:
    targets = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    right = (targets * 2 - 1) * 20
    weights = torch.ones_like(targets)
    assert segmentation_loss(right, targets, weights, "bce") < 1e-6
    assert segmentation_loss(right, targets, weights, "bce+dice") < 1e-3
    wrong_where_missing = right.clone()
    wrong_where_missing[..., 0, 0] = -20
    weights[..., 0, 0] = 0
    assert segmentation_loss(wrong_where_missing, targets, weights, "bce") < 1e-6
    # BCE of logit 0 is ln 2 whatever the target
    assert float(segmentation_loss(torch.zeros_like(targets), targets, torch.ones_like(targets), "bce")) == pytest.approx(np.log(2))


def test_patches_hold_the_required_mask_share() -> None:
    config = preset("tiny")
    patches = build_patches(config)
    assert patches.inputs.shape[1:] == (config.patch_px, config.patch_px)
    assert 0 <= patches.inputs.min() and patches.inputs.max() <= 1
    with_filament = (patches.targets.sum(axis=(1, 2)) > 0).mean()
    assert with_filament >= 1 - config.background_patch_fraction
    assert not patches.real.any()


def test_tiny_training_lowers_the_loss_and_writes_weights_and_card(tmp_path) -> None:
    result = train_model(preset("tiny", **TINY), output_dir=tmp_path, show_progress=False, evaluate=False)
    losses = [epoch["train_loss"] for epoch in result.history]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0]
    card = json.loads(result.weights.with_suffix(".json").read_text())
    assert card["config"]["name"] == "filaments-tiny" and card["data_seed"] == 0
    assert card["metrics"]["train_loss"] == losses[-1]


def test_resuming_an_interrupted_run_gives_the_uninterrupted_weights(tmp_path) -> None:
    config = preset("tiny", **TINY)
    whole = train_model(config, output_dir=tmp_path / "whole", show_progress=False, evaluate=False)

    def stop_after_two(epoch: int, total: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(config, output_dir=tmp_path / "cut", progress=stop_after_two, show_progress=False, evaluate=False)
    after_cut = []
    resumed = train_model(config, output_dir=tmp_path / "cut", show_progress=False, evaluate=False,
                          progress=lambda epoch, total, metrics: after_cut.append(epoch))
    assert after_cut == [3, 4]  # from the checkpoint: a rerun from scratch would end at the same weights too
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    first, second = load_file(str(whole.weights)), load_file(str(resumed.weights))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_registered_with_config_seed_and_metrics(tmp_path, store: ObjectStore) -> None:
    registry = ModelRegistry(store, "filaments")
    config = preset("tiny", epochs=1, seed=5)
    result = train_model(config, output_dir=tmp_path, registry=registry, show_progress=False)
    registered = registry.get(result.version)
    assert registered.config == config.to_dict() and registered.data_seed == 5
    assert {"dice", "iou", "ap", "baseline_dice", "val_loss"} <= set(registered.metrics)
