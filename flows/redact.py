"""Secrets out of what is printed: passwords in URLs become ``***``.

Every log line and error that may hold a Redis or Kafka URL goes through
``redact`` (the worker's log handler also filters every record with it).

>>> redact("cannot reach Redis at redis://:s3cret@10.0.0.5:6379/0 (redis.url)")
'cannot reach Redis at redis://:***@10.0.0.5:6379/0 (redis.url)'
>>> redact("rediss://app:p@ss/w0rd@cache:6380 and sasl_ssl://user:pw@broker:9093")
'rediss://app:***@cache:6380 and sasl_ssl://user:***@broker:9093'
>>> redact("redis://cache:6379/0")
'redis://cache:6379/0'
"""

from __future__ import annotations

import logging
import re

# scheme://user:PASSWORD@ — the password runs to the last '@' of the token.
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]*@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL replaced."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(r"\1***@", text)


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message of every record, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMAT.formatException(record.exc_info))
        return True


_FORMAT = logging.Formatter()
