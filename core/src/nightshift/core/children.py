"""Child processes that end with the process that started them, even when it is SIGKILLed.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is set by util-linux's ``setpriv``, which then
execs the command (same process, same pid). Not from a ``preexec_fn``: that forces ``fork()``, under which
gRPC's fork handlers restart its poller in the child, and ``close_fds`` then closes the poller's epoll
descriptor under it (SIGABRT before the command starts). The signal comes when the thread that started
the child exits, so it is set only for children started from the main thread (whose end is the
process's); elsewhere, and without ``setpriv``, commands are left as they are. A command may also run as
another user (PostgreSQL refuses to run as root): one ``setpriv`` switches the user first and sets the
signal after, since a change of user clears it.
"""

from __future__ import annotations

import pwd
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

__all__ = ["end_with_parent", "stop_child"]


def end_with_parent(argv: Sequence[str], *, user: str | None = None) -> list[str]:
    """``argv`` run so that the child gets SIGTERM when its parent dies (unchanged where that cannot be arranged).

    ``user``: run it as this user, with their primary group and groups (the caller must be root).

    Raises
    ------
    FileNotFoundError
        ``user`` is given and ``setpriv`` is not installed.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    options: list[str] = []
    if user is not None:
        if setpriv is None:
            raise FileNotFoundError(f"running a command as {user!r} needs util-linux's setpriv")
        options += ["--reuid", user, "--regid", str(pwd.getpwnam(user).pw_gid), "--init-groups"]
    if setpriv is not None and threading.current_thread() is threading.main_thread():
        options += ["--pdeathsig", "TERM"]
    return [setpriv, *options, "--", *argv] if options else list(argv)


def stop_child(process: subprocess.Popen, *, grace_s: float = 10.0, signal_number: int = signal.SIGTERM) -> None:
    """Send ``signal_number`` to a running ``process`` and wait for it; SIGKILL it if it is still running after ``grace_s``."""
    if process.poll() is None:
        process.send_signal(signal_number)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
