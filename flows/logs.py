"""Logging set-up for the worker: ``--log-level`` and ``--log-format text|json``.

JSON lines carry ``ts`` (UTC, ``Z``), ``level``, ``logger``, ``message`` and, for an
exception, ``exc``. Credentials in URLs (``redis://:secret@host``) are masked in every
line, text or JSON, so a logged connection string cannot leak a password.

>>> _mask("cannot reach redis://:hunter2@10.0.0.5:6379/0")
'cannot reach redis://:***@10.0.0.5:6379/0'
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from audienceflow.flows.redact import redact

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")


def _mask(text: str) -> str:
    """No password of a URL in a log line (the one ``redact`` of the package)."""
    return redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, keys sorted."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[
                :-6
            ]
            + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        if record.exc_info:
            out["exc"] = _mask(self.formatException(record.exc_info))
        return orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send the root logger to stderr at ``level`` in ``fmt`` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
