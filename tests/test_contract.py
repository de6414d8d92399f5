"""The contract: generated stubs match the .proto files, buf lint passes, no breaking change since the last release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUF = REPO / "node_modules" / ".bin" / "buf"
RELEASES = REPO / "proto" / "RELEASES"


def _stub_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "nightshift" / "v1").glob("*_pb2*.py*"))}


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    # A process of its own: protoc's compiler crashes in a process that has imported TensorFlow.
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_stubs.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    fresh, committed = _stub_files(tmp_path), _stub_files(REPO / "core" / "src")
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert fresh, "the generator produced no stubs"
    assert not stale, f"stubs differ from proto/: {stale}; run .venv/bin/python scripts/generate_stubs.py"


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), "buf is not installed: run scripts/setup.sh"
    return subprocess.run([str(BUF), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_buf_lint_passes() -> None:
    result = _buf("lint", "proto")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_since_the_last_release() -> None:
    released = [line.split() for line in RELEASES.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not released:
        pytest.skip("no contract version released yet (proto/RELEASES lists none)")
    version, commit = released[-1]
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        pytest.skip(f"released {version} ({commit}) is not in this clone's history (a shallow clone?)")
    result = _buf("breaking", "proto", "--against", f".git#ref={commit},subdir=proto")
    assert result.returncode == 0, f"breaking change against released {version} ({commit}):\n{result.stdout}{result.stderr}"
