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


@pytest.fixture(scope="module")
def extended_run(tiny_run, tmp_path_factory):
    """The one-member tiny run grown to two members with ``extend_from``."""
    config, out, base, _ = tiny_run
    grown = config.with_overrides(ensemble_size=2)
    extended_out = tmp_path_factory.mktemp("tiny-extended")
    reports = []
    result = train(grown, seed=3, output_dir=extended_out, extend_from=base.weights, progress=reports.append, show_progress=False)
    return grown, extended_out, result, reports


def test_extending_trains_only_the_new_member_and_keeps_the_old_one_bit_for_bit(tiny_run, extended_run) -> None:
    import numpy as np

    from nightshift.inclination.model import load_ensemble
    from nightshift.inclination.train import ensemble_members

    config, _, base, _ = tiny_run
    grown, extended_out, result, reports = extended_run
    assert {r.network for r in reports} == {"regressor_1", "classifier_1"}  # member 0 was not retrained
    assert [r.epoch for r in reports] == list(range(1, config.epochs + config.classifier_epochs + 1))
    assert sorted(p.name for p in (extended_out / "checkpoints").glob("*.keras")) == ["classifier_1.keras", "regressor_1.keras"]
    old_regressors, old_classifiers = ensemble_members(load_ensemble(base.weights))
    new_regressors, new_classifiers = ensemble_members(load_ensemble(result.weights))
    assert len(old_regressors) == 1 and len(new_regressors) == 2
    for old, new in ((old_regressors[0], new_regressors[0]), (old_classifiers[0], new_classifiers[0])):
        for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
            assert (a == b).all()  # kept as they were
    for first, second in ((new_regressors[0], new_regressors[1]), (new_classifiers[0], new_classifiers[1])):
        kernels = [(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True) if a.ndim > 1]
        assert kernels and all(not np.allclose(a, b) for a, b in kernels)  # a new member, not a copy of the old one
    # the old member's outputs inside the new ensemble are the old ensemble's
    images = np.random.default_rng(0).uniform(0, 1, (4, config.image_size, config.image_size, 3)).astype(np.float32)
    old_out, new_out = load_ensemble(base.weights).predict(images, verbose=0), load_ensemble(result.weights).predict(images, verbose=0)
    assert new_out["inclination_scaled"].shape == (4, 2) and new_out["class_probabilities"].shape == (4, 4)
    # (to float32 round-off: the joined graph may order the kernels' sums differently; the weights are equal above)
    np.testing.assert_allclose(new_out["inclination_scaled"][:, :1], old_out["inclination_scaled"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(new_out["class_probabilities"][:, :2], old_out["class_probabilities"], rtol=0, atol=1e-6)
    assert not np.allclose(new_out["inclination_scaled"][:, 1], new_out["inclination_scaled"][:, 0])


def test_the_extended_card_records_members_and_the_gain_per_member(tiny_run, extended_run) -> None:
    _, _, base, _ = tiny_run
    grown, _, result, _ = extended_run
    card = json.loads(result.card.read_text())
    assert card["config"] == grown.to_dict() and card["config"]["ensemble_size"] == 2
    assert [m["member"] for m in card["members"]] == [0, 1] and all(m["training_time_s"] > 0 for m in card["members"])
    assert card["members"][0] == json.loads(base.card.read_text())["members"][0]  # carried over from the base card
    by_members = card["validation_by_members"]
    assert [row["members"] for row in by_members] == [1, 2]
    # one member again gives the base run's validation figures exactly; two give the written model's (scale refitted)
    assert {k: v for k, v in by_members[0].items() if k != "members"} == \
        {k: v for k, v in base.metrics.items() if k != "training_time_s"}
    assert {k: v for k, v in by_members[1].items() if k != "members"} == \
        {k: v for k, v in result.metrics.items() if k != "training_time_s"}
    assert card["extended_from"] == {"members": 1, "metrics": json.loads(base.card.read_text())["metrics"]}
    import zipfile

    with zipfile.ZipFile(result.weights) as archive:  # the shipped file holds weights only, not the twins' Adam moments
        assert not [n for n in archive.namelist() if "optimizer" in n]
        import h5py

        with archive.open("model.weights.h5") as handle, h5py.File(handle) as weights:
            names = []
            weights.visit(names.append)
    assert names and not [n for n in names if "optimizer" in n]
    assert result.metrics["uncertainty_scale"] != base.metrics["uncertainty_scale"]


def test_an_extended_member_is_the_member_a_run_of_all_members_trains(tmp_path) -> None:
    """Member k's seeds are (seed, k) whatever the ensemble's size: growing 1 -> 2 members gives,
    bit for bit on CPU, the ensemble that training both members at once gives (a smaller run than tiny)."""
    from nightshift.inclination.model import load_ensemble

    small = build_config(preset="tiny", train_galaxies=96, validation_galaxies=16, epochs=2, classifier_epochs=1)
    grown = small.with_overrides(ensemble_size=2)
    one = train(small, seed=5, output_dir=tmp_path / "one", show_progress=False)
    extended = train(grown, seed=5, output_dir=tmp_path / "extended", extend_from=one.weights, show_progress=False)
    whole = train(grown, seed=5, output_dir=tmp_path / "whole", show_progress=False)
    for a, b in zip(load_ensemble(whole.weights).get_weights(), load_ensemble(extended.weights).get_weights(), strict=True):
        assert (a == b).all()
    assert {k: v for k, v in whole.metrics.items() if k != "training_time_s"} == \
        {k: v for k, v in extended.metrics.items() if k != "training_time_s"}


@pytest.mark.parametrize(("overrides", "seed", "message"), [
    ({"ensemble_size": 1}, 3, "expected more than its 1 members"),
    ({"ensemble_size": 2, "epochs": 7}, 3, r"config fields \['epochs'\] differ"),
    ({"ensemble_size": 2}, 4, "trained with seed 3, not 4"),
])
def test_extending_refuses_what_would_not_be_the_same_ensemble(tiny_run, tmp_path, overrides, seed, message) -> None:
    config, _, base, _ = tiny_run
    reports = []
    with pytest.raises(ValueError, match=message):
        train(config.with_overrides(**overrides), seed=seed, output_dir=tmp_path, extend_from=base.weights, progress=reports.append,
              show_progress=False)
    assert reports == [] and not (tmp_path / "checkpoints").exists()  # refused before simulating or training


def test_the_range_loss_and_any_angle_rotation_train_and_resume_from_their_checkpoints(tmp_path) -> None:
    """The registered loss is written into each checkpoint and read back in safe mode."""
    config = build_config(preset="tiny", regression_loss="range_cross_entropy", rotation="any", epochs=3, classifier_epochs=1)
    reports = []
    first = train(config, seed=5, output_dir=tmp_path, progress=reports.append, show_progress=False)
    losses = [r.metrics["train_loss"] for r in reports if r.network == "regressor_0"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    again = []
    rerun = train(config, seed=5, output_dir=tmp_path, progress=again.append, show_progress=False)
    assert again == [] and rerun.metrics["validation_rms_deg"] == pytest.approx(first.metrics["validation_rms_deg"])
    assert json.loads((tmp_path / CARD_FILE).read_text())["config"]["regression_loss"] == "range_cross_entropy"
