"""What arrived for a night: raw files grouped into inputs, checksummed, checked against the surveys.

An input is one field of one survey: one file per band under ``raw/<night>/<survey>/<field>/``. Its
key (:attr:`NightInput.input_key`) is derived from the survey's bands and tiling and every file's
SHA-256, so the same files tiled the same way are the same input on any night, and a corrected
file is a new input. Files that cannot form an input (unknown survey or band, a band missing,
another layout) are rejected with the reason; rejected inputs are quarantined (:func:`quarantine`).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

from nightshift.core.errors import ObjectNotFound
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.orchestration.config import NightConfig, SurveyConfig
from nightshift.orchestration.layout import NightLayout, content_digest

__all__ = ["RawFile", "NightInput", "Rejection", "discover", "quarantine", "find_quarantined"]


@dataclasses.dataclass(frozen=True)
class RawFile:
    """A file in the raw area: object key, path below the night, SHA-256 and size in bytes."""

    key: str
    path: str
    sha256: str
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class NightInput:
    """One field of one survey, ready to ingest: its files in the survey's band order."""

    survey: SurveyConfig
    field: str
    files: tuple[RawFile, ...]

    @property
    def input_key(self) -> str:
        return content_digest({
            "survey": self.survey.name,
            "field": self.field,
            "bands": [b.model_dump() for b in self.survey.bands],
            "tiling": self.survey.tiling.model_dump(),
            "files": [f.sha256 for f in self.files],
        })

    @property
    def name(self) -> str:
        return f"{self.survey.name}/{self.field}"


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Files that were not processed, and why (a line of the night's report)."""

    name: str
    files: tuple[RawFile, ...]
    reason: str

    @property
    def input_key(self) -> str:
        return content_digest({"rejected": self.name, "files": [f.sha256 for f in self.files]})


def _read_raw(store: ObjectStore, layout: NightLayout) -> list[RawFile]:
    files = []
    for key in store.list_keys(layout.raw_prefix):
        data = store.get_bytes(key)
        files.append(RawFile(key=key, path=key[len(layout.raw_prefix):], sha256=sha256_hex(data), size_bytes=len(data)))
    return files


def _group(survey: SurveyConfig, field: str, files: list[RawFile]) -> NightInput | Rejection:
    by_band = {f.path.rsplit("/", 1)[-1].removesuffix(".fits"): f for f in files}
    name = f"{survey.name}/{field}"
    unknown = sorted(set(by_band) - set(survey.band_names))
    missing = [b for b in survey.band_names if b not in by_band]
    if unknown or missing:
        problems = [f"unknown bands {unknown}" if unknown else "", f"missing bands {missing}" if missing else ""]
        reason = f"{name}: {' and '.join(p for p in problems if p)}; {survey.name} has bands {list(survey.band_names)}"
        return Rejection(name=name, files=tuple(files), reason=reason)
    return NightInput(survey=survey, field=field, files=tuple(by_band[b] for b in survey.band_names))


def discover(store: ObjectStore, night: str, config: NightConfig) -> tuple[list[NightInput], list[Rejection]]:
    """The inputs that arrived for ``night``, and the files that cannot be processed.

    Returns
    -------
    inputs : list of NightInput
        In (survey, field) order.
    rejections : list of Rejection
        Files outside ``<survey>/<field>/<band>.fits``, of an unknown survey, or fields with an
        unknown or missing band.
    """
    layout = NightLayout(store, night)
    fields: dict[tuple[str, str], list[RawFile]] = defaultdict(list)
    rejections = []
    for raw in _read_raw(store, layout):
        parts = raw.path.split("/")
        survey = config.survey(parts[0]) if len(parts) == 3 and parts[2].endswith(".fits") else None
        if survey is None:
            surveys = [s.name for s in config.surveys]
            reason = f"{raw.path}: expected <survey>/<field>/<band>.fits with a survey of {surveys}"
            rejections.append(Rejection(name=raw.path, files=(raw,), reason=reason))
        else:
            fields[(parts[0], parts[1])].append(raw)
    inputs = []
    for (survey_name, field), files in sorted(fields.items()):
        grouped = _group(config.survey(survey_name), field, files)  # type: ignore[arg-type]
        (inputs if isinstance(grouped, NightInput) else rejections).append(grouped)
    return inputs, rejections


def quarantine(store: ObjectStore, night: str, input_key: str, rejection: Rejection) -> str:
    """Copy the rejected files and the reason under ``quarantine/<night>/<input_key>/``; return the reason's key.

    The raw area is left as it arrived; the quarantine record is what tells later runs of the
    night that these exact files were already judged.
    """
    layout = NightLayout(store, night)
    prefix = layout.quarantine_prefix(input_key)
    for raw in rejection.files:
        store.put_bytes(prefix + raw.path.replace("/", "__"), store.get_bytes(raw.key))
    record = {"name": rejection.name, "reason": rejection.reason, "files": [dataclasses.asdict(f) for f in rejection.files]}
    key = layout.quarantine_reason(input_key)
    store.put_bytes(key, json.dumps(record, indent=1, sort_keys=True).encode(), content_type="application/json")
    return key


def find_quarantined(store: ObjectStore, night: str, input_key: str) -> Rejection | None:
    """The rejection recorded for ``input_key`` on ``night``, or None if it was not quarantined."""
    try:
        record = json.loads(store.get_bytes(NightLayout(store, night).quarantine_reason(input_key)))
    except ObjectNotFound:
        return None
    return Rejection(name=record["name"], files=tuple(RawFile(**f) for f in record["files"]), reason=record["reason"])
