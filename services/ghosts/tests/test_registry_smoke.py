"""The ghosts registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.core.testing import assert_smoke_check_refuses, overflowing_checkpoint
from nightshift.ghosts.servicer import GhostsModel
from nightshift.ghosts.shipped import shipped_weights
from nightshift.ghosts.workflows import register_if_configured


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    registry = GhostsModel(store=store).registry
    weights, card_path = shipped_weights()
    broken = overflowing_checkpoint(weights, tmp_path / "overflowing.safetensors")
    assert_smoke_check_refuses(registry, weights, card_path, broken)
    # the command line's train --register goes through the same check
    for name, value in store.config.to_env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave"):
        register_if_configured(broken, card_path)
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
