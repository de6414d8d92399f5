"""Child processes that end with the process that started them, even when it is SIGKILLed.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is set by util-linux's ``setpriv``, which then
execs the command (same process, same pid). Not from a ``preexec_fn``: that forces ``fork()``, under which
gRPC's fork handlers restart its poller in the child, and ``close_fds`` then closes the poller's epoll
descriptor under it (SIGABRT before the command starts). The signal comes when the thread that started
the child exits, so it is set only for children started from the main thread (whose end is the
process's); elsewhere, and without ``setpriv``, commands are left as they are.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Sequence

__all__ = ["end_with_parent"]


def end_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that the child gets SIGTERM when its parent dies (unchanged where that cannot be arranged)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]
