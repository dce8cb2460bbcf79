"""Consent and PII filtering, applied before any state or output.

Only an event's ``properties`` and three context fields (device type, locale,
campaign source) ever reach a profile; traits, IPs and the rest of the
context are dropped at validation. Within properties, keys named as PII
(``email``, ``phone``, ``ip`` by default, at any depth) are hashed or dropped.
Dead-letter lines are scrubbed the same way where they parse, and by pattern
where they do not.

>>> p = Privacy(("email",), mode="hash", salt="s")
>>> p.scrub({"email": "a@b.c", "plan": "pro"})["email"].startswith("sha256:")
True
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from audienceflow.operators.records import DeadLetter, Event, Filtered

_EMAIL = re.compile(r"[^\s\"'<>@,;:]+@[\w-]+(?:\.[\w-]+)+")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
# International numbers only (a leading +): a looser pattern eats ISO dates.
_PHONE = re.compile(r"(?<![\w+-])\+\d[\d\s().-]{6,}\d")
_IPV6 = re.compile(
    r"\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b|[0-9a-fA-F:]*::[0-9a-fA-F:]*[0-9a-fA-F]"
)


class Privacy:
    """Consent filter and PII scrubber; ``mode`` is ``"hash"`` or ``"drop"``."""

    def __init__(self, pii_fields: tuple[str, ...], mode: str = "hash", salt: str = "") -> None:
        if mode not in ("hash", "drop"):
            raise ValueError(f"privacy mode must be 'hash' or 'drop'; got {mode!r}")
        self.pii_fields = frozenset(f.lower() for f in pii_fields)
        self._needles = tuple(f'"{f}"'.encode() for f in self.pii_fields)
        keys = "|".join(re.escape(f) for f in sorted(self.pii_fields))
        self._by_key = (
            re.compile(rf'("(?i:{keys})"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}}\s]*)') if keys else None
        )
        self.mode = mode
        self.salt = salt.encode()

    def _hash(self, value: Any) -> str:
        digest = hashlib.sha256(self.salt + str(value).encode()).hexdigest()
        return "sha256:" + digest[:32]

    def scrub(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with PII keys hashed or dropped, at any depth."""
        out: dict[str, Any] = {}
        for key, val in obj.items():
            if key.lower() in self.pii_fields:
                if self.mode == "hash" and val is not None:
                    out[key] = self._hash(val)
            else:
                out[key] = self._scrub_value(val)
        return out

    def _scrub_value(self, val: Any) -> Any:
        if isinstance(val, dict):
            return self.scrub(val)
        if isinstance(val, list):
            return [self._scrub_value(v) for v in val]
        return val

    def _needs_scrub(self, val: Any) -> bool:
        if isinstance(val, dict):
            for key, v in val.items():
                if key.lower() in self.pii_fields or self._needs_scrub(v):
                    return True
        elif isinstance(val, list):
            return any(self._needs_scrub(v) for v in val)
        return False

    def may_hold_pii(self, raw: bytes) -> bool:
        """Cheap pre-check on the raw line: can any PII key be in it at all?

        JSON keys appear quoted; a line with ``\\u`` escapes is always checked in full.
        """
        low = raw.lower()
        return b"\\u" in low or any(n in low for n in self._needles)

    def __call__(
        self, item: Event | DeadLetter, raw: bytes | None = None
    ) -> Event | DeadLetter | Filtered:
        if isinstance(item, DeadLetter):
            item.raw = self.scrub_raw(item.raw)
            return item
        if not item.consent:
            return Filtered("consent_withheld", item.position, item.message_id)
        if isinstance(raw, bytes) and not self.may_hold_pii(raw):
            return item
        if item.properties and self._needs_scrub(item.properties):
            item.properties = self.scrub(item.properties)
        return item

    def scrub_raw(self, raw: str) -> str:
        """Scrub a dead-letter line: structurally if it parses, else by pattern."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict | list):
            clean = self._scrub_value(obj)
            # Structure first, then patterns: an email can sit in any value (a userId).
            return _EMAIL.sub("<email>", orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode())
        # Unparseable: redact the value of every quoted PII key, then patterns.
        text = self._by_key.sub(lambda m: m.group(1) + '"<redacted>"', raw) if self._by_key else raw
        text = _EMAIL.sub("<email>", text)
        if "ip" in self.pii_fields:
            text = _IPV6.sub("<ip>", _IPV4.sub("<ip>", text))
        if "phone" in self.pii_fields:
            text = _PHONE.sub("<phone>", text)
        return text
