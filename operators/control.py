"""Data subjects' requests: one JSON object per line (a control file, or the control topic).

``{"type": "delete" | "suppress" | "unsuppress" | "delete_and_suppress",
"id": ID (or "ids": [ID, ...]), "requestId": ..., "timestamp": ISO-8601}``

``id`` names any identifier (a ``userId`` or an ``anonymousId``); the request reaches
every identifier linked to it. Identifiers are pseudonymised exactly as event ids are,
so a request for an e-mail address used as an id finds the profile it became; a
``requestId`` holding an e-mail, phone or IP becomes ``rid:`` and its salted hash.
A line that is not such a request is dead-lettered (stage ``control``) with the reason.

>>> from audienceflow.operators.privacy import Privacy
>>> r = parse(b'{"type":"delete","id":"u1","requestId":"r1","timestamp":"2026-03-02T08:00:00Z"}',
...           "c:1", Privacy(()))
>>> r.kind, r.ids, r.request_id
('delete', ('u1',), 'r1')
>>> parse(b'{"type":"forget","id":"u1"}', "c:2", Privacy(())).reason
'bad_control'
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import CONTROL_TYPES, ControlRequest, DeadLetter, dumps
from audienceflow.operators.scrub import preview
from audienceflow.operators.validate import CONTROL_CHARS, parse_timestamp, top_level_duplicates

MAX_IDS = 100  # identifiers one request may name
MAX_ID_CHARS = 512
REQUEST_KEYS = ("type", "id", "ids", "requestId", "timestamp")


def parse(raw: bytes | str, position: str, privacy: Privacy) -> ControlRequest | DeadLetter:
    """A control line → the request, or a dead letter saying what is wrong with it."""
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _dead(f"not JSON: {exc}", raw, position, privacy)
    if not isinstance(obj, dict):
        return _dead("a control line must be a JSON object", raw, position, privacy)
    # Two readers of one line must see one request: orjson keeps the last of a repeated
    # key (json's readers may keep the first), and a line naming both 'id' and 'ids'
    # was read as 'ids' alone, so '{"id": "ann", "ids": ["x"]}' erased x, not ann, with a
    # receipt 'done'. Refused, as an event's repeated identity fields are.
    if "id" in obj and "ids" in obj:
        return _dead("give 'id' or 'ids', not both", raw, position, privacy)
    repeated = [k for k in top_level_duplicates(raw) if k in REQUEST_KEYS]
    if repeated:
        return _dead(
            f"keys {repeated} appear more than once; which one is meant is ambiguous",
            raw,
            position,
            privacy,
        )
    kind = obj.get("type")
    if kind not in CONTROL_TYPES:
        return _dead(
            f"'type' must be one of {', '.join(CONTROL_TYPES)}; got {preview(kind)}",
            raw,
            position,
            privacy,
        )
    ids = obj.get("ids", [obj["id"]] if "id" in obj else None)
    if isinstance(ids, list):  # a whole number names the id an event gave as one (validate)
        ids = [str(i) if type(i) is int else i for i in ids]
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids)
    ):
        return _dead(
            f"'id' (or 'ids', at most {MAX_IDS}) must name identifiers as non-empty strings "
            f"of at most {MAX_ID_CHARS} characters, or whole numbers",
            raw,
            position,
            privacy,
        )
    request_id = obj.get("requestId")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_CHARS:
        return _dead(
            f"'requestId' must be a non-empty string of at most {MAX_ID_CHARS} characters",
            raw,
            position,
            privacy,
        )
    # As an event's ids (validate): a control character names no one. A requestId holding
    # one (a NUL, a newline, a terminal's escape sequence) was written as is into every
    # receipt, kept forever, and its Kafka key; an id holding one can match no event's
    # id, so its receipt said 'not_found' where the request was misspelt.
    bad = next((f for f, v in (("requestId", [request_id]), ("id", ids)) if _controls(v)), None)
    if bad is not None:
        return _dead(f"{bad!r} contains a control character (such as NUL)", raw, position, privacy)
    ts_raw = obj.get("timestamp")
    try:
        ts = parse_timestamp(ts_raw) if isinstance(ts_raw, str) else None
    except ValueError:
        ts = None
    if ts is None:
        return _dead(
            f"'timestamp' must be ISO-8601 with an offset or Z; got {preview(ts_raw)}",
            raw,
            position,
            privacy,
        )
    pseudo = tuple(sorted({privacy.pseudonym(i, "uid") for i in ids}))
    # A request named after its requester ("erasure ann@example.com") would put the person
    # in every receipt and its key, kept for the audit: pseudonymised as a messageId is.
    rid = privacy.pseudonym(request_id, "rid")
    return ControlRequest(kind, pseudo, rid, ts, position)


def _controls(texts: list[str]) -> bool:
    return any(not t.isprintable() and CONTROL_CHARS.search(t) is not None for t in texts)


def _dead(detail: str, raw: bytes | str, position: str, privacy: Privacy) -> DeadLetter:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    dead = DeadLetter("bad_control", f"step 'control': {detail}", position, text, stage="control")
    out = privacy(dead)
    assert isinstance(out, DeadLetter)
    return out


def read_at(position: str) -> str:
    """Where a request was read, as its receipt's id names it (``Receipt.source``): its
    ``topic:partition:offset``, or a replay's ``file:line`` without the file's folders.
    A receipt id made of the path as given changed with its spelling (``r.jsonl``,
    ``./r.jsonl``, an absolute path) and with the folder the file was copied to, so the
    same replay gave other receipts and chains. (A Kafka topic's name has no ``/``.)

    >>> read_at("/srv/audit/requests.jsonl:7"), read_at("audienceflow.control:0:42")
    ('requests.jsonl:7', 'audienceflow.control:0:42')
    """
    return position.rpartition("/")[2]


def chain_next(previous: str, body: dict[str, Any]) -> str:
    """The chain value of a receipt whose body is ``body``, after one chained ``previous``."""
    return hashlib.blake2b(previous.encode() + dumps(body), digest_size=16).hexdigest()


def check_receipts(receipts: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a list of receipts (as written): empty when every shard's chain
    is whole. Repeated identical receipts (an at-least-once sink after a restart) are fine.

    Each shard numbers its receipts 1, 2, ... and chains each to the one before, so a
    receipt dropped, altered or reordered shows as a gap or a broken link.

    >>> check_receipts([])
    []
    """
    problems: list[str] = []
    by_shard: dict[str, dict[int, dict[str, Any]]] = {}
    for i, r in enumerate(receipts, 1):
        # A line that is no receipt (no object, no ``seq`` numbering it from 1) is no
        # link of any chain: reported, never skipped (a forged receipt numbered 0 or -5
        # was checked against nothing and passed) and never a traceback.
        seq = r.get("seq") if isinstance(r, dict) else None
        if type(seq) is not int or seq < 1:
            problems.append(f"line {i}: not a receipt ('seq' must be a whole number from 1)")
            continue
        seen = by_shard.setdefault(str(r.get("shard")), {})
        old = seen.get(seq)
        if old is not None and old != r:
            problems.append(f"shard {r.get('shard')}: two different receipts numbered {seq}")
        seen[seq] = r
    for shard, numbered in sorted(by_shard.items()):
        chain = ""
        expected = 1
        for n in sorted(numbered):
            # The gap before ``n`` in one line: a receipt numbered 10**30 is one forged
            # receipt, not 10**30 lines (or a verifier that never ends).
            if n - expected == 1:
                problems.append(f"shard {shard}: receipt {expected} is missing")
            elif n > expected:
                problems.append(f"shard {shard}: receipts {expected} to {n - 1} are missing")
            if n > expected:
                chain = ""
            expected = n + 1
            r = numbered[n]
            body = {k: v for k, v in r.items() if k != "chain"}
            if chain and chain_next(chain, body) != r.get("chain"):
                problems.append(f"shard {shard}: receipt {n} does not follow receipt {n - 1}")
            elif n == 1 and chain_next("", body) != r.get("chain"):
                problems.append(f"shard {shard}: receipt 1 does not start the chain")
            chain = str(r.get("chain"))
    return problems
