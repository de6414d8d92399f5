"""Shared-memory regions: their lifetime and what a reader checks (against real service processes: tests/reliability)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nightshift.core.errors import FailedPrecondition, InvalidInput
from nightshift.core.shm import SharedMemoryRegion, read_shared, shared_memory_domain, with_pixels_inline
from nightshift.core.tiles import make_tile


def test_a_region_is_removed_on_close_when_collected_and_when_its_process_ends(tmp_path: Path) -> None:
    with SharedMemoryRegion(tmp_path) as region:
        assert region.path.exists() and region.path.parent == tmp_path
    assert not region.path.exists()
    collected = SharedMemoryRegion(tmp_path)
    path = collected.path
    del collected
    gc.collect()
    assert not path.exists()
    code = f"from pathlib import Path; from nightshift.core.shm import SharedMemoryRegion; r = SharedMemoryRegion(Path({str(tmp_path)!r})); print(r.path)"
    left = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert left.startswith(str(tmp_path)) and not Path(left).exists()


def test_read_shared_checks_the_digest_and_the_directory(tmp_path: Path) -> None:
    with SharedMemoryRegion(tmp_path) as region:
        first, second = region.put(np.arange(4, dtype=">i2")), region.put(np.ones(3, np.float32))
        assert (first.offset, first.size_bytes, second.offset) == (0, 8, 8)
        assert bytes(read_shared(first, tmp_path, what="a")) == np.arange(4, dtype="<i2").tobytes()
        second.sha256 = first.sha256
        with pytest.raises(InvalidInput, match="^b: shared-memory region .* at offset 8: sha256 does not match"):
            read_shared(second, tmp_path, what="b")
        with pytest.raises(FailedPrecondition, match="not visible to this service"):
            read_shared(first, tmp_path / "elsewhere", what="c")
    assert shared_memory_domain(tmp_path) != shared_memory_domain(tmp_path / "missing") == ""


def test_with_pixels_inline_copies_only_the_tiles_in_shared_memory(tmp_path: Path) -> None:
    pixels = np.full((1, 4, 4), 3.0, np.float32)
    with SharedMemoryRegion(tmp_path) as region:
        shared, inline = make_tile(pixels, bands=["x"], survey="s", field="a", shared_memory=region), make_tile(pixels, bands=["x"], survey="s", field="b")
        converted = with_pixels_inline([shared, inline], tmp_path)
    assert converted[1] is inline and converted[0].tile_id == shared.tile_id
    assert converted[0].pixels.inline_data == pixels.tobytes() and shared.pixels.WhichOneof("storage") == "shared_memory"
