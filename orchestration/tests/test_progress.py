"""Progress events reach listeners only while they listen."""

from __future__ import annotations

from nightshift.orchestration.progress import ProgressEvent, listening, report_progress


def test_listener_gets_events_reported_inside_its_block() -> None:
    seen: list[ProgressEvent] = []
    report_progress("ingest", 1, 4)
    with listening(seen.append):
        report_progress("ingest", 2, 4)
    report_progress("ingest", 1, 4)
    assert seen == [ProgressEvent("ingest", 2, 4)]
