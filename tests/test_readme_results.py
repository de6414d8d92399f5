"""The README's results are the committed results files' figures: a figure changed in one place fails here."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from nightshift.orchestration import results
from nightshift.orchestration.benchmarks import README_BEGIN, README_END

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_benchmark_table_is_the_committed_run() -> None:
    block = README.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert block == (REPO / "bench/results/latest.md").read_text().strip()


TABLES = results.results_tables(REPO)


@pytest.mark.parametrize("table", sorted(TABLES), ids=lambda key: f"{key[0].relative_to(REPO)}:{key[1] or 'results'}")
def test_results_table_is_rendered_from_the_committed_results_files(table: tuple[Path, str]) -> None:
    readme, block = table
    assert results.readme_block(readme.read_text(), block) == TABLES[table], \
        f"run `.venv/bin/nightshift results` and commit {readme.relative_to(REPO)}"


def test_every_service_with_an_evaluation_renders_its_own_tables() -> None:
    assert {readme.parent.name for readme, block in TABLES if block} >= {"inclination", "filaments", "bubbles", "ghosts"}


@pytest.fixture()
def results_copy(tmp_path: Path) -> Path:
    """The READMEs, their templates and every results file, copied: a repository of results only."""
    service_files = [path.relative_to(REPO) for template in REPO.glob(f"services/*/{results.SERVICE_TEMPLATE}")
                     for path in (template, *template.parent.glob("*.json"), template.parents[1] / "README.md")]
    for relative in [*results.SOURCES.values(), "README.md", *service_files]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    return tmp_path


def _check(repo: Path) -> int:
    return results.main(argparse.Namespace(repo=repo, check=True))


def test_the_check_fails_when_a_results_file_changes_and_passes_once_rendered(results_copy: Path, capsys) -> None:
    path = results_copy / results.SOURCES["inclination"]
    figures = json.loads(path.read_text())
    figures["rms_deg"] += 1.0
    path.write_text(json.dumps(figures))
    assert _check(results_copy) == 1
    assert f"{figures['rms_deg']:.2f} deg" in capsys.readouterr().out  # the diff shows the new figure
    assert results.main(argparse.Namespace(repo=results_copy, check=False)) == 0
    assert _check(results_copy) == 0
    assert f"{figures['rms_deg']:.2f} deg" in results.readme_block((results_copy / "README.md").read_text())


def test_the_check_fails_when_the_readme_is_edited_by_hand(results_copy: Path) -> None:
    readme = results_copy / "README.md"
    figures = json.loads((REPO / results.SOURCES["inclination"]).read_text())
    shown = f"{figures['rms_deg']:.2f} deg"
    assert shown in readme.read_text()
    readme.write_text(readme.read_text().replace(shown, "2.50 deg"))
    assert _check(results_copy) == 1


def test_a_missing_results_file_is_named(results_copy: Path) -> None:
    (results_copy / results.SOURCES["night"]).unlink()
    with pytest.raises(FileNotFoundError, match="bench/results/night.json is missing"):
        results.render_results(results_copy)
