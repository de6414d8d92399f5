"""Local S3 servers: rclone starts on a free port, answers S3 requests, and stops cleanly."""

from __future__ import annotations

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
