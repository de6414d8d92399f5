"""Progress of a night as it runs, for a display in the same process (the demo's rich progress bars).

The flow's tasks report what they finish; whoever wants to show it subscribes. Nobody listens in a
deployed run: there, the Prefect logs and the report are the record.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ProgressEvent", "report_progress", "listening"]


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """``done`` more units finished in the bar named ``bar`` (e.g. "ingest", "infer bubbles").

    ``total`` is the bar's total number of units when the reporter knows it, else 0.
    """

    bar: str
    done: int
    total: int


_lock = threading.Lock()
_listeners: list[Callable[[ProgressEvent], None]] = []


def report_progress(bar: str, done: int, total: int) -> None:
    """Tell the listeners (if any) that ``done`` more units of ``bar`` finished (``total``: its total, or 0)."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(ProgressEvent(bar, done, total))


@contextmanager
def listening(listener: Callable[[ProgressEvent], None]) -> Iterator[None]:
    """Call ``listener`` with every progress event reported inside the block (from any thread)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
