"""The bubbles registry's smoke check: a version whose model overflows on the fixed input is registered, never LATEST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.bubbles.model import shipped_weights
from nightshift.bubbles.servicer import BubblesModel
from nightshift.bubbles.workflows import register_if_configured
from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.core.testing import assert_smoke_check_refuses, overflowing_checkpoint


def test_an_overflowing_version_is_registered_but_never_latest(store: ObjectStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    registry = BubblesModel(store=store).registry
    card = json.loads(shipped_weights().with_suffix(".json").read_text())
    broken = overflowing_checkpoint(shipped_weights(), tmp_path / "overflowing.safetensors")
    assert_smoke_check_refuses(registry, shipped_weights(), shipped_weights().with_suffix(".json"), broken)
    # the command line's train --register goes through the same check
    for name, value in store.config.to_env().items():
        monkeypatch.setenv(name, value)
    (tmp_path / "overflowing.json").write_text(json.dumps(card))  # the card it reads beside the weights
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave"):
        register_if_configured(broken)
    assert [m.version for m in registry.versions()] == ["1", "2"]
    assert registry.get().version == "1"
