"""The README's results are the committed results files' figures: a figure changed in one place fails here."""

from __future__ import annotations

import json
from pathlib import Path

from nightshift.orchestration.benchmarks import README_BEGIN, README_END

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _results(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def test_benchmark_table_is_the_committed_run() -> None:
    block = README.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert block == (REPO / "bench/results/latest.md").read_text().strip()


def test_bubbles_rows_are_its_evaluation() -> None:
    figures = _results("services/bubbles/docs/evaluation.json")
    real, baseline, simulated = figures["real"], figures["real"]["baseline"], figures["simulated"]
    assert (f"SSD {real['recall_clear']:.2f} ({real['clear_matched']} of {real['clear_bubbles']}) / {real['recall_all']:.2f} "
            f"({real['matched']} of {real['catalogue_bubbles']}) / {real['precision']:.2f}") in README
    assert f"ring baseline {baseline['recall_clear']:.2f} / {baseline['recall_all']:.2f} / {baseline['precision']:.2f}" in README
    assert (f"{simulated['detection_rate']:.3f} / {simulated['detection_rate_all']:.3f} / {simulated['precision']:.3f} / "
            f"{simulated['f2']:.3f}, target met") in README


def test_inclination_row_is_its_evaluation() -> None:
    figures = _results("services/inclination/docs/evaluation.json")
    model, baseline = figures, figures["baseline"]
    assert (f"{model['rms_deg']:.2f} deg / {model['mae_deg']:.2f} deg / {model['reject_auc']:.3f} vs "
            f"{baseline['rms_deg']:.2f} / {baseline['mae_deg']:.2f} / {baseline['reject_auc']:.3f}") in README
