"""The benchmark on a tiny configuration: it runs, compares like with like, and reports its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.ingest.cli import main

# healpy.gnomview styles its (unused) colour map with calls matplotlib is phasing out
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_bench_prints_ratios_and_ends_with_one_json_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    status = main(["bench", "--nside", "16", "--fields", "2", "--patch-px", "16", "--pixel-scale-arcmin", "60",
                   "--gnomview-patches", "4", "--image-px", "128", "--image-bands", "2", "--window-px", "32",
                   "--output", str(output)])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    figures = json.loads(lines[-1])
    assert figures == json.loads(output.read_text())
    assert figures["gnomview_pixel_agreement"] > 0.99  # the two methods sample the same pixels
    assert figures["speedup_vs_gnomview"] > 1.0 and figures["patches_per_s"] > 0
    assert figures["fits_tiles"] == 25 and figures["fits_tiling_over_read"] > 0 and figures["peak_rss_mb"] > 0
    assert any("gnomview loop" in line for line in lines) and any("MB/s" in line for line in lines)
