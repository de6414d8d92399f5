"""Discovery of a night's inputs in a real S3 server, and the quarantine record."""

from __future__ import annotations

from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import NightConfig
from nightshift.orchestration.discovery import discover, find_quarantined, quarantine
from nightshift.orchestration.simulate import SIMULATED_SURVEYS

_CONFIG = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="127.0.0.1:1")
_NIGHT = "2026-02-03"


def _raw(store: ObjectStore, path: str, data: bytes = b"x") -> None:
    store.put_bytes(store.key("raw", _NIGHT, path), data)


def test_fields_become_inputs_and_misfits_are_rejected_with_the_reason(store: ObjectStore) -> None:
    for band in ("irac4", "mips24"):
        _raw(store, f"glimpse/l030/{band}.fits")
    _raw(store, "glimpse/l031/irac4.fits")
    _raw(store, "glimpse/l032/irac4.fits")
    _raw(store, "glimpse/l032/mips24.fits")
    _raw(store, "glimpse/l032/h_alpha.fits")
    _raw(store, "sdss/f1/r.fits")
    _raw(store, "notes.txt")

    inputs, rejections = discover(store, _NIGHT, _CONFIG)

    assert [(i.name, [f.path for f in i.files]) for i in inputs] == [
        ("glimpse/l030", ["glimpse/l030/irac4.fits", "glimpse/l030/mips24.fits"])]
    reasons = {r.name: r.reason for r in rejections}
    assert "missing bands ['mips24']" in reasons["glimpse/l031"]
    assert "unknown bands ['h_alpha']" in reasons["glimpse/l032"]
    assert "expected <survey>/<field>/<band>.fits" in reasons["sdss/f1/r.fits"] and "notes.txt" in reasons


def test_input_key_follows_the_file_contents(store: ObjectStore) -> None:
    for band in ("irac4", "mips24"):
        _raw(store, f"glimpse/l030/{band}.fits", b"first")
    (before,), _ = discover(store, _NIGHT, _CONFIG)
    _raw(store, "glimpse/l030/irac4.fits", b"corrected")
    (after,), _ = discover(store, _NIGHT, _CONFIG)
    assert before.input_key != after.input_key


def test_quarantine_keeps_copies_and_the_reason(store: ObjectStore) -> None:
    _raw(store, "notes.txt", b"hello")
    _, (rejection,) = discover(store, _NIGHT, _CONFIG)
    assert find_quarantined(store, _NIGHT, rejection.input_key) is None
    quarantine(store, _NIGHT, rejection.input_key, rejection)
    assert find_quarantined(store, _NIGHT, rejection.input_key) == rejection
    copies = [k for k in store.list_keys(store.key("quarantine", _NIGHT)) if k.endswith("notes.txt")]
    assert [store.get_bytes(k) for k in copies] == [b"hello"]
