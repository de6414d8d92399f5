"""Everything a night needs on one machine: a local S3 server and the services as local processes.

The services are started through their own console scripts (``nightshift-ingest serve``,
``nightshift-<task> serve``), exactly as a container would run them, each on a free port of
127.0.0.1 with a Prometheus endpoint of its own, configured by environment (``NIGHTSHIFT_GRPC_*``,
``NIGHTSHIFT_METRICS_PORT``, ``NIGHTSHIFT_S3_*``). A service counts as started once its gRPC health
says SERVING; one that exits or stays unready is stopped and reported with the tail of its log.
Leaving the context stops every process it started (SIGTERM, then SIGKILL after a grace period),
also when the night failed, and then the S3 server.

With ``auth=True`` (``nightshift night``, ``nightshift bench``) the night is authenticated: a new signing
secret per run in a 0600 file (``<work dir>/auth/secret``, in a 0700 directory), every service started
with ``NIGHTSHIFT_AUTH_SECRET_FILE`` naming it (never on a command line), and :meth:`LocalNight.token`
issuing the tokens its callers get; :meth:`LocalNight.flow_environment` holds the flow's, one per role
it needs (``infer`` for Describe, Infer and ListTiles, ``ingest`` for the ingest writes), none ``admin``.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from nightshift.core.auth import (AUTH_MODE_ENV, AUTH_SECRET_ENV, AUTH_SECRET_FILE_ENV, AUTH_TOKEN_ENV, issue_token,
                                  role_token_env, write_secret_file)
from nightshift.core.children import end_with_parent, stop_child
from nightshift.core.client import TaskClient
from nightshift.core.s3server import LocalS3Server, free_port, start_local_s3
from nightshift.core.store import ObjectStore

__all__ = ["SCIENCE_TASKS", "ServiceCommand", "RunningService", "LocalNight", "Started", "console_script", "log_tail",
           "prefect_healthy", "run_json_command", "wait_until",
           "science_service_commands", "ingest_command", "tilestats_command"]

SCIENCE_TASKS = ("bubbles", "clusters", "filaments", "ghosts", "inclination")
_LOG_TAIL_CHARS = 1500


def wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    """Return once ``ready()``; raise RuntimeError once ``alive()`` is not, TimeoutError after ``timeout_s``
    (either with the tail of ``what``'s ``log``)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not alive():
            raise RuntimeError(f"{what} exited during start-up: {log_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s} s: {log_tail(log)}")
        time.sleep(0.1)


def log_tail(path: Path) -> str:
    """The end of the log file ``path`` ("" if there is none)."""
    return path.read_text(errors="replace")[-_LOG_TAIL_CHARS:].strip() if path.exists() else ""


class Started(abc.ABC):
    """As a context manager: started on entry (stopped again when the start fails half-way), stopped on exit."""

    @abc.abstractmethod
    def start(self) -> object: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@dataclasses.dataclass(frozen=True)
class ServiceCommand:
    """How to start one service: its name and the command line (the port comes from the environment)."""

    name: str
    argv: tuple[str, ...]


@dataclasses.dataclass
class RunningService:
    """A started service process, its ports and its log file."""

    command: ServiceCommand
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request_count(self, method: str) -> int:
        """RPCs of ``method`` (e.g. "Infer") this process has handled, whatever their status, from its metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("nightshift_grpc_requests_total{") and f'method="{method}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def log_tail(self) -> str:
        return log_tail(self.log_path)


def console_script(name: str) -> str | None:
    """The console script ``name`` of this environment, or None if it is not installed."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def run_json_command(argv: Sequence[str], *, timeout_s: float) -> dict[str, Any]:
    """Run a service command that prints its result as one JSON line last (``simulate-night``, ``bench`` ...); return it.

    Raises
    ------
    RuntimeError
        It failed, ran past ``timeout_s`` or printed no JSON line last (the message carries the tail of its output).
    """
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{shlex.join(argv)}: no result within {timeout_s} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise RuntimeError(f"{shlex.join(argv)} failed (exit status {done.returncode}): {tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise RuntimeError(f"{shlex.join(argv)}: its last line is not JSON: {lines[-1][:200]}") from None


def science_service_commands(tasks: Sequence[str] = SCIENCE_TASKS) -> tuple[list[ServiceCommand], dict[str, str]]:
    """``nightshift-<task> serve`` for each of ``tasks`` whose service is installed, and the reason for each one not."""
    commands, missing = [], {}
    for task in tasks:
        script = console_script(f"nightshift-{task}")
        if script is None:
            missing[task] = f"not installed here (no nightshift-{task} command)"
        else:
            commands.append(ServiceCommand(task, (script, "serve")))
    return commands, missing


def ingest_command() -> ServiceCommand:
    """``nightshift-ingest serve``.

    Raises
    ------
    FileNotFoundError
        The ingest service is not installed (the night cannot run without it).
    """
    script = console_script("nightshift-ingest")
    if script is None:
        raise FileNotFoundError("nightshift-ingest is not installed: pip install -e services/ingest")
    return ServiceCommand("ingest", (script, "serve"))


def tilestats_command(name: str, bands: Sequence[str]) -> ServiceCommand:
    """The tile-statistics data-quality service for tiles of ``bands`` (this package's ``serve-tilestats``)."""
    return ServiceCommand(name, (sys.executable, "-m", "nightshift.orchestration.cli", "serve-tilestats", "--bands", *bands))


def prefect_healthy(api_url: str) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class LocalNight:
    """A local S3 server and service processes, stopped together.

    Parameters
    ----------
    work_dir : Path
        Holds the S3 server's data (``s3/``) and the services' logs (``logs/``).
    s3_kind : str
        "rclone" (default) or "ceph".
    auth : bool
        Authenticate: a new secret for this night (``<work dir>/auth/secret``, 0600) that every service it
        starts checks tokens with (:meth:`token`, :meth:`flow_environment`). False (tests that call the
        services directly): the services start without one, on loopback, as the environment says.
    """

    def __init__(self, work_dir: Path, *, s3_kind: str = "rclone", auth: bool = False) -> None:
        self.work_dir = work_dir
        self.s3_kind = s3_kind
        self.auth = auth
        self._secret_file: Path | None = None
        self.s3: LocalS3Server | None = None
        self._store: ObjectStore | None = None
        self.services: dict[str, RunningService] = {}
        self.prefect_server: RunningService | None = None

    @property
    def store(self) -> ObjectStore:
        """A store on the running S3 server."""
        if self._store is None:
            raise RuntimeError("the local S3 server is not running")
        return self._store

    def environment(self) -> dict[str, str]:
        """The environment that points a process at this night's object store."""
        if self.s3 is None:
            raise RuntimeError("the local S3 server is not running")
        return {**os.environ, **self.s3.config.to_env()}

    @property
    def secret_file(self) -> Path:
        """This night's signing secret (0600), made on first use: a new one per :class:`LocalNight`.

        Raises
        ------
        RuntimeError
            The night is not authenticated (``auth=False``).
        """
        if not self.auth:
            raise RuntimeError("this night is not authenticated (LocalNight(auth=False))")
        if self._secret_file is None:
            self._secret_file = write_secret_file(self.work_dir / "auth" / "secret")
        return self._secret_file

    def token(self, *roles: str, subject: str = "nightshift-night", lifetime_s: float = 7 * 86400.0) -> str:
        """A bearer token carrying ``roles``, signed with this night's secret."""
        return issue_token(self.secret_file.read_bytes(), subject=subject, roles=roles, lifetime_s=lifetime_s)

    def flow_environment(self) -> dict[str, str]:
        """The nightly flow's tokens, one per role it needs (``NIGHTSHIFT_AUTH_TOKEN_INFER``, ``_INGEST``); none when
        the night is not authenticated. The flow gets no ``admin`` token: it never trains."""
        if not self.auth:
            return {}
        return {role_token_env(role): self.token(role, subject=f"nightly-flow-{role}") for role in ("infer", "ingest")}

    def service_environment(self) -> dict[str, str]:
        """The environment a service starts with: the store's, this night's secret file if authenticated, and no
        caller's token (a service needs none)."""
        env = {name: value for name, value in self.environment().items()
               if not (name == AUTH_TOKEN_ENV or name.startswith(AUTH_TOKEN_ENV + "_"))}
        if self.auth:
            env.pop(AUTH_SECRET_ENV, None)
            env.pop(AUTH_MODE_ENV, None)
            env[AUTH_SECRET_FILE_ENV] = str(self.secret_file)
        return env

    def start_s3(self) -> ObjectStore:
        """Start the S3 server (with its bucket) and return a store on it."""
        self.s3 = start_local_s3(self.s3_kind, self.work_dir / "s3")
        self._store = self.s3.store()
        return self._store

    def _spawn(self, command: ServiceCommand, port: int = 0, metrics_port: int = 0) -> RunningService:
        """Start ``command`` on ``port`` and ``metrics_port`` (0: free ones)."""
        port, metrics_port = port or free_port(), metrics_port or free_port()
        log_path = self.work_dir / "logs" / f"{command.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.service_environment(), "NIGHTSHIFT_GRPC_HOST": "127.0.0.1", "NIGHTSHIFT_GRPC_PORT": str(port),
               "NIGHTSHIFT_METRICS_PORT": str(metrics_port), "NIGHTSHIFT_GRPC_GRACE_S": "5"}
        with log_path.open("ab") as log:
            process = subprocess.Popen(end_with_parent(command.argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        return RunningService(command, process, port, metrics_port, log_path)

    def _wait_serving(self, service: RunningService, deadline: float) -> str:
        """"" once ``service`` is SERVING, else why it is not."""
        with TaskClient(service.target) as client:
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    return f"exited with status {service.process.returncode} during start-up: {service.log_tail()}"
                try:
                    client.wait_until_serving(timeout_s=min(1.0, max(0.0, deadline - time.monotonic())))
                    return ""
                except TimeoutError:
                    continue
        return f"not SERVING after the start-up timeout: {service.log_tail()}"

    def start_services(self, commands: Sequence[ServiceCommand], *, timeout_s: float = 240.0) -> dict[str, str]:
        """Start ``commands`` at once and wait until each serves; return {name: reason} of those that failed.

        Failed services are stopped; the others are in :attr:`services`. Call it from the main thread, or
        split it as :meth:`spawn_services` there and :meth:`wait_services` anywhere: only processes started by
        the main thread end with this one when it is killed (see :func:`nightshift.core.children.end_with_parent`).
        """
        return self.wait_services(self.spawn_services(commands), timeout_s=timeout_s)

    def spawn_services(self, commands: Sequence[ServiceCommand]) -> list[RunningService]:
        """Start ``commands`` at once, without waiting for them (:meth:`wait_services` does)."""
        return [self._spawn(c) for c in commands]

    def wait_services(self, spawned: Sequence[RunningService], *, timeout_s: float = 240.0) -> dict[str, str]:
        """Wait until each of ``spawned`` serves; return {name: reason} of those that failed (stopped)."""
        deadline = time.monotonic() + timeout_s
        failed = {}
        for service in spawned:
            reason = self._wait_serving(service, deadline)
            if reason:
                stop_child(service.process)
                failed[service.command.name] = reason
            else:
                self.services[service.command.name] = service
        return failed

    def kill(self, name: str) -> RunningService:
        """SIGKILL the service ``name`` (no drain), as a crash would; return it (for :meth:`restart`)."""
        service = self.services.pop(name)
        service.process.kill()
        service.process.wait()
        return service

    def restart(self, service: RunningService, *, timeout_s: float = 120.0, same_address: bool = False) -> RunningService:
        """Start ``service``'s command again and wait until it serves.

        On new ports, or with ``same_address`` on its old ones (a restarted pod behind the same address).

        Raises
        ------
        RuntimeError
            It did not come up.
        """
        ports = (service.port, service.metrics_port) if same_address else ()
        restarted = self._spawn(service.command, *ports)
        reason = self._wait_serving(restarted, time.monotonic() + timeout_s)
        if reason:
            stop_child(restarted.process)
            raise RuntimeError(f"{service.command.name} did not restart: {reason}")
        self.services[service.command.name] = restarted
        return restarted

    def start_prefect_server(self, *, timeout_s: float = 120.0) -> str:
        """Start the night's temporary Prefect server (SQLite, no UI) and return its API URL once it is healthy.

        It is the server Prefect itself would start on the first flow run (the same app, told it is
        ephemeral), but started here, so that it ends with this process when that is killed: Prefect's own
        leaves its server running.

        Raises
        ------
        RuntimeError, TimeoutError
            It exited during start-up, or was not healthy within ``timeout_s``.
        """
        prefect = console_script("prefect")
        if prefect is None:
            raise FileNotFoundError("the prefect command is not installed")
        port = free_port()
        log_path = self.work_dir / "logs" / "prefect-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = ServiceCommand("prefect-server", (prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"))
        env = {**os.environ, "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        with log_path.open("ab") as log:
            process = subprocess.Popen(end_with_parent(command.argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.prefect_server = RunningService(command, process, port, 0, log_path)
        api_url = f"http://127.0.0.1:{port}/api"
        wait_until(lambda: prefect_healthy(api_url), lambda: process.poll() is None, timeout_s, "the Prefect server", log_path)
        return api_url

    def stop(self) -> None:
        """Stop every service and the Prefect server (SIGTERM, SIGKILL after a grace period), then the S3 server."""
        for service in self.services.values():
            stop_child(service.process)
        self.services.clear()
        if self.prefect_server is not None:
            stop_child(self.prefect_server.process)
            self.prefect_server = None
        if self.s3 is not None:
            self.s3.stop()
            self.s3, self._store = None, None

    def __enter__(self) -> LocalNight:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


