"""A night spread over several hosts of one machine: object store, ingest, replicated services, Prefect tier.

:class:`MultiHostNight` places, each on a network namespace of its own (:mod:`.hosts`):

- ``storage``: the S3 server (``rclone serve s3`` on the host's address);
- ``ingest``: the ingest service;
- ``orchestra``: PostgreSQL and the persistent Prefect server on it (:class:`.prefect_server.PrefectTier`);
- ``worker-0``, ``worker-1``, ...: one Prefect process worker each, whose flow runs run there too;
- ``<service>-0``, ``<service>-1``, ...: the replicas of each science service, every one on its own host,
  all on the same port, so the night reaches a service as one round-robin target
  (``ipv4:a:p,b:p``, as a headless Service's ``dns:///`` name gives in Kubernetes).

Every process reaches the others by address through the bridge, as separate machines would; this
process (the test, the operator) sits on the bridge too. The services listen on more than loopback, so
the night is authenticated as ``nightshift night`` is: a new signing secret (``<work dir>/auth/secret``,
0600) that every service checks, and the flow runs' ``infer`` and ``ingest`` tokens in the workers'
environment. Every host runs one code version, read once at the start (``NIGHTSHIFT_CODE_VERSION``,
as an image sets it): runs' ids and catalogues name it, and the checkout may change meanwhile.
Leaving the context kills every host.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

from nightshift.core.auth import AUTH_SECRET_FILE_ENV, issue_token, role_token_env, write_secret_file
from nightshift.core.children import end_with_parent
from nightshift.core.client import TaskClient
from nightshift.core.s3server import RcloneS3Server
from nightshift.core.store import ObjectStore, StoreConfig
from nightshift.core.version import code_version
from nightshift.orchestration.hosts import Host, HostNetwork
from nightshift.orchestration.launcher import ServiceCommand, Started, ingest_command
from nightshift.orchestration.prefect_server import PrefectTier

__all__ = ["MultiHostNight", "ReplicatedService"]

S3_PORT = 9000
GRPC_PORT = 50051
METRICS_PORT = 9100


@dataclasses.dataclass(frozen=True)
class ReplicatedService:
    """A service started on several hosts: its command, its hosts (one replica each) and its round-robin target."""

    command: ServiceCommand
    hosts: tuple[Host, ...]

    @property
    def target(self) -> str:
        """Every replica's address, for a round-robin channel."""
        return "ipv4:" + ",".join(f"{h.address}:{GRPC_PORT}" for h in self.hosts)


class MultiHostNight(Started):
    """The hosts of a night, started in order: network, storage, ingest, services, Prefect tier.

    Parameters
    ----------
    work_dir : Path
        The S3 server's data (``s3/``), every process's log (``logs/``) and the Prefect tier's files (``prefect/``).
    services : sequence of ServiceCommand
        Science services, each started as ``replicas`` replicas on hosts of their own.
    replicas : int
        Replicas of each service.
    workers : int
        Prefect worker hosts.
    service_env : mapping
        Added to every science service's environment (e.g. ``NIGHTSHIFT_BATCH_MAX_DELAY_MS``).
    """

    def __init__(self, work_dir: Path, services: Sequence[ServiceCommand], *, replicas: int = 2, workers: int = 2,
                 service_env: Mapping[str, str] | None = None, worker_heartbeat_s: float = 3.0) -> None:
        if replicas < 1 or workers < 1:
            raise ValueError(f"replicas and workers must be at least 1, got {replicas} and {workers}")
        self.work_dir = work_dir
        self.network = HostNetwork()
        self._service_commands = tuple(services)
        self._replicas = replicas
        self._workers = workers
        self._service_env = dict(service_env or {})
        self._worker_heartbeat_s = worker_heartbeat_s
        self.store_config: StoreConfig | None = None
        self.ingest: ReplicatedService | None = None
        self.services: dict[str, ReplicatedService] = {}
        self.tier: PrefectTier | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._secret_file = work_dir / "auth" / "secret"
        self._code_version = {"NIGHTSHIFT_CODE_VERSION": code_version()}

    def host(self, name: str) -> Host:
        return self.network.hosts[name]

    @property
    def store(self) -> ObjectStore:
        """A store on the storage host's S3 server, from this process."""
        if self.store_config is None:
            raise RuntimeError("the storage host is not started")
        return ObjectStore(self.store_config)

    def environment(self) -> dict[str, str]:
        """What points a process at the storage host's S3 server."""
        if self.store_config is None:
            raise RuntimeError("the storage host is not started")
        return self.store_config.to_env()

    def _spawn(self, name: str, host: Host, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.work_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        self._logs.append(log)
        process = subprocess.Popen(host.command(end_with_parent(list(argv))), env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._processes[name] = process
        return process

    def _start_storage(self) -> None:
        host = self.network.add("storage")
        access_key, secret_key = "nightshift", secrets.token_hex(16)
        data_dir = self.work_dir / "s3"
        data_dir.mkdir(parents=True, exist_ok=True)
        # the key pair in rclone's environment, never on its command line (as RcloneS3Server starts it)
        self._spawn("storage", host, [RcloneS3Server.executable(), "serve", "s3", "--addr", f"{host.address}:{S3_PORT}",
                                      "--log-level", "ERROR", "--ignore-checksum", str(data_dir)],
                    {"RCLONE_AUTH_KEY": f'"{access_key},{secret_key}"'})
        self.store_config = StoreConfig(endpoint=f"{host.address}:{S3_PORT}", access_key=access_key, secret_key=secret_key)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.store.ensure_bucket()
                return
            except Exception:  # noqa: BLE001 - any failure while it starts; the last one is raised at the deadline
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _start_replicas(self, command: ServiceCommand, count: int, env: Mapping[str, str]) -> ReplicatedService:
        hosts = tuple(self.network.add(f"{command.name}-{n}") for n in range(count))
        for number, host in enumerate(hosts):
            self._spawn(f"{command.name}-{number}", host, command.argv,
                        {**self.environment(), **self._code_version, **env, AUTH_SECRET_FILE_ENV: str(self._secret_file), "NIGHTSHIFT_GRPC_HOST": host.address, "NIGHTSHIFT_GRPC_PORT": str(GRPC_PORT),
                         "NIGHTSHIFT_METRICS_PORT": str(METRICS_PORT), "NIGHTSHIFT_GRPC_GRACE_S": "5"})
        return ReplicatedService(command, hosts)

    def _wait_serving(self, services: Sequence[ReplicatedService], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for host in (h for s in services for h in s.hosts):
            process = self._processes[host.name]
            with TaskClient(f"{host.address}:{GRPC_PORT}") as client:
                while process.poll() is None:
                    try:
                        client.wait_until_serving(timeout_s=1.0)
                        break
                    except TimeoutError:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{host.name} not SERVING after {timeout_s} s: {self._log_tail(host.name)}") from None
                else:
                    raise RuntimeError(f"{host.name} exited with status {process.returncode}: {self._log_tail(host.name)}")

    def _log_tail(self, name: str) -> str:
        return (self.work_dir / "logs" / f"{name}.log").read_text(errors="replace")[-1500:].strip()

    def flow_environment(self) -> dict[str, str]:
        """What a flow run needs: the store, and its tokens (``infer`` for Describe and Infer, ``ingest`` for the ingest writes)."""
        secret = self._secret_file.read_bytes()
        tokens = {role_token_env(role): issue_token(secret, subject=f"nightly-flow-{role}", roles=(role,))
                  for role in ("infer", "ingest")}
        return {**self.environment(), **self._code_version, **tokens}

    def start(self, *, timeout_s: float = 180.0) -> Self:
        """Start every host; return once the services serve and the workers poll the pool."""
        self.network.start()
        write_secret_file(self._secret_file)
        self._start_storage()
        self.ingest = self._start_replicas(ingest_command(), 1, {})
        self.services = {c.name: self._start_replicas(c, self._replicas, self._service_env) for c in self._service_commands}
        orchestra = self.network.add("orchestra")
        workers = [self.network.add(f"worker-{n}") for n in range(self._workers)]
        # The workers' flow runs inherit their environment.
        self.tier = PrefectTier(self.work_dir / "prefect", server_host=orchestra, worker_hosts=workers,
                                worker_heartbeat_s=self._worker_heartbeat_s, worker_env=self.flow_environment())
        self.tier.start(timeout_s=timeout_s)
        self._wait_serving([self.ingest, *self.services.values()], timeout_s)
        return self

    def stop(self) -> None:
        """Stop the Prefect tier, then kill every host (its namespace goes), then close the logs."""
        if self.tier is not None:
            self.tier.stop()
            self.tier = None
        self.network.stop()
        for process in self._processes.values():
            process.wait()
        self._processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
