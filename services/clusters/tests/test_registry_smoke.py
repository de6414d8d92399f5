"""The clusters registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

from pathlib import Path

from nightshift.clusters.bundle import bundled_weights
from nightshift.clusters.servicer import ClustersModel
from nightshift.core.store import ObjectStore
from nightshift.core.testing import assert_smoke_check_refuses, overflowing_checkpoint


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path) -> None:
    registry = ClustersModel(store=store).registry
    card_path = bundled_weights().with_suffix(".json")
    broken = overflowing_checkpoint(bundled_weights(), tmp_path / "overflowing.keras")
    assert_smoke_check_refuses(registry, bundled_weights(), card_path, broken)
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
