"""Hosts made of network namespaces: reachable from each other and from here by address, and their faults."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from nightshift.orchestration.hosts import HostNetwork, namespaces_refused

_REFUSED = namespaces_refused()
pytestmark = pytest.mark.skipif(bool(_REFUSED), reason=_REFUSED or "network namespaces work")

PORT = 8080


def _reachable(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, PORT), timeout=timeout_s):
            return True
    except OSError:
        return False


def _wait_reachable(address: str) -> None:
    deadline = time.monotonic() + 30
    while not _reachable(address):
        assert time.monotonic() < deadline, f"nothing listens on {address}:{PORT}"
        time.sleep(0.1)


def test_hosts_reach_each_other_by_address_and_lose_their_processes_or_their_link() -> None:
    with HostNetwork() as network:
        server, client = network.add("server"), network.add("client")
        assert server.address != client.address and {server.address, client.address} <= set(map(str, network.subnet.hosts()))
        process = subprocess.Popen(server.command([sys.executable, "-m", "http.server", "--bind", server.address, str(PORT)]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_reachable(server.address)
        # From the other host too.
        probe = f"import socket; socket.create_connection(({server.address!r}, {PORT}), timeout=2)"
        assert subprocess.run(client.command([sys.executable, "-c", probe]), check=False).returncode == 0
        assert process.pid in server.pids() and process.pid not in client.pids()

        server.link_down()
        assert not _reachable(server.address), "a host whose link is down still answered"
        assert process.poll() is None  # it runs on, cut off
        server.link_up()
        _wait_reachable(server.address)

        assert process.pid in server.kill_all()
        assert process.wait(timeout=10) == -9
        assert not _reachable(server.address)
        namespaces = {h.namespace for h in network.hosts.values()}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [n for n in namespaces if n in listed], "a namespace outlived its network"
