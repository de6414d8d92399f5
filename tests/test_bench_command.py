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
