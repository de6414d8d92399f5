"""Object keys of a night."""

from __future__ import annotations

import pytest

from nightshift.core.store import ObjectStore
from nightshift.orchestration.layout import NightLayout, content_digest


def test_infer_records_are_keyed_by_content_not_by_night(store: ObjectStore) -> None:
    one, other = NightLayout(store, "2026-06-07"), NightLayout(store, "2026-06-08")
    key = one.infer_record("bubbles", "ssd", "3", "input", ["b", "a"])
    assert key == other.infer_record("bubbles", "ssd", "3", "input", ["a", "b"])
    assert key != one.infer_record("bubbles", "ssd", "4", "input", ["a", "b"])
    assert "/work/infer/bubbles/ssd/3/input/" in key
    assert content_digest({"a": 1, "b": 2}) == content_digest({"b": 2, "a": 1})
    with pytest.raises(ValueError, match="expected a date"):
        NightLayout(store, "latest")
