"""Warm starts of flow runs on a process worker: fork a process that has imported Prefect and the flows.

A process worker runs each flow run as ``python -m prefect.engine``: a new interpreter that imports
Prefect and the flow's modules before it does any work, 2-5 s on this machine and most of Prefect's
overhead for a small night on a persistent server (issue 22). Beside each worker a *zygote*
(``python -m nightshift.orchestration.flowstart --serve SOCKET``) imports them once and waits on a
Unix socket. The deployments' flow-run command is this module without arguments, a client that
imports nothing heavy: it sends the zygote its environment, working directory and standard streams
(``SCM_RIGHTS``); the zygote forks a supervisor, which forks the engine process (``prefect.engine``'s
main, run with the flow run's environment and settings) and reports its exit status back. The
client forwards SIGTERM/SIGINT to the engine process and exits with its status, so the worker sees
an ordinary flow-run process. When the client is killed, its connection closes and the supervisor
ends the engine process; when no zygote answers, the client execs the cold ``prefect.engine``.

A zygote serves the code it imported at its start: restart the worker's zygote with the worker when
the installed package changes (``PrefectTier`` starts and stops them together).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time

ZYGOTE_ENV = "NIGHTSHIFT_FLOW_ZYGOTE"
WARM_COMMAND = f"{sys.executable} -m nightshift.orchestration.flowstart"
"""The flow-run command of the deployments on a process pool whose workers have zygotes (``command`` job variable)."""
"""Path of the Unix socket of the worker's zygote (set in the worker's environment, which its flow runs inherit)."""

_HEADER = struct.Struct("!I")
_KILL_GRACE_S = 10.0


def _send_message(sock: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    payload = json.dumps(message).encode()
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _receive_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[dict[str, object] | None, list[int]]:
    """One message (None at end of stream) and the file descriptors that came with its first bytes."""
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, max_fds)

    def complete() -> bool:
        return len(data) >= _HEADER.size and len(data) >= _HEADER.size + _HEADER.unpack_from(data)[0]

    while data and not complete():
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    if not complete():
        return None, fds
    return json.loads(data[_HEADER.size : _HEADER.size + _HEADER.unpack_from(data)[0]]), fds


# -- the client: the flow-run command ---------------------------------------------------------------


def _cold_start() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def run_flow_run() -> int:
    """Run this process's flow run (``PREFECT__FLOW_RUN_ID``) in a fork of the zygote; its exit status."""
    path = os.environ.get(ZYGOTE_ENV)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if not path:
            raise ConnectionRefusedError
        sock.connect(path)
        _send_message(sock, {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]}, [0, 1, 2])
        started, _ = _receive_message(sock)
    except OSError:
        started = None
    if started is None:
        sock.close()
        _cold_start()  # no zygote: the process worker's own command
    pid = int(started["pid"])  # type: ignore[index, call-overload]

    def forward(number: int, _frame: object) -> None:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, forward)
    ended, _ = _receive_message(sock)
    return int(ended["status"]) if ended else 1  # type: ignore[index, call-overload]


# -- the zygote -------------------------------------------------------------------------------------


def _exit_status(wait_status: int) -> int:
    """A shell's exit status: the code, or 128 + the signal that ended the process."""
    return os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else 128 + os.WTERMSIG(wait_status)


def _run_engine(request: dict[str, object], fds: list[int]) -> None:
    """In the forked engine process: become the flow run's process, then run Prefect's engine main."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    os.chdir(str(request["cwd"]))
    sys.argv = ["prefect.engine", *request["argv"]]  # type: ignore[misc]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    status = 0
    try:
        import runpy

        from prefect.context import SettingsContext, get_settings_context
        from prefect.settings import Settings

        with SettingsContext(profile=get_settings_context().profile, settings=Settings()):  # this run's settings
            runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as the process would: a traceback and status 1
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _supervise(connection: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """In the forked supervisor: fork the engine process, tell the client its pid, then its exit status."""
    engine = os.fork()
    if engine == 0:
        connection.close()
        _run_engine(request, fds)
    for fd in fds:
        os.close(fd)
    flow_run = dict(request["env"]).get("PREFECT__FLOW_RUN_ID")  # type: ignore[call-overload]
    print(f"flow run {flow_run}: engine process {engine} forked", flush=True)
    _send_message(connection, {"pid": engine})
    deadline = None
    while True:
        done, wait_status = os.waitpid(engine, os.WNOHANG)
        if done:
            status = _exit_status(wait_status)
            print(f"flow run {flow_run}: engine process {engine} exited with status {status}", flush=True)
            try:
                _send_message(connection, {"status": status})
            except OSError:
                pass
            os._exit(0)
        readable, _, _ = select.select([connection], [], [], 0.1)
        if readable and deadline is None and not connection.recv(1):  # the client is gone: end its flow run
            os.kill(engine, signal.SIGTERM)
            deadline = time.monotonic() + _KILL_GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            os.kill(engine, signal.SIGKILL)


def serve(path: str) -> None:
    """Import Prefect and the flows, then fork one supervised engine process per client on ``path``."""
    import importlib
    import threading

    for module in ("prefect.engine", "prefect.flow_engine", "nightshift.orchestration.nightly", "nightshift.orchestration.training"):
        importlib.import_module(module)  # what each flow run would import

    if threading.active_count() != 1:  # a fork copies only the forking thread: none may hold a lock then
        raise RuntimeError(f"the flow zygote has {threading.active_count()} threads after its imports; it forks only with one")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    if os.path.exists(path):
        os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(16)
        print(f"flow zygote ready on {path}", flush=True)
        while True:
            connection, _ = listener.accept()
            with connection:
                request, fds = _receive_message(connection, max_fds=3)
                if request is None or len(fds) != 3:
                    for fd in fds:
                        os.close(fd)
                    continue
                if os.fork() == 0:
                    try:
                        listener.close()
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        _supervise(connection, request, fds)
                    finally:
                        os._exit(1)  # never back into the zygote's loop
                for fd in fds:
                    os.close(fd)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        sys.exit(run_flow_run())


if __name__ == "__main__":
    main()
