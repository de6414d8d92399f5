"""The demo night, as the README runs it: its command in a process of its own, on one science task.

The filaments service is the cheapest to start; every science service's own kit is tested in its
suite (``services/<task>/tests/test_night.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_TASK = "filaments"


def _night(work_dir: Path, *options: str) -> dict[str, object]:
    script = Path(sys.executable).parent / "nightshift"
    done = subprocess.run([str(script), "night", "--tasks", _TASK, "--work-dir", str(work_dir), *options], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not (Path(sys.executable).parent / f"nightshift-{_TASK}").exists(), reason=f"nightshift-{_TASK} is not installed")
def test_demo_night_scores_real_detections_and_reruns_without_work(tmp_path: Path) -> None:
    record = tmp_path / "record" / "night.json"
    first = _night(tmp_path, "--record", str(record))
    assert first["complete"] is True and first["skipped_services"] == []
    assert first["quarantined"] == [first["malformed_delivered"]] == ["higal/corrupt-transfer"]
    task = first["tasks"][_TASK]  # type: ignore[index]
    assert task["tiles"] > 0 and task["rows"] > 0 and task["infer_calls"] > 0
    score = task["score"]
    assert score["truth"] > 0 and score["completeness"] > 0.4 and score["purity"] > 0.4, score  # the shipped model finds filaments
    reports = list((Path(first["work_dir"]) / "s3").rglob("reports/*/*.html"))  # type: ignore[arg-type]
    page = reports[0].read_text()
    assert len(reports) == 1 and page.count("data:image/png;base64,") == 2  # the sky plot and the example tiles
    assert 'id="night-scores"' in page and f'<td class="n">{score["completeness"]:.3g}</td>' in page  # the scores, in the report
    recorded = json.loads(record.read_text())  # what the README's demo-night row is rendered from
    assert {k: v for k, v in first.items() if k != "work_dir"} == {k: recorded.pop(k) for k in first if k != "work_dir"}
    assert set(recorded) == {"code_version", "date", "load_average_at_start", "cores", "seed", "command"}
    assert recorded["command"] == f"nightshift night --tasks {_TASK}" and recorded["code_version"]
    second = _night(tmp_path)
    assert second["run_id"] == first["run_id"] and second["tasks"][_TASK]["infer_calls"] == 0  # type: ignore[index]
    assert second["tasks"][_TASK]["score"] == score  # type: ignore[index]
