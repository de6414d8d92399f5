"""Where the night's inputs, work records, runs and reports live in the object store.

::

    raw/<night>/<survey>/<field>/<band>.fits          what arrived (written by the survey's transfer)
    quarantine/<night>/<input_key>/                   malformed inputs: copies and reason.json
    work/ingest/<input_key>.pb                        the tiles of an ingested input (TileIndex)
    work/infer/<task>/<model>/<version>/<input_key>/<batch>.pb
                                                      one Infer call's results (InferResponse)
    work/batches/<task>/<model>/<version>/<input_key>/<item>.pb
                                                      one task's call batches (TileIndex: a batch manifest)
    runs/<night>/<run_id>/                            a completed run: catalogues/ and manifest.json
    runs/<night>/LATEST.json                          the night's last completed run
    reports/<night>/<attempt>.html                    one report per attempt of the night
    reference/<task>/<catalogue>.{ecsv,fits}          real catalogues of known objects a task's detections are
                                                      cross-matched with (written by the survey's data engineers)

Work records are keyed by content (input checksum, task, model version, tile ids of the batch), not
by night: work already done is never done again, whichever night asks for it. A run's path is
derived from everything its outputs depend on, and its manifest is written last: a run directory
with a manifest is complete and never rewritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import check_night

__all__ = ["NightLayout", "content_digest"]


def content_digest(value: Any) -> str:
    """First 24 hex digits of the SHA-256 of ``value`` as canonical JSON: a key for a record."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class NightLayout:
    """Object keys of one night's inputs and outputs in ``store``."""

    def __init__(self, store: ObjectStore, night: str) -> None:
        self.store = store
        self.night = check_night(night)

    @property
    def raw_prefix(self) -> str:
        return self.store.key("raw", self.night) + "/"

    def quarantine_prefix(self, input_key: str) -> str:
        return self.store.key("quarantine", self.night, input_key) + "/"

    def quarantine_reason(self, input_key: str) -> str:
        return self.quarantine_prefix(input_key) + "reason.json"

    def ingest_record(self, input_key: str) -> str:
        return self.store.key("work", "ingest", f"{input_key}.pb")

    def infer_record(self, task: str, model_name: str, model_version: str, input_key: str, tile_ids: Iterable[str]) -> str:
        """Key of the results of one Infer call: by task, model version, input and the batch's tile ids."""
        batch = content_digest(sorted(tile_ids))
        return self.store.key("work", "infer", task, model_name, model_version, input_key, f"{batch}.pb")

    def batch_manifest(self, task: str, model_name: str, model_version: str, input_key: str, tile_ids: Iterable[str]) -> str:
        """Key of one work item's tiles (the call batches one task sends): by task, model version, input and tile ids."""
        item = content_digest(sorted(tile_ids))
        return self.store.key("work", "batches", task, model_name, model_version, input_key, f"{item}.pb")

    def run_prefix(self, run_id: str) -> str:
        return self.store.key("runs", self.night, run_id) + "/"

    def manifest(self, run_id: str) -> str:
        return self.run_prefix(run_id) + "manifest.json"

    @property
    def latest(self) -> str:
        return self.store.key("runs", self.night, "LATEST.json")

    def reference_prefix(self, task: str) -> str:
        return self.store.key("reference", task) + "/"

    def report(self, attempt: str) -> str:
        return self.store.key("reports", self.night, f"{attempt}.html")
