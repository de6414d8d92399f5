"""Pixels in shared memory: the third carrier beside inline bytes and ``ObjectRef``, for co-located callers.

A caller on the service's own host (or in its pod, sharing an in-memory ``emptyDir`` at ``/dev/shm``)
writes the tiles' pixels into a :class:`SharedMemoryRegion`, a file in the shared-memory directory, and
sends each tile's range as a ``SharedMemoryRef`` (name, offset, size, SHA-256): the gRPC message then
carries no pixels. The caller creates and removes the region (a context manager: it is unlinked on exit,
and at the latest when the process ends normally); the service reads it only during the call.

A service advertises the directory it reads in ``DescribeResponse.shared_memory_domain``
(:func:`shared_memory_domain`: host, device and inode of the directory); a caller whose own domain is
the same may use it. A region the service cannot see is refused with FAILED_PRECONDITION, and
:class:`~nightshift.core.client.TaskClient` then sends the same tiles again with their pixels inline.
"""

from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from nightshift.core.errors import FailedPrecondition, InvalidInput
from nightshift.core.store import sha256_hex
from nightshift.v1 import tile_pb2

__all__ = ["DEFAULT_SHARED_MEMORY_DIR", "SharedMemoryRegion", "shared_memory_domain", "read_shared", "with_pixels_inline"]

DEFAULT_SHARED_MEMORY_DIR = Path("/dev/shm")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_NAME_PREFIX = "nightshift-"  # only regions made by SharedMemoryRegion are read, no other file of the directory


def shared_memory_domain(directory: Path = DEFAULT_SHARED_MEMORY_DIR) -> str:
    """Who sees the same files in ``directory``: this boot of the host, the directory's device and inode.

    Two processes with the same domain see one directory (the same host's ``/dev/shm``, or one pod's
    shared ``emptyDir``); empty when the directory does not exist.
    """
    try:
        status = directory.stat()
    except OSError:
        return ""
    boot = _BOOT_ID.read_text().strip() if _BOOT_ID.exists() else os.uname().nodename
    return f"{boot}:{status.st_dev}:{status.st_ino}"


class SharedMemoryRegion:
    """A region the caller fills with arrays and removes when done (``with SharedMemoryRegion() as region``).

    Parameters
    ----------
    directory : Path
        The shared-memory directory the service reads (default ``/dev/shm``).
    """

    def __init__(self, directory: Path = DEFAULT_SHARED_MEMORY_DIR) -> None:
        self.directory = directory
        self.name = f"{_NAME_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        self.path = directory / self.name
        self._file = self.path.open("xb")  # a new file only, private to this user
        self._size = 0
        # removed on close, when garbage-collected, or at the latest when the interpreter exits
        self._remove = weakref.finalize(self, _remove, self._file, self.path)

    def put(self, array: npt.ArrayLike) -> tile_pb2.SharedMemoryRef:
        """Append ``array``'s bytes (C order, little-endian) and return their reference (the caller sets the dtype and shape)."""
        data = np.ascontiguousarray(array, dtype=np.asarray(array).dtype.newbyteorder("<"))
        written = self._file.write(memoryview(data).cast("B"))
        self._file.flush()
        ref = tile_pb2.SharedMemoryRef(name=self.name, offset=self._size, size_bytes=written, sha256=sha256_hex(data))
        self._size += written
        return ref

    def close(self) -> None:
        """Remove the region (idempotent)."""
        self._remove()

    def __enter__(self) -> SharedMemoryRegion:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _remove(file: BinaryIO, path: Path) -> None:
    file.close()
    path.unlink(missing_ok=True)


def read_shared(ref: tile_pb2.SharedMemoryRef, directory: Path | None, *, what: str) -> memoryview:
    """The bytes of ``ref`` read from the region in ``directory``, their size and SHA-256 checked.

    Read (one copy) rather than mapped: a caller that shrank its region during the call would otherwise
    crash the service with SIGBUS on the first access past its new end.

    Raises
    ------
    FailedPrecondition
        This receiver reads no shared memory (``directory`` None), or cannot see the region: the caller
        sends the pixels inline or by reference instead.
    InvalidInput
        A malformed reference (name, digest), a range past the region's end, or bytes whose SHA-256 differs.
    """
    if directory is None:
        raise FailedPrecondition(f"{what}: carried in shared memory but this receiver reads none: send the pixels inline or by reference")
    if not ref.name.startswith(_NAME_PREFIX) or "/" in ref.name or "\0" in ref.name:
        raise InvalidInput(f"{what}: shared-memory region name {ref.name[:64]!r} is not a region's file name "
                           f"(one path segment starting {_NAME_PREFIX!r})")
    if len(ref.sha256) != 64 or any(c not in "0123456789abcdef" for c in ref.sha256):
        raise InvalidInput(f"{what}: shared-memory sha256 must be 64 lower-case hex digits, got {ref.sha256[:80]!r}")
    try:
        # no symlink followed: only a region's own file, never what a link in the directory points at
        with open(os.open(directory / ref.name, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0) as region:
            end = os.fstat(region.fileno()).st_size
            if ref.offset + ref.size_bytes > end:
                raise InvalidInput(f"{what}: shared-memory range {ref.offset}+{ref.size_bytes} reaches past the end of "
                                   f"region {ref.name!r} ({end} bytes)")
            data = bytearray(ref.size_bytes)
            region.seek(ref.offset)
            read = region.readinto(data)
    except OSError:  # missing, not ours to read, a symlink (refused), a directory
        raise FailedPrecondition(f"{what}: shared-memory region {ref.name!r} is not visible to this service "
                                 "(another host, or already removed): send the pixels inline or by reference") from None
    if read != ref.size_bytes:
        raise InvalidInput(f"{what}: shared-memory region {ref.name!r} shrank during the read ({read} of {ref.size_bytes} bytes)")
    if sha256_hex(data) != ref.sha256:
        raise InvalidInput(f"{what}: shared-memory region {ref.name!r} at offset {ref.offset}: sha256 does not match the reference")
    return memoryview(data).toreadonly()


def with_pixels_inline(tiles: Sequence[tile_pb2.ImageTile], directory: Path = DEFAULT_SHARED_MEMORY_DIR) -> list[tile_pb2.ImageTile]:
    """``tiles`` with the pixels of those carried in shared memory read from ``directory`` and put inline (the fallback
    when a service cannot see the region); the others as they are, not copied."""
    inlined = []
    for tile in tiles:
        if tile.pixels.WhichOneof("storage") != "shared_memory":
            inlined.append(tile)
            continue
        copy = tile_pb2.ImageTile()
        copy.CopyFrom(tile)
        copy.pixels.inline_data = bytes(read_shared(tile.pixels.shared_memory, directory, what=f"tile {tile.tile_id!r} pixels"))
        inlined.append(copy)
    return inlined
