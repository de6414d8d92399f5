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


def test_arrays_in_shared_memory_are_read_side_by_side_in_groups_of_a_megabyte(tmp_path: Path) -> None:
    from nightshift.core.codec import SHARED_MEMORY_GROUP_BYTES, decode_arrays, encode_array

    sizes = [SHARED_MEMORY_GROUP_BYTES // 2, SHARED_MEMORY_GROUP_BYTES // 2, 16, SHARED_MEMORY_GROUP_BYTES * 2, 8]
    arrays = [np.arange(n // 4, dtype=np.float32) for n in sizes]
    groups: list[list[int]] = []

    def recording_map(read, runs):  # type: ignore[no-untyped-def]
        groups.extend(runs)
        return map(read, runs)

    with SharedMemoryRegion(tmp_path) as region:
        messages = [encode_array(a, shared_memory=region) for a in arrays]
        messages.insert(2, encode_array(np.ones(2, np.float32)))  # inline, not in any group
        decoded = decode_arrays(messages, map_runs=recording_map, shared_memory_dir=tmp_path)
    assert groups == [[0, 1], [3, 4], [5]]
    assert all(np.array_equal(d, a) for d, a in zip(decoded[:2] + decoded[3:], arrays)) and decoded[2].tolist() == [1, 1]
