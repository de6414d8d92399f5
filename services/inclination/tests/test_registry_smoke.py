"""The inclination registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

from pathlib import Path

from nightshift.core.store import ObjectStore
from nightshift.core.testing import assert_smoke_check_refuses, overflowing_checkpoint
from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS, InclinationModel


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path) -> None:
    registry = InclinationModel(store=store).registry
    broken = overflowing_checkpoint(BUNDLED_WEIGHTS, tmp_path / "inclinet.keras")
    assert_smoke_check_refuses(registry, BUNDLED_WEIGHTS, BUNDLED_CARD, broken)
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
