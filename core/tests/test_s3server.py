"""Local S3 servers: rclone starts on a free port, answers S3 requests, and stops cleanly."""

from __future__ import annotations

import contextlib
import hashlib
import socket
from pathlib import Path

import pytest

from nightshift.core.s3server import RcloneS3Server, free_port, start_local_s3


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_rclone_server_starts_answers_and_stops() -> None:
    server = start_local_s3("rclone")
    port, data_dir = server.port, server.data_dir
    with server:
        assert server.port == port  # entering a running server does not start another
        assert isinstance(server, RcloneS3Server)
        assert server.config.endpoint == f"127.0.0.1:{port}"
        assert port_is_open(port)
        store = server.store()
        ref = store.put_bytes("hello.txt", b"hello")
        assert store.get_bytes(ref) == b"hello"
        assert (data_dir / "nightshift" / "hello.txt").read_bytes() == b"hello"

    assert not port_is_open(port)
    assert not data_dir.exists()
    with pytest.raises(RuntimeError, match="rclone server is not running"):
        server.config  # noqa: B018


def test_rclone_server_keeps_a_given_data_dir(tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path, bucket="kept") as server:
        server.store().put_bytes("a/b.bin", b"\x00\x01")
    assert (tmp_path / "kept" / "a" / "b.bin").read_bytes() == b"\x00\x01"

    with RcloneS3Server(tmp_path, bucket="kept") as restarted:
        assert restarted.store().get_bytes("a/b.bin") == b"\x00\x01"


@pytest.mark.parametrize("etag_md5", [True, False])
def test_rclone_etag_setting_gives_md5_etags_or_none_and_objects_round_trip(etag_md5: bool) -> None:
    data = bytes(range(256)) * 64
    with RcloneS3Server(etag_md5=etag_md5) as server:
        store = server.store()
        ref = store.put_bytes("a/etag.bin", data)
        assert store.get_bytes(ref) == data  # the reference's SHA-256 is checked on the read
        etag = store._client.stat_object(store.bucket, store.key("a/etag.bin")).etag
    assert etag == (hashlib.md5(data).hexdigest() if etag_md5 else "")


def test_unknown_server_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown S3 server kind 'minio': expected one of \['ceph', 'rclone'\]"):
        start_local_s3("minio")


def test_rclone_server_keeps_its_secret_off_the_command_line_and_refuses_anonymous_calls() -> None:
    import urllib.error
    import urllib.request

    with start_local_s3("rclone") as server:
        server.store().put_bytes("hello.txt", b"hello")
        command_line = Path(f"/proc/{server._process.pid}/cmdline").read_bytes()
        assert server.secret_key.encode() not in command_line and b"--auth-key" not in command_line
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nightshift/hello.txt", timeout=5)
        assert refused.value.code in (400, 403)


def test_the_s3_server_ends_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "rclone.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time\n"
        "from nightshift.core.s3server import start_local_s3\n"
        "server = start_local_s3('rclone')\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(server._process.pid))\n"
        "time.sleep(60)\n")])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, os.WNOHANG)
        time.sleep(0.1)
    alive = Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert not alive, "rclone outlived its SIGKILLed parent"
