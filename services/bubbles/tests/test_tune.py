"""``tune``: an optuna study over the training loop that records its searched parameters and resumes from SQLite."""

import json

import pytest
from nightshift.bubbles.cli import main
from nightshift.bubbles.tune import SEARCH_SPACE


def _tune(tmp_path, trials: int, capsys) -> dict:
    assert main(["tune", "--preset", "tiny", "--set", "window_px=[300]", "--set", "train_fields=1", "--trials", str(trials),
                 "--epochs", "1", "--seed", "3", "--storage", str(tmp_path / "study.db"), "--output", str(tmp_path / "tune")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((tmp_path / "tune" / "tune.json").read_text())
    return printed


@pytest.mark.timeout(300)
def test_tune_searches_the_four_fields_resumes_and_returns_the_best_trial(tmp_path, capsys) -> None:
    first = _tune(tmp_path, 1, capsys)
    assert first["finished"] == 1
    resumed = _tune(tmp_path, 2, capsys)  # the same storage: one more trial, not two
    trials = resumed["trials"]
    assert resumed["finished"] == len(trials) == 2 and trials[0] == first["trials"][0]
    for trial in trials:
        assert trial["state"] == "COMPLETE" and set(trial["params"]) == set(SEARCH_SPACE)
        for name, (low, high) in SEARCH_SPACE.items():
            assert low <= trial["params"][name] <= high
        assert list(trial["val_f2_by_epoch"]) == ["1"] and trial["val_f2_by_epoch"]["1"] == trial["value"]
    assert trials[0]["params"] != trials[1]["params"]
    best = max(trials, key=lambda t: t["value"])
    assert resumed["best_params"] == best["params"] and resumed["best_f2"] == best["value"] and resumed["best_trial"] == best["number"]
    assert sorted(resumed["train_overrides"]) == sorted(f"{k}={v}" for k, v in best["params"].items())
