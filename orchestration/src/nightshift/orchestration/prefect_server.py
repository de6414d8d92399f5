"""A persistent orchestration tier on this machine: PostgreSQL, a Prefect server on it, a process work pool and workers.

Started and stopped by the project, like the local S3 server: :class:`PostgresServer` runs Debian's
PostgreSQL (``initdb``, then ``postgres`` on a free port of 127.0.0.1 with its socket in the data
directory; as the ``postgres`` user when this process is root, since PostgreSQL refuses to run as
root), and :class:`PrefectTier` runs ``prefect server start`` on it, creates a process work pool,
starts ``prefect worker start`` processes and deploys the flows there (the ``nightly`` deployment on
its cron schedule, as ``nightshift deploy`` does: :meth:`PrefectTier.deploy`). :meth:`PrefectTier.run_night` runs a night through
the server and workers: the flow run happens in a worker's subprocess, not in this process. Every
process ends with this one, also when it is killed (``end_with_parent``).

Each process runs on a :class:`~nightshift.orchestration.hosts.Host`: this machine by default, or the
network namespaces of a :class:`~nightshift.orchestration.hosts.HostNetwork` (PostgreSQL and the server
on one host, each worker on its own), as the multi-host tests place them. Each worker polls the pool's
default queue (the cron runs) and a queue of its own, so :meth:`PrefectTier.run_night` knows which
worker holds its flow run and runs the night again elsewhere when that worker's host is lost.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from glob import glob
from pathlib import Path
from typing import IO, TYPE_CHECKING
from uuid import UUID

from nightshift.core.children import end_with_parent, stop_child
from nightshift.core.s3server import free_port
from nightshift.orchestration.flowstart import WARM_COMMAND, ZYGOTE_ENV
from nightshift.orchestration.hosts import LOCALHOST, Host
from nightshift.orchestration.launcher import Started, console_script, prefect_healthy, wait_until

if TYPE_CHECKING:
    from nightshift.orchestration.config import NightConfig
    from nightshift.orchestration.report import NightSummary

__all__ = ["PostgresServer", "PrefectTier", "postgres_bin_dir"]

_LOG_TAIL_CHARS = 2000
_NIGHTLY = "nightshift-nightly/nightly"
_DEFAULT_QUEUE = "default"


def postgres_bin_dir() -> Path | None:
    """Where PostgreSQL's server binaries are (Debian's newest ``/usr/lib/postgresql/<major>/bin``, else PATH), or None."""
    debian = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    found = debian[-1] if debian else shutil.which("initdb")
    return Path(found).parent if found else None


def _service_user() -> str | None:
    """The user PostgreSQL runs as: None (this one) unless this process is root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):  # Debian's package creates "postgres"
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


class PostgresServer(Started):
    """A PostgreSQL server on 127.0.0.1 holding one database, password-protected (SCRAM).

    Parameters
    ----------
    data_dir : path, optional
        The cluster's directory (default: a temporary one, removed on stop). A directory that
        already holds a cluster made by this class is started as it is: its databases persist.
        When this process is root the directory belongs to the service user, which must be able
        to reach it (a directory under a root-only one is not).
    database : str
        The database created for the caller.
    host : Host
        Where it runs (default: this machine); it listens on that host's 127.0.0.1, for a server beside it.
    """

    superuser = "nightshift"

    def __init__(self, data_dir: str | Path | None = None, *, database: str = "prefect", host: Host = LOCALHOST) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (no initdb): scripts/setup.sh installs Debian's postgresql")
        self.bin_dir = bin_dir
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="nightshift-postgres-"))
        self.database = database
        self.host = host
        self.user = _service_user()
        self.port = 0
        self._password_file = self.data_dir / "nightshift-password"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database through asyncpg (what Prefect's server takes)."""
        if not self.port:
            raise RuntimeError("PostgreSQL is not running")
        return f"postgresql+asyncpg://{self.superuser}:{self._password_file.read_text().strip()}@127.0.0.1:{self.port}/{self.database}"

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self._password_file.read_text().strip()}

    def start(self) -> str:
        """Initialise the cluster if new, start the server, create the database if missing; return :attr:`url`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.data_dir, self.user, pwd.getpwnam(self.user).pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.port = free_port()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.host.command(end_with_parent([str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                                               "-k", str(self.data_dir), "-c", "listen_addresses=127.0.0.1"], user=self.user)),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        process = self._process
        ready = self.host.command([str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)])
        wait_until(lambda: subprocess.run(ready, check=False).returncode == 0, lambda: process.poll() is None, 60.0,
              "PostgreSQL", self.log_path)
        exists = self._client("psql", "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if not exists:
            self._client("createdb", self.database)
        return self.url

    def _initdb(self) -> None:
        password = secrets.token_hex(16)
        # initdb wants an empty directory and the password in a file, never on a command line: a file of its own first.
        with tempfile.NamedTemporaryFile("w", prefix="nightshift-postgres-password-") as pwfile:
            pwfile.write(password + "\n")
            pwfile.flush()
            if self.user is not None:
                shutil.chown(pwfile.name, self.user)
            done = subprocess.run(
                self.host.command(end_with_parent([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                                                   "-E", "UTF8", f"--pwfile={pwfile.name}", "--auth-local=scram-sha-256",
                                                   "--auth-host=scram-sha-256", "--no-instructions"], user=self.user)),
                capture_output=True, text=True, check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"initdb {self.data_dir} failed: {(done.stderr or done.stdout).strip()[-_LOG_TAIL_CHARS:]}")
        # Kept beside the cluster (0600), so a later start on the same directory can connect.
        self._password_file.write_text(password + "\n")
        self._password_file.chmod(0o600)

    def _client(self, program: str, *args: str) -> str:
        """Run PostgreSQL's client ``program`` on the server's host as the superuser; return its output, stripped."""
        argv = [str(self.bin_dir / program), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser, *args]
        return subprocess.run(self.host.command(argv), env=self._client_env(), capture_output=True, text=True,
                              check=True).stdout.strip()

    def query(self, sql: str) -> str:
        """``sql``'s result in the database, as ``psql -tA`` prints it."""
        return self._client("psql", "-d", self.database, "-tAc", sql)

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open sessions are ended); remove a temporary data directory."""
        if self._process is not None:
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to disconnect.
            stop_child(self._process, grace_s=30.0, signal_number=signal.SIGINT)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = 0
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class PrefectTier(Started):
    """PostgreSQL, a Prefect server on it, a process work pool and its workers, as processes on hosts.

    Beside each worker, on its host, a zygote that the deployments' flow runs fork from
    (:mod:`~nightshift.orchestration.flowstart`: no new interpreter and imports per flow run).

    Parameters
    ----------
    work_dir : Path
        Holds the logs (``server.log``, ``worker-<n>.log``, ``zygote-<n>.log``), the zygotes' sockets, ``PREFECT_HOME`` of the server and the
        workers, and the flow runs' results (``results/``, read back by :meth:`run_night`): a
        directory every host sees (namespaces share this machine's files).
    workers : int
        ``prefect worker start`` processes on the pool (when ``worker_hosts`` is not given).
    pool : str
        The process work pool (created if missing).
    postgres_dir : path, optional
        PostgreSQL's data directory (default: a temporary one; see :class:`PostgresServer`).
    server_host : Host
        Where PostgreSQL and the server run; the server listens on the host's address (default: this machine).
    worker_hosts : sequence of Host, optional
        One worker on each (default: ``workers`` workers on this machine).
    worker_heartbeat_s : float
        How often a worker tells the server it is alive; the server counts it offline after three
        beats missed, which is how soon :meth:`run_night` notices a lost worker.
    worker_env : mapping, optional
        Added to the workers' environment, which their flow runs inherit (e.g. the ``NIGHTSHIFT_S3_*``
        of a store on another host).
    """

    def __init__(self, work_dir: Path, *, workers: int = 2, pool: str = "nightshift-local", postgres_dir: Path | None = None,
                 server_host: Host = LOCALHOST, worker_hosts: Sequence[Host] | None = None,
                 worker_heartbeat_s: float = 5.0, worker_env: Mapping[str, str] | None = None) -> None:
        self.worker_hosts = tuple(worker_hosts) if worker_hosts is not None else (LOCALHOST,) * workers
        if not self.worker_hosts:
            raise ValueError(f"workers must be at least 1, got {workers if worker_hosts is None else 0}")
        self.work_dir = work_dir
        self.workers = len(self.worker_hosts)
        self.pool = pool
        self.server_host = server_host
        self.worker_heartbeat_s = worker_heartbeat_s
        self.worker_env = dict(worker_env or {})
        self.postgres = PostgresServer(postgres_dir, host=server_host)
        self.port = 0
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def api_url(self) -> str:
        if not self.port:
            raise RuntimeError("the Prefect server is not running")
        return f"http://{self.server_host.address}:{self.port}/api"

    def worker_name(self, number: int) -> str:
        """The name of worker ``number``, also the name of its own work queue."""
        return f"{self.pool}-{number}"

    def _prefect_env(self) -> dict[str, str]:
        """What the server, the workers and their flow runs share: one home, results kept where this process reads them."""
        return {
            "PREFECT_HOME": str(self.work_dir / "home"), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true", "PREFECT_LOCAL_STORAGE_PATH": str(self.work_dir / "results"),
        }

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """This process's Prefect client talks to the tier's server (and reads its flow runs' results) inside."""
        from prefect.settings import (PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_PERSIST_BY_DEFAULT,
                                      temporary_settings)

        with temporary_settings({PREFECT_API_URL: self.api_url, PREFECT_LOCAL_STORAGE_PATH: self.work_dir / "results",
                                 PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
            yield

    def _spawn(self, name: str, host: Host, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.work_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(host.command(end_with_parent(argv)), env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._processes.append(process)
        return process

    def start(self, *, timeout_s: float = 120.0) -> str:
        """Start everything; return the server's API URL once the workers are polling the pool."""
        prefect = console_script("prefect")
        if prefect is None:
            raise FileNotFoundError("the prefect command is not installed")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.postgres.start()
        self.port = free_port()
        server = self._spawn("server", self.server_host,
                             [prefect, "server", "start", "--host", self.server_host.address, "--port", str(self.port), "--no-ui"],
                             {**self._prefect_env(), "PREFECT_API_DATABASE_CONNECTION_URL": database_url})
        wait_until(lambda: prefect_healthy(self.api_url), lambda: server.poll() is None, timeout_s, "the Prefect server", self.work_dir / "server.log")
        self._ensure_pool()
        # A worker asks for due runs twice a second (Prefect's default is 10 s, all of it added to a night's wall time).
        worker_env = {**self.worker_env, **self._prefect_env(), "PREFECT_API_URL": self.api_url, "PREFECT_WORKER_QUERY_SECONDS": "0.5",
                      "PREFECT_WORKER_HEARTBEAT_SECONDS": str(self.worker_heartbeat_s)}
        zygotes = [self.work_dir / f"zygote-{number}.sock" for number in range(self.workers)]
        for number, (host, path) in enumerate(zip(self.worker_hosts, zygotes)):
            path.unlink(missing_ok=True)
            self._spawn(f"zygote-{number}", host, [sys.executable, "-m", "nightshift.orchestration.flowstart", "--serve", str(path)],
                        worker_env)
        wait_until(lambda: all(p.exists() for p in zygotes), lambda: all(p.poll() is None for p in self._processes),
                   timeout_s, "the flow zygotes", self.work_dir / "zygote-0.log")
        for number, (host, path) in enumerate(zip(self.worker_hosts, zygotes)):
            name = self.worker_name(number)
            self._spawn(f"worker-{number}", host, [prefect, "worker", "start", "--pool", self.pool, "--name", name,
                                                   "--work-queue", _DEFAULT_QUEUE, "--work-queue", name],
                        {**worker_env, ZYGOTE_ENV: str(path)})
        wait_until(lambda: len(self.online_workers()) == self.workers, lambda: all(p.poll() is None for p in self._processes),
              timeout_s, "the Prefect workers", self.work_dir / "worker-0.log")
        return self.api_url

    def _ensure_pool(self) -> None:
        """The process pool, with the default queue and one queue per worker."""
        from prefect import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        with self.settings(), get_client(sync_client=True) as client:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_pool(WorkPoolCreate(name=self.pool, type="process"))
            for number in range(self.workers):
                with contextlib.suppress(ObjectAlreadyExists):
                    client.create_work_queue(self.worker_name(number), work_pool_name=self.pool)

    def online_workers(self) -> list[str]:
        """Names of the pool's workers that the server sees online."""
        from prefect import get_client

        with self.settings(), get_client(sync_client=True) as client:
            return sorted(w.name for w in client.read_workers_for_work_pool(self.pool) if w.status == "ONLINE")

    def deploy(self, config: NightConfig, *, warm_starts: bool = True) -> None:
        """The ``nightly`` (cron) and ``train-<service>`` deployments of ``config`` on the pool, as ``nightshift deploy`` makes them.

        With ``warm_starts`` their flow runs fork from the worker's zygote (:mod:`~nightshift.orchestration.flowstart`);
        without, each starts a new interpreter (the process worker's own ``python -m prefect.engine``).
        """
        from nightshift.orchestration.deployments import flow_deployments

        # What prefect.deploy does for a process pool (no image to build), without its tables on stdout.
        with self.settings():
            for deployment in flow_deployments(config, job_variables={"command": WARM_COMMAND} if warm_starts else None):
                deployment.apply(work_pool_name=self.pool)

    def run_night(self, night: str, *, timeout_s: float = 1800.0, poll_s: float = 0.1,
                  worker_check_s: float = 2.0) -> tuple[NightSummary, UUID]:
        """Run the deployed ``nightly`` for ``night`` on an online worker; return the night's summary and the flow run's id.

        The run goes to one worker's own queue. When that worker goes offline before the run ends
        (its host lost), the run is marked CRASHED and the night runs again on another online
        worker: the flow is idempotent (every Infer call's results are recorded by content, so the
        new run makes only the calls not yet recorded, and a run's outputs are derived from its
        inputs), so the night ends with the outputs it would have had.

        Raises
        ------
        NightIncomplete
            The flow run did not complete (its report says why; the message names its state), or no worker was left.
        TimeoutError
            No run completed within ``timeout_s``.
        """
        from prefect import get_client
        from prefect.deployments import run_deployment
        from prefect.states import Crashed

        from nightshift.orchestration.nightly import NightIncomplete

        deadline = time.monotonic() + timeout_s
        lost: list[str] = []
        with self.settings(), get_client(sync_client=True) as client:
            while True:
                workers = [w for w in self.online_workers() if w not in lost]
                if not workers:
                    raise NightIncomplete(f"night {night}: no worker of pool {self.pool} online (lost: {', '.join(lost)})")
                worker = workers[0]
                flow_run = run_deployment(_NIGHTLY, parameters={"night": night}, timeout=0, work_queue_name=worker)
                checked = time.monotonic()
                while not (state := client.read_flow_run(flow_run.id).state) or not state.is_final():
                    if time.monotonic() - checked > worker_check_s:  # the run's state every poll, its worker less often
                        checked = time.monotonic()
                        if worker not in self.online_workers():
                            client.set_flow_run_state(flow_run.id, Crashed(message=f"worker {worker} went offline"), force=True)
                            lost.append(worker)
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"night {night}: flow run {flow_run.name} not done after {timeout_s} s")
                    time.sleep(poll_s)
                else:
                    if not state.is_completed():
                        raise NightIncomplete(f"flow run {flow_run.name} of night {night}: {state.type.value} ({state.message});"
                                              f" worker logs in {self.work_dir}")
                    return state.result(), flow_run.id

    def stop(self) -> None:
        """Stop the workers (they end their flow runs' processes), then the server, then PostgreSQL."""
        for process in reversed(self._processes):
            stop_child(process, grace_s=20.0)
        self._processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        self.port = 0
        self.postgres.stop()
