"""A tiny training run: it lowers the loss, reports every epoch, writes the card, registers, resumes where it was cut."""

from __future__ import annotations

import json

import pytest

from nightshift.core.registry import ModelRegistry
from nightshift.inclination.config import build_config
from nightshift.inclination.train import CARD_FILE, WEIGHTS_FILE, train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    config = build_config(preset="tiny")
    out = tmp_path_factory.mktemp("tiny")
    reports = []
    result = train(config, seed=3, output_dir=out, progress=reports.append, show_progress=False)
    return config, out, result, reports


def test_training_lowers_the_regression_loss(tiny_run) -> None:
    config, out, result, reports = tiny_run
    losses = [r.metrics["train_loss"] for r in reports if r.network == "regressor_0"]
    assert len(losses) == config.epochs
    assert losses[-1] < 0.8 * losses[0]


def test_every_epoch_is_reported_and_the_card_records_the_run(tiny_run) -> None:
    config, out, result, reports = tiny_run
    total = config.epochs + config.classifier_epochs
    assert [r.epoch for r in reports] == list(range(1, total + 1))
    assert {r.network for r in reports} == {"regressor_0", "classifier_0"}
    assert all("train_loss" in r.metrics for r in reports)
    card = json.loads((out / CARD_FILE).read_text())
    assert card["config"] == config.to_dict() and card["data_seed"] == 3 and card["name"] == "inclinet-vgg"
    assert card["metrics"]["uncertainty_scale"] > 0 and "validation_rms_deg" in card["metrics"]
    assert (out / WEIGHTS_FILE).stat().st_size < 10 * 2**20


def test_a_finished_run_resumes_from_its_checkpoints_without_retraining(tiny_run, store) -> None:
    config, out, result, reports = tiny_run
    again = []
    registry = ModelRegistry(store, "inclination")
    rerun = train(config, seed=3, output_dir=out, registry=registry, progress=again.append, show_progress=False)
    assert again == []  # every epoch was already checkpointed
    assert rerun.metrics["validation_rms_deg"] == pytest.approx(result.metrics["validation_rms_deg"])
    registered = registry.get()
    assert registered.version == rerun.registered.version and registered.data_seed == 3
    assert registered.config == config.to_dict() and set(registered.files) == {WEIGHTS_FILE}


def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_weights(tiny_run, tmp_path) -> None:
    """Checkpoints hold weights and optimiser state and every epoch reseeds its generators, so a run
    cut after regressor epoch 3 and rerun trains only the epochs left and ends bit for bit where the
    uninterrupted run of the same seed did (on CPU)."""
    from nightshift.inclination.model import load_ensemble

    config, _, whole, reports = tiny_run

    def interrupt(report) -> None:
        if report.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, seed=3, output_dir=tmp_path, progress=interrupt, show_progress=False)
    after_cut = []
    resumed = train(config, seed=3, output_dir=tmp_path, progress=after_cut.append, show_progress=False)
    assert [r.epoch for r in after_cut] == [r.epoch for r in reports][3:]
    assert [r.metrics for r in after_cut] == [r.metrics for r in reports][3:]
    assert {k: v for k, v in resumed.metrics.items() if k != "training_time_s"} == \
        {k: v for k, v in whole.metrics.items() if k != "training_time_s"}
    for a, b in zip(load_ensemble(whole.weights).get_weights(), load_ensemble(resumed.weights).get_weights(), strict=True):
        assert (a == b).all()
