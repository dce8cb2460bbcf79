"""A hostile-input corpus mixed into a valid stream: every class of line an attacker can write.

Each hostile line is built next to a valid line and borrows its timestamp (or one
far before or after it, for late and future events), so it cannot move stream
time for anyone else; each names its own ``evil-`` user except the late poison
pills, which name the valid line's user. ``mix`` returns the lines and, per hostile
line, its 1-based line number and the outcome the engine must give it: a
dead-letter reason, or ``"accepted"``.

    >>> one = b'{"type":"page","userId":"u1","timestamp":"2026-03-02T08:00:00Z"}'
    >>> lines, expected = mix([one], every=1)
    >>> len(lines) == 1 + len(expected), expected[2]
    (True, 'too_deep')

Script: ``python examples/hostile.py examples/stream.jsonl.gz --out hostile.jsonl``.
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

BIG = 32_000


def _nest(depth: int) -> bytes:
    """``depth`` nested objects as JSON (orjson refuses to write more than 254)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _with(line: bytes, field: str, value: bytes) -> bytes:
    return line.replace(f'"{field}":"@"'.encode(), f'"{field}":'.encode() + value)


def _shift(ts: str, days: float) -> str:
    dt = datetime.fromisoformat(ts) + timedelta(days=days)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _naive(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(tzinfo=None).isoformat()


def _event(user: str, ts: str, i: int, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "userId": user,
        "timestamp": ts,
        "messageId": f"evil-m-{i}",
        "properties": {"product_id": "p1", "category": "deals"},
    }
    out.update(over)
    return out


def _j(obj: Any) -> bytes:
    return orjson.dumps(obj)


Maker = Callable[[str, str, int], bytes]

# name → (outcome, maker(valid line's user, its timestamp, index))
CLASSES: dict[str, tuple[str, Maker]] = {
    "poison_pill_300_deep_late": (
        "too_deep",
        lambda u, ts, i: _with(
            _j(_event(u, _shift(ts, -1), i, properties="@")), "properties", _nest(300)
        ),
    ),
    "late_15_deep_reaches_the_engine": (
        "late_event",
        lambda u, ts, i: _with(
            _j(_event(u, _shift(ts, -1), i, properties="@")), "properties", _nest(15)
        ),
    ),
    "future_event": (
        "future_event",
        lambda u, ts, i: _j(_event(f"evil-future-{i}", _shift(ts, 30), i)),
    ),
    "32000_a": ("not_json", lambda u, ts, i: b"a" * BIG),
    "32000_colons": ("not_json", lambda u, ts, i: b":" * BIG),
    "digits_and_dots": ("not_json", lambda u, ts, i: b"1." * (BIG // 2)),
    "at_signs": ("not_json", lambda u, ts, i: b"a@" * (BIG // 2)),
    "plus_digits": ("not_json", lambda u, ts, i: b"+1 " * (BIG // 3)),
    "long_string_value": (
        "accepted",
        lambda u, ts, i: _j(_event(f"evil-long-{i}", ts, i, properties={"q": "a" * 30_000})),
    ),
    "quantity_beyond_64_bits": (
        "accepted",
        lambda u, ts, i: _j(
            _event(
                f"evil-qty-{i}",
                ts,
                i,
                event="Product Added",
                properties={"product_id": "p1", "price": 5, "quantity": 1e20},
            )
        ),
    ),
    "oversize": (
        "oversize",
        lambda u, ts, i: _j(_event(f"evil-big-{i}", ts, i, properties={"q": "b" * 40_000})),
    ),
    "invalid_utf8": (
        "bad_encoding",
        lambda u, ts, i: _j(_event(f"evil-utf8-{i}", ts, i)).replace(b"Viewed", b"\xff\xfe"),
    ),
    "lone_surrogate_escape": (
        "bad_encoding",
        lambda u, ts, i: _j(_event(f"evil-sur-{i}", ts, i)).replace(b"evil-sur", b"\\ud800"),
    ),
    "lone_surrogate_bytes": (
        "bad_encoding",
        lambda u, ts, i: _j(_event(f"evil-surb-{i}", ts, i)).replace(b"surb", b"\xed\xa0\x80"),
    ),
    "nul_escape_in_id": (
        "wrong_field_type",
        lambda u, ts, i: _j(_event(f"evil-nul-{i}\x00x", ts, i)),
    ),
    "nul_byte_in_line": (
        "not_json",
        lambda u, ts, i: _j(_event(f"evil-nulb-{i}", ts, i)).replace(b"Viewed", b"Vi\x00ewed"),
    ),
    "1e400": (
        "not_json",
        lambda u, ts, i: _j(_event(f"evil-inf-{i}", ts, i)).replace(b'"p1"', b"1e400"),
    ),
    "nan": (
        "not_json",
        lambda u, ts, i: _j(_event(f"evil-nan-{i}", ts, i)).replace(b'"p1"', b"NaN"),
    ),
    "infinity": (
        "not_json",
        lambda u, ts, i: _j(_event(f"evil-infy-{i}", ts, i)).replace(b'"p1"', b"-Infinity"),
    ),
    "huge_id": ("oversize_field", lambda u, ts, i: _j(_event("evil-" + "x" * 5000, ts, i))),
    "huge_event_name": (
        "oversize_field",
        lambda u, ts, i: _j(_event(f"evil-name-{i}", ts, i, event="E" * 5000)),
    ),
    "duplicate_user_id": (
        "duplicate_key",
        lambda u, ts, i: _j(_event(f"evil-dupa-{i}", ts, i)).replace(
            b'"userId"', f'"userId":"evil-dupb-{i}","userId"'.encode()
        ),
    ),
    "bom_then_valid_event": (
        "accepted",
        lambda u, ts, i: b"\xef\xbb\xbf" + _j(_event(f"evil-bom-{i}", ts, i)),
    ),
    "json_nested_2000": ("not_json", lambda u, ts, i: b"[" * 2000 + b"]" * 2000),
    "deep_object_as_user_id": (
        "wrong_field_type",
        lambda u, ts, i: _j(_event("x", ts, i)).replace(b'"x"', b"[" * 900 + b"]" * 900),
    ),
    "array": ("not_object", lambda u, ts, i: b"[1,2,3]"),
    "scalar": ("not_object", lambda u, ts, i: b'"just a string"'),
    "huge_timestamp_string": (
        "bad_timestamp",
        lambda u, ts, i: _j(_event(f"evil-ts-{i}", "9" * 20_000, i)),
    ),
    "timestamp_without_zone": (
        "bad_timestamp",
        lambda u, ts, i: _j(_event(f"evil-tz-{i}", _naive(ts), i)),
    ),
    "pii_everywhere": (
        "accepted",
        lambda u, ts, i: _j(
            _event(
                f"evil.{i}@example.com",
                ts,
                i,
                anonymousId="+44 20 7946 0958",
                messageId=f"m-{i}@example.com",
                event="Signed Up by evil@example.com",
                properties={
                    "category": "evil@example.com",
                    "product_id": "198.51.100.9",
                    "note": {"deep": ["call (415) 555-0123"]},
                },
                context={
                    "locale": "evil@example.com",
                    "device": {"type": "10.1.2.3"},
                    "campaign": {"source": "+1 415 555 0199"},
                    "ip": "198.51.100.9",
                },
            )
        ),
    ),
    "escaped_at_sign_in_broken_line": (
        "not_json",
        lambda u, ts, i: b'{"userId":"evil\\u0040example.com","x":',
    ),
    "deep_context": (
        "accepted",
        lambda u, ts, i: _with(
            _j(_event(f"evil-ctx-{i}", ts, i, context="@")), "context", _nest(900)
        ),
    ),
    "unknown_type_with_object": (
        "unknown_type",
        lambda u, ts, i: _j(_event(f"evil-type-{i}", ts, i, type={"a": [1] * 1000})),
    ),
}


def hostile_line(name: str, user: str, ts: str, i: int) -> tuple[bytes, str]:
    """One hostile line of class ``name`` and the outcome it must get."""
    outcome, make = CLASSES[name]
    return make(user, ts, i), outcome


def mix(valid: list[bytes], every: int = 5, start: int = 0) -> tuple[list[bytes], dict[int, str]]:
    """``valid`` with a hostile line after every ``every``-th event line (classes in turn).

    Returns the lines and ``{line number: expected outcome}`` for each hostile line.
    Lines before ``start`` get none (stream time must exist for late events to be late).
    """
    names = list(CLASSES)
    out: list[bytes] = []
    expected: dict[int, str] = {}
    k = 0
    for n, line in enumerate(valid):
        out.append(line)
        if n < start or (n - start) % every:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("timestamp"), str):
            continue
        user = obj.get("userId") or obj.get("anonymousId")
        if not isinstance(user, str):
            continue
        raw, outcome = hostile_line(names[k % len(names)], user, obj["timestamp"], k)
        out.append(raw)
        expected[len(out)] = outcome
        k += 1
    return out, expected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stream", type=Path, help="a valid JSONL or JSONL.gz stream")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = args.stream.read_bytes()
    if args.stream.suffix == ".gz":
        data = gzip.decompress(data)
    lines, expected = mix(data.splitlines(), args.every, start=100)
    args.out.write_bytes(b"\n".join(lines) + b"\n")
    print(f"{len(lines)} lines, {len(expected)} hostile")


if __name__ == "__main__":
    main()
