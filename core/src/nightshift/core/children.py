"""Child processes that end with the process that started them, even when it is SIGKILLed.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is delivered when the thread that forked
the child exits, so it is set only for children started from the main thread (whose end is the
process's); elsewhere, and on other systems, children are left as they are.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["end_with_parent"]

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def end_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child get SIGTERM when its parent dies, or None."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    return _set_parent_death_signal
