"""The simulated datasets: splits by base cell, and the cache giving back exactly what was simulated."""

from __future__ import annotations

import numpy as np

from nightshift.clusters.config import get_config
from nightshift.clusters.datasets import simulated_data, sky_key


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
    assert cached.truth.psz2_name.tolist() == fresh.truth.psz2_name.tolist()
    assert sky_key(config) != sky_key(config.with_overrides({"seed": 1}))
    assert sky_key(config) == sky_key(config.with_overrides({"epochs": 9}))
