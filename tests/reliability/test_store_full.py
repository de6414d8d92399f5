"""A full disk under the object store: said in seconds, the server still answering, nothing left behind.

The disk is a real 8 MiB tmpfs (mounting one needs root; skipped otherwise) under a real ``rclone serve s3``.
rclone says nothing of its disk on the wire: a put that does not fit answers 500 ``InternalError``; a multipart
upload whose part does not fit answers either (500 to that part, or the upload is dropped and the next part gets
404 ``NoSuchUpload``: which one varies from run to run). A server that does say so
(MinIO's 507 ``XMinioStorageFull``) raises ``StoreFull`` at once: ``core/tests/test_store.py``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightshift.core.errors import StoreUnavailable
from nightshift.core.s3server import RcloneS3Server
from nightshift.core.store import ObjectStore

pytestmark = pytest.mark.reliability

_FAILED_WRITES = 250  # an unread log pipe froze rclone after about 160


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of this test's own."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_writes_to_a_full_disk_fail_in_seconds_and_leave_nothing(small_disk: Path) -> None:
    with RcloneS3Server(small_disk / "s3") as server:
        store = server.store()  # the defaults: 5 attempts, 30 s per request
        multipart = ObjectStore(server.config, retries=0, part_size_bytes=5 << 20)
        with pytest.raises(StoreUnavailable, match=r"failed to write big in 1 attempt \(HTTP (404 NoSuchUpload|500 InternalError)"):
            multipart.put_bytes("big", os.urandom(12 << 20))  # before: ObjectNotFound, "not found in object store: big"

        filler = store.put_bytes("filler", os.urandom(7 << 20))
        blob = os.urandom(2 << 20)
        once = ObjectStore(server.config, retries=0, timeout_s=5.0)
        slowest_s = 0.0
        for index in range(_FAILED_WRITES):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"failed to write k\d+ in 1 attempt \(HTTP 500 InternalError; a full disk"):
                once.put_bytes(f"k{index}", blob)
            slowest_s = max(slowest_s, time.monotonic() - started)
        assert slowest_s < 2.0  # before: the 160th write hung until its read timeout, and every one after it

        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="failed to write one in 5 attempts"):
            store.put_bytes("one", blob)
        assert time.monotonic() - started < 10.0  # the bounded retries: 0.2 + 0.4 + 0.8 + 1.6 s

        left = sorted(str(p.relative_to(server.data_dir)) for p in server.data_dir.rglob("*") if p.is_file())
        assert left == [f"{store.bucket}/filler"]  # no partial object, no rclone temporary file
        store.delete(filler.key)
        assert store.get_bytes(store.put_bytes("after", blob)) == blob  # room again: the server writes as before
