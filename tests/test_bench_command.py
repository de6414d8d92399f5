"""``nightshift bench --quick``: the benchmark command runs end to end and writes well-formed results.

Speed is never asserted here: only that every section ran, measured something and was written out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from nightshift.orchestration.benchmarks import README_BEGIN, README_END, update_readme

SECTIONS = ("transport", "batching", "store", "night")


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_quick_bench_writes_json_and_the_markdown_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nightshift.orchestration.cli", "bench", "--quick", "--sections", *SECTIONS, "--output-dir", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())
    assert set(results["sections"]) == set(SECTIONS) and results["quick"] is True
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    transport = results["sections"]["transport"]["tiles"]
    assert [t["shape"] for t in transport] == [[7, 64, 64], [3, 256, 256]]
    assert all(t[f"{path}_mb_per_s"] > 0 for t in transport for path in ("raw_copy", "inline", "reference"))
    assert set(results["sections"]["batching"]["clients"]) == {"1", "4"}
    night = results["sections"]["night"]["runs"]["1x"]
    assert night["tiles"] > 0 and 0 <= night["prefect_overhead_fraction"] <= 1 and night["objects_written"] > 0
    through_server = results["sections"]["night"]["server"]["runs"]["1x"]  # the same night on PostgreSQL and process workers
    assert through_server["tiles"] == night["tiles"] and 0 <= through_server["prefect_overhead_fraction"] <= 1
    cold = results["sections"]["night"]["server"]["runs"]["1x cold"]  # flow runs in new interpreters, not forked from zygotes
    assert cold["tiles"] == night["tiles"]
    etag = results["sections"]["store"]["etag"]
    assert set(etag) == {"md5", "none"} and all(costs["put_mb_per_s"] > 0 for costs in etag.values())
    assert all(math.isfinite(n) for n in _numbers(results["sections"]))
    table = (out / "latest.md").read_text()
    assert "`nightshift bench --quick" in table and "| area | measurement |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| area", "| ---"))]
    assert {row.split(" | ")[0].removeprefix("| ") for row in rows} == {"transport", "batching", "store", "night"}
    assert all(row.count(" | ") == 4 for row in rows)


def test_update_readme_replaces_only_the_table_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    update_readme(readme, "| new | table |\n")
    assert readme.read_text() == f"# Title\n\nbefore\n{README_BEGIN}\n| new | table |\n{README_END}\nafter\n"


def test_quick_scale_and_replicas_sections_bound_the_task_runs_and_count_every_replica(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nightshift.orchestration.cli", "bench", "--quick", "--sections", "scale", "replicas", "--output-dir", str(out)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sections = json.loads((out / "latest.json").read_text())["sections"]
    night = sections["scale"]["night"]  # 2 fields of 64 px in 8 px tiles: 64 tiles each, one work item each
    assert night["tiles"] == 128 and night["inputs"] == 2
    # discover, quarantine, 2 ingests, 1 describe, 2 plans, 2 work items, references, catalogue, publish, report
    assert night["task_runs"] == 13 <= sections["scale"]["task_run_bound"]
    memory = sections["scale"]["server_rss_mb"]
    assert 0 < memory["before"] <= memory["peak"] and memory["samples"] >= 2
    for replicas, balance in sections["replicas"]["balance"].items():
        assert balance["seen_replicas"] == int(replicas) and balance["calls"] == 40
        assert len(balance["shares"]) == int(replicas) and all(s > 0 for s in balance["shares"]) and math.isclose(sum(balance["shares"]), 1)
    nights = sections["replicas"]["iobound_nights"]
    assert nights["1"]["tiles"] == nights["2"]["tiles"] > 0 and nights["2"]["replicas"] == 2
    rows = [line for line in (out / "latest.md").read_text().splitlines() if line.startswith(("| scale", "| replicas"))]
    assert len(rows) == 5 and all(row.count(" | ") == 4 for row in rows)
