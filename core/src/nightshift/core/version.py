"""The version of the code that made an output, for provenance records."""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["code_version"]


@functools.cache
def code_version() -> str:
    """``NIGHTSHIFT_CODE_VERSION`` (set in images), else ``git describe`` of the checkout, else the package version."""
    if env := os.environ.get("NIGHTSHIFT_CODE_VERSION"):
        return env
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        if described:
            return f"git:{described}"
    except (OSError, subprocess.SubprocessError):
        pass
    return metadata.version("nightshift-core")
