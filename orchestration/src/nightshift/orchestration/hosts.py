"""Several hosts on one machine: Linux network namespaces on a bridge, each with an address of its own.

A :class:`HostNetwork` makes a bridge in this (the root) namespace holding the first address of its
subnet, and for each :meth:`HostNetwork.add` a network namespace joined to the bridge by a veth pair,
its loopback up and the next address of the subnet on its side. A command wrapped by
:meth:`Host.command` runs inside (``ip netns exec``): what it binds on the host's address is reached
from this process and from every other host; what it binds on 127.0.0.1 only from inside. The
faults a machine has: :meth:`Host.kill_all` (every process of the host at once, SIGKILL, as a power
cut) and :meth:`Host.link_down` (the cable pulled: the processes live on, unreachable).

:data:`LOCALHOST` is this machine as it is (commands unchanged, 127.0.0.1), so code that places
processes on hosts runs the same with or without namespaces. Namespaces need root (CAP_NET_ADMIN):
:func:`namespaces_refused` says why they cannot be made here, or "".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Self

from nightshift.orchestration.launcher import Started

__all__ = ["Host", "HostNetwork", "LOCALHOST", "namespaces_refused"]

# /24 subnets of 10.0.0.0/8, picked by process id: two test runs on one machine get different ones.
_SUBNET_OCTET_SPAN = 200
_NETWORK_NUMBERS = itertools.count()


def _ip(*args: str) -> str:
    """Run ``ip args``; return its output. Raises RuntimeError with ip's message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


def namespaces_refused() -> str:
    """Why network namespaces cannot be made here ("" when they can): tried with a namespace of this process's own."""
    name = f"nightshift-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (RuntimeError, FileNotFoundError) as exc:
        return f"network namespaces refused here ({exc})"
    _ip("netns", "delete", name)
    return ""


@dataclasses.dataclass(frozen=True)
class Host:
    """A host: a network namespace (``namespace`` "" for this machine itself) and its address.

    ``link`` is the veth end on the bridge side (in the root namespace) that :meth:`link_down` takes down.
    """

    name: str
    address: str
    namespace: str = ""
    link: str = ""

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run on this host (inside its namespace; unchanged for this machine)."""
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else list(argv)

    def pids(self) -> list[int]:
        """Every process running on this host (in its network namespace)."""
        if not self.namespace:
            raise ValueError("this machine's own processes are not one host's: only a namespace host lists its processes")
        return [int(p) for p in _ip("netns", "pids", self.namespace).split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process of this host at once, as a power cut would; return their ids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # ended on its own meanwhile
                pass
        return pids

    def link_down(self) -> None:
        """Cut this host off the network: its processes go on running, nothing reaches them, no reset is sent."""
        _ip("link", "set", self.link, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.link, "up")


LOCALHOST = Host(name="localhost", address="127.0.0.1")
"""This machine as it is: commands run unchanged, servers on 127.0.0.1."""


class HostNetwork(Started):
    """Hosts made of network namespaces on one bridge; as a context manager, removed with everything on them on exit.

    Parameters
    ----------
    tag : str
        Names the bridge, the namespaces (``<tag>-<host>``) and the veth ends: short (the kernel
        allows 15 characters for a link name) and unique on the machine (default: from this process's id and a count of its networks).
    """

    def __init__(self, tag: str = "") -> None:
        # A new tag and subnet per network of this process: a removed namespace lingers while its killed processes
        # exit, holding its veth's name and routes, so the next network must not reuse them.
        number = next(_NETWORK_NUMBERS)
        self.tag = tag or f"ns{os.getpid() % 100000}n{number}"
        octet = (os.getpid() + number) % _SUBNET_OCTET_SPAN + 1
        self.subnet = ipaddress.ip_network(f"10.{octet}.0.0/24")
        self.bridge = f"{self.tag}br"
        self.gateway = str(self.subnet[1])  # this process's address on the bridge
        self.hosts: dict[str, Host] = {}
        self._up = False

    def start(self) -> Self:
        """Make the bridge, with this process's address on it."""
        _ip("link", "add", self.bridge, "type", "bridge")
        self._up = True
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        """A new host ``name`` on the bridge, with the next free address of the subnet."""
        if not self._up:
            raise RuntimeError("the host network is not started")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        index = len(self.hosts) + 2  # .1 is the bridge's
        if index >= self.subnet.num_addresses - 1:
            raise ValueError(f"no address left in {self.subnet} for host {name!r}")
        namespace, link = f"{self.tag}-{name}", f"{self.tag}v{index}"
        address = str(self.subnet[index])
        _ip("netns", "add", namespace)
        self.hosts[name] = host = Host(name=name, address=address, namespace=namespace, link=link)
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("link", "set", link, "master", self.bridge, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        return host

    def stop(self) -> None:
        """Kill every process of every host, remove the namespaces (their veth pairs go with them) and the bridge."""
        for host in self.hosts.values():
            try:
                host.kill_all()
                _ip("netns", "delete", host.namespace)
            except RuntimeError:  # already gone
                pass
        self.hosts.clear()
        if self._up:
            try:
                _ip("link", "delete", self.bridge)
            except RuntimeError:
                pass
            self._up = False
