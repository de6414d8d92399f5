"""The inclination registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.core.testing import overflowing_checkpoint
from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS, InclinationModel


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path) -> None:
    registry = InclinationModel(store=store).registry
    assert registry.ensure_bundled(BUNDLED_WEIGHTS, BUNDLED_CARD).version == "1"
    assert registry.get().version == "1"  # the shipped model passes its smoke check
    card = json.loads(BUNDLED_CARD.read_text())
    broken = overflowing_checkpoint(BUNDLED_WEIGHTS, tmp_path / "inclinet.keras")
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave [0-9]+ NaN or infinite values"):
        registry.register({broken.name: broken}, name=card["name"], metrics={}, config=card["config"], data_seed=0)
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave"):
        registry.promote("2")
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
