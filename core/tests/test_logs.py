"""Structured JSON logs."""

from __future__ import annotations

import json
import logging
import sys

from nightshift.core.logs import JsonFormatter


def test_record_becomes_one_json_line_with_extras() -> None:
    record = logging.makeLogRecord({"name": "nightshift.core.server", "levelname": "INFO", "msg": "rpc %s",
                                    "args": ("Infer",), "method": "Infer", "duration_ms": 1.5})
    entry = json.loads(JsonFormatter("bubbles").format(record))
    assert entry["service"] == "bubbles" and entry["msg"] == "rpc Infer" and entry["level"] == "info"
    assert entry["method"] == "Infer" and entry["duration_ms"] == 1.5
    assert entry["ts"].endswith("Z")


def test_exceptions_are_kept_in_the_log_entry() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    assert "ValueError: bad" in json.loads(JsonFormatter("x").format(record))["exc"]
