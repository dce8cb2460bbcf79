"""A canary corpus: Segment-spec lines whose every personal field holds a unique token.

Each token is registered with its person (``CANARY-u3`` ...), so a sweep can say which
person a leak belongs to, and a deletion check which tokens must be gone. ``find`` looks
for every token in the forms a writer may give it: as is, lower case, URL-encoded,
URL-encoded twice, JSON-escaped (``\\u0040``), digits only (phones).

What is configured to pass is no token: a ``userId`` holding nothing personal
(``user-canary-4``) is an id, written as given; an id that is an e-mail, phone or IP
passes only as its pseudonym (``uid:``/``mid:`` + salted SHA-256, ``pseudonym``), a
``properties.email`` only as ``sha256:`` + salted hash, so the raw token never appears.
Property values under keys not named in ``privacy.pii_fields`` pass as configured, so
the corpus puts there only what a pattern finds (no bare names).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Corpus:
    """The lines, and every canary by the person it belongs to."""

    lines: list[bytes] = field(default_factory=list)
    secret: dict[str, str] = field(default_factory=dict)  # token -> person: never written
    n: int = 0
    end: float = 0.0  # the minute of the last canary line
    last: dict[str, float] = field(default_factory=dict)  # person -> minute of its last call

    def _next(self) -> int:
        self.n += 1
        return self.n

    def email(self, who: str) -> str:
        return self._add(f"CANARY-email-{self._next()}@x.test", who)

    def phone(self, who: str) -> str:
        return self._add(f"+44 20 7946 {1000 + self._next():04d}", who)

    def ip(self, who: str) -> str:
        n = self._next()
        return self._add(f"203.0.{n // 250}.{n % 250 + 1}", who)

    def ip6(self, who: str) -> str:
        return self._add(f"2001:db8:cafe::{self._next():x}", who)

    def phone_na(self, who: str) -> str:
        """A North American number, ``(415) 555-0123`` shape."""
        return self._add(f"(415) 555-{1000 + self._next():04d}", who)

    def mapped_ip(self, who: str) -> str:
        """An IPv4-mapped IPv6 address, as a dual-stack server records a client."""
        n = self._next()
        return self._add(f"::ffff:198.51.{n // 250}.{n % 250 + 1}", who)

    def word(self, kind: str, who: str) -> str:
        """A token no pattern recognises (a name, a street): only structure removes it."""
        return self._add(f"CANARY-{kind}-{self._next()}", who)

    def _add(self, token: str, who: str) -> str:
        self.secret[token] = who
        return token

    def add(self, line: dict[str, Any] | list[Any] | str | bytes) -> None:
        if isinstance(line, bytes):
            self.lines.append(line)
        elif isinstance(line, str):
            self.lines.append(line.encode())
        else:
            self.lines.append(orjson.dumps(line))

    def of(self, who: str) -> list[str]:
        return [t for t, w in self.secret.items() if w == who]


def forms(token: str) -> set[bytes]:
    """The byte strings a writer could turn ``token`` into, all lower case."""
    out = {
        token,
        urllib.parse.quote(token, safe=""),
        urllib.parse.quote_plus(token),
        urllib.parse.quote(urllib.parse.quote(token, safe=""), safe=""),  # a URL in a URL
        json.dumps(token)[1:-1],
        json.dumps(token, ensure_ascii=True).replace("@", "\\u0040")[1:-1],
    }
    if token.startswith(("+", "(")):
        digits = re.sub(r"\D", "", token)
        dashed = "-".join(re.findall(r"\d+", token))
        out |= {digits, digits[2:], dashed, token.replace(" ", ""), token.replace(" ", "-")}
    return {f.lower().encode() for f in out}


@functools.cache
def _pattern(token: str) -> re.Pattern[bytes]:
    # A token ends where its number ends: "CANARY-name-1" must not match "CANARY-name-12".
    alts = b"|".join(re.escape(f) for f in sorted(_forms(token), key=len, reverse=True))
    return re.compile(b"(?:" + alts + rb")(?![0-9a-f])")


# Every form of every token holds one of these (lower case; ":" may be "%3a", "@" "%40").
HINTS = re.compile(rb"canary|7946|555|203\.0\.|198\.51\.|db8")
_AROUND = 120  # longer than any form of a token


def find(tokens: dict[str, str], blob: bytes) -> list[str]:
    """The tokens found in ``blob`` (any form, any case)."""
    low = blob.lower()
    # Only the text around a hint is searched token by token: a 5 MB report is one pass.
    spans: list[list[int]] = []
    for m in HINTS.finditer(low):
        a, b = max(0, m.start() - _AROUND), m.end() + _AROUND
        if spans and a <= spans[-1][1]:
            spans[-1][1] = b  # overlapping windows are one
        else:
            spans.append([a, b])
    if not spans:
        return []
    text = b"\n".join(low[a:b] for a, b in spans)
    # A plain substring test first (fast), the pattern (its end checked) only on a hit.
    return [t for t in tokens if any(f in text for f in _forms(t)) and _pattern(t).search(text)]


@functools.cache
def _forms(token: str) -> frozenset[bytes]:
    return frozenset(forms(token))


def pseudonym(salt: str, value: str, kind: str = "uid") -> str:
    """The documented pseudonym of an id, worked out independently of privacy.py."""
    digest = hashlib.sha256(salt.encode() + kind.encode() + b"\0" + value.encode()).hexdigest()
    return f"{kind}:{digest[:32]}"


def build() -> Corpus:
    """Every call type, with every personal-looking field a canary, plus malformed lines."""
    c = Corpus()
    minute = 0.0

    def context(who: str) -> dict[str, Any]:
        return {
            "ip": c.ip(who) if len(c.secret) % 2 else c.mapped_ip(who),
            "userAgent": f"Mozilla/5.0 ({c.word('ua', who)}) Gecko",
            "locale": c.email(who),
            "timezone": "Europe/London",
            "location": {
                "city": c.word("city", who),
                "country": c.word("country", who),
                "latitude": 51.5,
                "longitude": -0.12,
            },
            "traits": {
                "name": c.word("name", who),
                "email": c.email(who),
                "phone": c.phone(who),
                "address": {"street": c.word("street", who), "postalCode": c.word("zip", who)},
            },
            "device": {
                "type": "mobile",
                "id": c.word("deviceid", who),
                "advertisingId": c.word("adid", who),
                "name": f"{c.word('name', who)}'s iPhone",
            },
            "campaign": {
                "source": c.email(who),
                "name": c.email(who),
                "term": c.phone(who),
                "content": c.ip6(who),
                "medium": f"m {c.email(who)}",
            },
            "page": {
                "url": "https://shop.test/p?email=" + urllib.parse.quote(c.email(who), safe=""),
                "referrer": "https://mail.test/?to=" + urllib.parse.quote_plus(c.email(who)),
                # a URL in a URL's query: encoded twice
                "path": "/login?returnTo="
                + urllib.parse.quote("/cart?email=" + urllib.parse.quote(c.email(who), safe="")),
                "search": "?tel=" + urllib.parse.quote(c.phone(who), safe=""),
                "title": f"Hello {c.email(who)}",
            },
        }

    def props(who: str) -> dict[str, Any]:
        return {
            "email": c.email(who),
            "query": f"call {c.phone(who)} or {c.phone_na(who)}, {c.email(who).upper()}",
            "from": f"at {c.ip(who)}",
            "note": f"from {c.mapped_ip(who)} or 415-555-{c.phone_na(who)[-4:]}",
            c.email(who): 1,  # a property key that is an e-mail
            "meta": {"a": {"b": {"c": {"note": c.email(who), c.phone(who): [c.ip6(who)]}}}},
            "list": [{"phone": c.phone(who)}, [c.ip(who)]],
            "url": "https://shop.test/x?email=" + urllib.parse.quote(c.email(who), safe=""),
            "category": c.email(who),
        }

    def call(etype: str, who: str, uid: Any, aid: Any, **over: Any) -> dict[str, Any]:
        nonlocal minute
        minute += 1
        c.last[who] = minute
        out: dict[str, Any] = {
            "type": etype,
            "userId": uid,
            "anonymousId": aid,
            "messageId": f"m {c.email(who)}",
            "timestamp": at(minute),
            "context": context(who),
            "properties": props(who),
        }
        out.update(over)
        return {k: v for k, v in out.items() if v is not None}

    def product(who: str, pid: str) -> dict[str, Any]:
        return {
            "product_id": pid,
            "sku": c.phone(who),
            "name": c.email(who),
            "category": c.email(who),
            "price": 10.0,
            "quantity": 2,
            "url": "https://shop.test/?e=" + urllib.parse.quote(c.email(who), safe=""),
        }

    # Person 1: ids that are e-mails; person 2: phones; person 3: an IP user with a
    # clean anonymous id; person 4: clean ids (kept as given), personal data elsewhere.
    p1 = ("CANARY-u1", c.email("CANARY-u1"), c.phone("CANARY-u1"))
    p2 = ("CANARY-u2", c.phone("CANARY-u2"), c.email("CANARY-u2"))
    p3 = ("CANARY-u3", c.ip("CANARY-u3"), "anon-canary-3")
    p4 = ("CANARY-u4", "user-canary-4", "anon-canary-4")
    for who, uid, aid in (p1, p2, p3, p4):
        traits = {
            "name": c.word("name", who),
            "firstName": c.word("first", who),
            "email": c.email(who),
            "phone": c.phone(who),
            "address": {"street": c.word("street", who), "city": c.word("city", who)},
            "birthday": c.word("birthday", who),
            c.email(who): True,
        }
        c.add(call("identify", who, uid, aid, traits=traits))
        c.add(call("page", who, uid, aid, name=f"Home {c.email(who)}"))
        c.add(call("screen", who, uid, aid, name="Product", category=c.email(who)))
        c.add(call("track", who, uid, None, event="Product Viewed"))
        added = {**props(who), "product_id": "p1", "name": c.email(who), "sku": c.phone(who)}
        c.add(call("track", who, uid, aid, event="Product Added", properties=added))
        c.add(call("track", who, uid, aid, event=f"Signed Up {c.email(who)}"))
        for _ in range(3):
            c.add(call("track", who, uid, aid, event="Video Content Completed"))
        order = {**props(who), "order_id": c.email(who), "revenue": 20.0}
        order["products"] = [product(who, "p1"), product(who, c.email(who))]
        c.add(call("track", who, uid, aid, event="Order Completed", properties=order))
        c.add(call("track", who, uid, aid, event="Product Added", properties=added))
        # An account's traits: a rule may read plan and website (test_canary_sweep's group
        # config), whose personal values are masked; its name no rule may read.
        site = "https://acme.test/?contact=" + urllib.parse.quote(c.email(who), safe="")
        account = {"name": c.word("org", who), "plan": c.email(who), "website": site}
        c.add(call("group", who, uid, aid, groupId=c.email(who), traits=account))
        c.add(call("alias", who, uid, None, previousId=c.phone(who)))
    # Person 8: a shared device's anonymous id (a phone) under two e-mail users: the
    # second link is refused (rejected_merge); a blocked anonymous id beside an e-mail.
    who = "CANARY-u8"
    shared, first, second = c.phone(who), c.email(who), c.email(who)
    c.add(call("identify", who, first, shared, traits={"name": c.word("name", who)}))
    c.add(call("identify", who, second, shared, traits={"name": c.word("name", who)}))
    c.add(call("page", who, c.email(who), "undefined", name="Home"))
    # Consent withheld: filtered, nothing of it anywhere.
    who = "CANARY-u5"
    withheld = call("track", who, c.email(who), None, event="Product Viewed")
    withheld["context"]["consent"] = {"categoryPreferences": {"personalization": False}}
    c.add(withheld)
    # Malformed lines, each echoing personal data (person 6).
    who = "CANARY-u6"
    full = orjson.dumps(
        call("identify", who, c.email(who), None, traits={"name": c.word("name", who)})
    )
    c.add(full[: full.index(b'"traits"') + 30])  # cut short inside the traits
    c.add(full[: full.index(b"@x.test") - 3])  # cut inside an address
    c.add(call("track", who, {"email": c.email(who)}, None, event="E"))  # id of the wrong type
    c.add(call("track", who, "u6", None, event="E", timestamp=1_772_438_400))  # number
    c.add(call("track", who, "u6", None, event="E", timestamp=f"{c.email(who)} {c.phone(who)}"))
    big = call("track", who, c.email(who), None, event="E")
    big["properties"]["pad"] = "x" * 40_000 + c.email(who)
    c.add(big)  # oversize
    c.add(call("track", who, c.email(who), None, event=c.email(who) * 40))  # oversize field
    bad = orjson.dumps(call("track", who, c.email(who), None, event="E"))
    c.add(bad.replace(b'"E"', b'"\xff\xfe E"'))  # bad UTF-8
    deep: dict[str, Any] = {"note": c.email(who), "phone": c.phone(who)}
    for _ in range(20):
        deep = {"d": deep}
    c.add(call("track", who, c.email(who), None, event="E", properties=deep))  # too deep
    dup = orjson.dumps(call("track", who, c.email(who), None, event="E"))
    c.add(dup[:-1] + b',"userId":"' + c.email(who).encode() + b'"}')  # duplicate key
    c.add([c.email(who), c.phone(who), {"traits": {"name": c.word("name", who)}}])  # not an object
    c.add(
        {"batch": [call("identify", who, c.email(who), None, traits={"name": c.word("name", who)})]}
    )
    c.add(call("Bogus", who, c.email(who), None))  # unknown type
    org = {"name": c.word("org", who), "email": c.email(who)}
    c.add(call("group", who, c.email(who), None, groupId=" ", traits=org))  # no group id
    c.add(call("track", who, None, None, event="E"))  # no identity
    c.add(call("track", who, c.email(who), None))  # no event name
    c.add(call("alias", who, c.email(who), None))  # bad alias
    nots = f"not json {c.email(who)} {c.phone(who)} {c.ip(who)} 'traits': {c.word('name', who)}"
    c.add(nots)
    esc = c.email(who).replace("@", "\\u0040")  # JSON-escaped, in a line cut short
    pct = urllib.parse.quote(c.email(who), safe="")
    c.add('{"type":"track","userId":"' + esc + '","event":"E","properties":{"u":"?m=' + pct + '"')
    c.add("{'userId': '" + c.email(who) + "', 'traits': {'name': '" + c.word("name", who) + "'}}")
    # Late and future (person 7).
    who = "CANARY-u7"
    c.add(call("track", who, c.email(who), None, event="Product Viewed", timestamp=at(-120)))
    c.add(
        call("track", who, c.email(who), None, event="Product Viewed", timestamp=at(60 * 24 * 30))
    )
    # An identify among the last calls, still held (not yet applied) when a snapshot
    # is taken: its traits must be gone already (rules read none of them).
    who = "CANARY-u9"
    traits = {"name": c.word("name", who), "address": {"street": c.word("street", who)}}
    late_identify = call("identify", who, "user-canary-9", None, traits=traits)
    late_identify["timestamp"] = at(minute + 299)
    # A group call held too: no account trait a rule does not read (its name) is carried.
    org = {"name": c.word("org", who), "plan": "basic"}
    late_group = call("group", who, "user-canary-9", None, groupId="acct-9", traits=org)
    late_group["timestamp"] = at(minute + 299)
    # Clean users moving time on, so sessions close and the cart timers fire. (Four at
    # each step: a replayed partition's time moves once four users' events are at or after
    # it.)
    c.end = minute
    for m in (minute + 1, minute + 90, minute + 300):
        if m == minute + 300:
            c.add(late_identify)
            c.add(late_group)
        for s in range(4):
            t = at(m + s / 60)
            c.add(
                {
                    "type": "page",
                    "userId": f"clock-{s}",
                    "name": "Home",
                    "timestamp": t,
                    "messageId": t,
                }
            )
    return c


def control(c: Corpus, who: str, ident: str, minute: float) -> list[bytes]:
    """A deletion of ``ident`` at ``minute``, and a broken request echoing a canary."""
    req = {"type": "delete", "id": ident, "requestId": "req-canary", "timestamp": at(minute)}
    broken = '{"type": "delete", "id": "' + c.email(who) + '", "requestId": '
    return [orjson.dumps(req), broken.encode()]
