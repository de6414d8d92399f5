"""The READMEs' results tables, rendered from the committed results files and nothing else.

Every figure in the root README's results table comes from one of :data:`SOURCES` (the services'
``evaluation.json``, the benchmark run, the recorded demo night) through the template
``templates/results.md.j2``; the prose around the figures (what was measured, the targets) lives in the
template. A service README's results tables come from its own team's template,
``services/<task>/docs/results.md.j2``, rendered from the JSON files beside it (``evaluation.json`` as
``evaluation``, and so on), so no service depends on another's files: each ``{% block NAME %}`` of it
replaces what lies between ``<!-- results:begin NAME -->`` and ``<!-- results:end NAME -->`` in the README. ``nightshift results`` rewrites every table, ``nightshift results --check`` says
whether each README still matches its files (the test suite runs the same check), so a figure cannot
change in one place only.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

from nightshift.orchestration.benchmarks import update_readme

__all__ = ["SOURCES", "SERVICE_TEMPLATE", "load_sources", "render_results", "render_service_results", "results_tables", "markers",
           "readme_block", "add_arguments", "main"]


SOURCES = {
    "night": "bench/results/night.json",
    "bench": "bench/results/latest.json",
    "bubbles": "services/bubbles/docs/evaluation.json",
    "clusters": "services/clusters/docs/evaluation.json",
    "filaments": "services/filaments/docs/evaluation.json",
    "ghosts": "services/ghosts/docs/evaluation.json",
    "ghosts_crossval": "services/ghosts/docs/crossval_real.json",
    "inclination": "services/inclination/docs/evaluation.json",
}
"""Template name -> results file, relative to the repository root."""
SERVICE_TEMPLATE = "docs/results.md.j2"
"""A service's results template, relative to its folder; its README gets the rendered table."""


def load_sources(repo: Path, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Every results file of ``sources`` (default :data:`SOURCES`), parsed; a missing or unreadable one is named."""
    loaded = {}
    for name, relative in (SOURCES if sources is None else sources).items():
        path = repo / relative
        try:
            loaded[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"results file {relative} is missing (a README's results table is rendered from it)") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"results file {relative} is not JSON: {exc}") from None
    return loaded


def _fixed(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _count(value: float) -> str:
    """Rates and sizes as the benchmark table writes them: thousands separated, three significant figures below 1000."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _interval(figures: dict[str, Any], name: str, digits: int = 2) -> str:
    """``figures``' 95% interval of ``name`` (``<name>_ci95_low`` / ``_high``, as :mod:`nightshift.core.stats` gives)."""
    return f"[{figures[f'{name}_ci95_low']:.{digits}f}, {figures[f'{name}_ci95_high']:.{digits}f}]"


def _environment(loader: Any) -> Any:
    import jinja2

    environment = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True, lstrip_blocks=True,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters.update(fixed=_fixed, count=_count, ci=_interval)
    return environment


def render_results(repo: Path) -> str:
    """The root README's results table (the text between its results markers) from the files under ``repo``."""
    import jinja2

    template = _environment(jinja2.PackageLoader("nightshift.orchestration", "templates")).get_template("results.md.j2")
    return template.render(sources=SOURCES, **load_sources(repo))


def render_service_results(template: Path) -> dict[str, str]:
    """A service README's results tables, block name -> text, from its template and the JSON files in the template's folder."""
    import jinja2

    folder = template.parent
    sources = {path.stem: path.name for path in sorted(folder.glob("*.json"))}
    compiled = _environment(jinja2.FileSystemLoader(folder)).get_template(template.name)
    variables = {"sources": sources, **load_sources(folder, sources)}
    # the template's top-level macros, which a block rendered on its own does not otherwise see
    macros = {name: value for name, value in vars(compiled.make_module(variables)).items() if not name.startswith("_")}
    context = compiled.new_context({**variables, **macros})
    return {name: "".join(block(context)).strip("\n") + "\n" for name, block in compiled.blocks.items()}


def results_tables(repo: Path) -> dict[tuple[Path, str], str]:
    """Every rendered results table, by (README, block name; "" for the root README's one table)."""
    tables = {(repo / "README.md", ""): render_results(repo)}
    for template in sorted(repo.glob(f"services/*/{SERVICE_TEMPLATE}")):
        readme = template.parents[len(Path(SERVICE_TEMPLATE).parts) - 1] / "README.md"
        tables.update({(readme, name): text for name, text in render_service_results(template).items()})
    return tables


def markers(block: str) -> tuple[str, str]:
    """The README markers around the results table named ``block`` ("" for the root README's one table)."""
    suffix = f" {block}" if block else ""
    return f"<!-- results:begin{suffix} -->", f"<!-- results:end{suffix} -->"


def readme_block(readme_text: str, block: str = "") -> str:
    """What lies between the results markers of ``block`` in a README's text."""
    begin, end = markers(block)
    if begin not in readme_text or end not in readme_text:
        raise ValueError(f"the README has no {begin} ... {end} markers")
    return readme_text.split(begin, 1)[1].split(end, 1)[0].removeprefix("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root holding the results files (default: here)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff when a README's table "
                                                             "is not what its results files give")


def main(args: argparse.Namespace) -> int:
    stale = 0
    for (readme, block), table in results_tables(args.repo).items():
        name = f"{readme.relative_to(args.repo)}" + (f" ({block})" if block else "")
        if not args.check:
            begin, end = markers(block)
            update_readme(readme, table, begin=begin, end=end)
            print(f"{name}: results table rendered")
            continue
        current = readme_block(readme.read_text(), block)
        if current != table:
            stale += 1
            print(f"{name}: the results table differs from its results files (run `nightshift results` after a new evaluation):")
            print("".join(difflib.unified_diff(current.splitlines(keepends=True), table.splitlines(keepends=True), str(name), "rendered")))
    if args.check:
        print("every results table is what its results files give" if not stale else f"{stale} results tables are stale")
    return int(stale > 0)
