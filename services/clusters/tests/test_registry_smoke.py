"""The clusters registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.clusters.bundle import bundled_weights
from nightshift.clusters.servicer import ClustersModel
from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.core.testing import overflowing_checkpoint


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path) -> None:
    registry = ClustersModel(store=store).registry
    card_path = bundled_weights().with_suffix(".json")
    assert registry.ensure_bundled(bundled_weights(), card_path).version == "1"
    assert registry.get().version == "1"  # the shipped model passes its smoke check
    card = json.loads(card_path.read_text())
    broken = overflowing_checkpoint(bundled_weights(), tmp_path / "overflowing.keras")
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave [0-9]+ NaN or infinite values"):
        registry.register({broken.name: broken}, name=card["name"], metrics={}, config=card["config"], data_seed=0)
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave"):
        registry.promote("2")
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
