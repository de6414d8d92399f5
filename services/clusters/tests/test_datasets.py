"""The simulated datasets: splits by base cell, and the cache giving back exactly what was simulated."""

from __future__ import annotations

import numpy as np

from nightshift.clusters.config import get_config
from nightshift.clusters.datasets import simulated_data, sky_key, training_data


def test_splits_respect_cells_and_the_cache_round_trips(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_CLUSTERS_CACHE", str(tmp_path))
    config = get_config("tiny", overrides={"nside": 64, "random_clusters": 50, "train_patches": 16,
                                           "validation_patches": 8, "test_tiling_nside": 4})
    fresh = simulated_data(config, ("train", "validation", "test"), cache=True)
    assert not np.isin(fresh.splits["train"].base_cell, config.held_out_cells).any()
    assert np.isin(fresh.splits["validation"].base_cell, config.validation_cells).all()
    assert set(fresh.splits["test"].base_cell) == set(config.test_cells) and len(fresh.splits["test"]) == 4
    assert len(list(tmp_path.glob(f"sky-{sky_key(config)}-*.npz"))) == 1
    assert sky_key(config, ("test",)) == sky_key(config.with_overrides({"train_patches": 5}), ("test",))
    cached = simulated_data(config, ("train", "validation", "test"), cache=True)
    np.testing.assert_array_equal(cached.splits["train"].pixels, fresh.splits["train"].pixels)
    np.testing.assert_array_equal(cached.truth.snr, fresh.truth.snr)
    assert cached.truth.psz2_analogue.tolist() == fresh.truth.psz2_analogue.tolist()
    assert sky_key(config) != sky_key(config.with_overrides({"seed": 1}))
    assert sky_key(config) == sky_key(config.with_overrides({"epochs": 9}))


def test_training_data_draws_equal_shares_from_independent_skies(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_CLUSTERS_CACHE", str(tmp_path))
    config = get_config("tiny", overrides={"nside": 64, "random_clusters": 50, "train_patches": 9,
                                           "validation_patches": 4, "training_skies": 2})
    assert config.training_sky_seeds == (0, 1000)
    data = training_data(config, cache=True)
    assert (len(data.splits["train"]), len(data.splits["validation"])) == (9, 4)
    second = simulated_data(config.with_overrides({"seed": 1000, "train_patches": 4, "validation_patches": 2}),
                            ("train", "validation"))
    np.testing.assert_array_equal(data.splits["train"].pixels[5:], second.splits["train"].pixels)
    np.testing.assert_array_equal(data.splits["validation"].pixels[2:], second.splits["validation"].pixels)
    first = simulated_data(config.with_overrides({"train_patches": 5, "validation_patches": 2}), ("train", "validation"))
    np.testing.assert_array_equal(data.splits["train"].pixels[:5], first.splits["train"].pixels)
    assert len(data.truth) == len(first.truth) + len(second.truth)
    assert not np.array_equal(first.splits["train"].pixels[0], second.splits["train"].pixels[0])
