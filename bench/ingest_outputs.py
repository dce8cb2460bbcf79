"""Every item the ingest emits, one line each, on a stream and on hostile and random corpora.

Runs ``PartitionIngest.feed``/``end`` (validate, privacy, route; batches of 1000 lines
as the replay reads them) over: ``stream``; the hostile corpus (examples/hostile.py)
mixed into a generated stream; and seeded random Segment-like lines built from the
shapes that make the PII patterns hard (addresses, IPs, phones, escapes, control and
non-ASCII characters, PII keys in any case, nesting), as bytes and as str; under
several privacy modes, shard counts and watermark quorums. Writes each item's key and
``repr`` in order and, per run, a SHA-256 of the pickled items. Run it in two checkouts
and ``cmp`` the files: a change meant to be byte-identical must leave them equal.

    python bench/ingest_outputs.py bench/work/stream-20000-11.jsonl /tmp/mine.txt
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from generate import generate
from hostile import mix

from audienceflow.operators.privacy import Privacy
from audienceflow.operators.routing import PartitionIngest
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Taxonomy, Validator
from audienceflow.operators.watermarks import PartitionClock

PIECES = [
    "a",
    "b",
    "Z",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "9",
    "12",
    "555",
    "0123",
    "415",
    " ",
    "  ",
    ".",
    "..",
    ":",
    "::",
    "@",
    "+",
    "(",
    ")",
    "-",
    "_",
    "/",
    ",",
    ";",
    "<",
    ">",
    '"',
    "'",
    "\\",
    "\n",
    "\t",
    "\r",
    "\x00",
    "\x1f",
    "\x7f",
    "é",
    "ü",
    "\u2028",
    "日本",
    "\U0001f600",
    "ann.lee+x@mail.example.com",
    "a@b.co",
    "10.0.0.1",
    "203.0.113.11",
    "2001:db8::1",
    "fe80::1:2:3",
    "1:2:3:4:5:6:7:8",
    "+44 20 7946 0958",
    "(415) 555-0123",
    "415-555-0123",
    "415.555.0123",
    "2026-03-02T08:00:00Z",
    "https://shop.example.com/deals",
    "evil@example.com",
    "\u0040",
    "x" * 600,
    "1.2.3",
    "1.2.3.4.5",
    "+1",
    "123 456",
    "<email>",
    "<ip>",
    "<phone>",
]
KEYS = [
    "email",
    "Email",
    "EMAIL",
    "phone",
    "Phone",
    "ip",
    "IP",
    "category",
    "product_id",
    "name",
    "note",
    "query",
    "path",
    "url",
    "a@b.co",
    "10.0.0.1",
    "x",
    "ÉMAIL",
    "e-mail",
]


def pstr(r: random.Random) -> str:
    s = rstr(r)
    return s if s and s.isprintable() and len(s) < 500 else "p" + str(len(s))


def rstr(r: random.Random) -> str:
    return "".join(r.choice(PIECES) for _ in range(r.randint(0, 5)))


def rval(r: random.Random, depth: int = 0) -> object:
    k = r.random()
    if k < 0.45:
        return rstr(r)
    if k < 0.55:
        return r.choice([0, 1, -7, 12345678901, 1.5, 1e300, True, False, None])
    if depth < 4 and k < 0.8:
        return {
            r.choice(KEYS) if r.random() < 0.6 else rstr(r): rval(r, depth + 1)
            for _ in range(r.randint(0, 4))
        }
    if depth < 4:
        return [rval(r, depth + 1) for _ in range(r.randint(0, 3))]
    return rstr(r)


def random_corpus(seed: int, n: int) -> list[bytes]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        dd, hh, mm, ss = 2 + i // 86400, i // 3600 % 24, i // 60 % 60, i % 60
        ev: dict[str, object] = {
            "type": r.choice(["track"] * 6 + ["page", "screen", "identify", "alias", "group", "x"]),
            "timestamp": f"2026-03-{dd:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z",
        }
        if r.random() < 0.9:
            ev["userId"] = r.choice([f"u{i % 50}", pstr(r), pstr(r), rstr(r)])
        if r.random() < 0.5:
            ev["anonymousId"] = r.choice([f"anon-{i % 70}", pstr(r)])
        if r.random() < 0.8:
            ev["messageId"] = r.choice([f"m-{i}", pstr(r), rstr(r)])
        if r.random() < 0.8:
            ev["event"] = r.choice(["Product Viewed", "Order Completed", pstr(r), rstr(r)])
        if r.random() < 0.3:
            ev["name"] = pstr(r)
        if ev["type"] == "alias" or r.random() < 0.05:
            ev["previousId"] = r.choice([f"anon-{i % 70}", pstr(r), rstr(r), 5])
        if r.random() < 0.9:
            ev["properties"] = {
                r.choice(KEYS) if r.random() < 0.7 else rstr(r): rval(r)
                for _ in range(r.randint(0, 6))
            }
        if r.random() < 0.3:
            ev["traits"] = {"email": rstr(r)}
        ctx: dict[str, object] = {"ip": "203.0.113.1"}
        if r.random() < 0.2:
            ctx["consent"] = {
                "categoryPreferences": {"personalization": r.choice([True, False, None, 0])}
            }
        if r.random() < 0.3:
            ctx["device"] = {"type": r.choice(["mobile", rstr(r)])}
        ev["context"] = ctx
        line = orjson.dumps(ev)
        if r.random() < 0.1:
            line = line.replace(b"@", b"\\u0040")
        if r.random() < 0.05:
            line = line.replace(b".", b"\\u002e")
        if r.random() < 0.02:
            line = line + b'"'
        out.append(line)
    return out


def ingest(
    lines: list[bytes | str], pii: tuple[str, ...], mode: str, shards: int, quorum: int
) -> list[object]:
    clock = PartitionClock(60.0, 86400.0, quorum, 32)
    ing = PartitionIngest(
        "in", Validator(Taxonomy.default()), Privacy(pii, mode, "salt"), shards, 60.0, clock
    )
    out: list[object] = []
    for i in range(0, len(lines), 1000):
        out.extend(ing.feed([(f"in:{j}", lines[j]) for j in range(i, min(i + 1000, len(lines)))]))
    out.extend(ing.end())
    return out


def main(stream: Path, out: Path) -> None:
    dest = out.open("w")
    bench = stream.read_bytes().splitlines()
    valid, _ = generate(users=300, seed=11)
    hostile, _ = mix(valid, every=3, start=100)
    rnd = random_corpus(7, 60000)
    rnd_str = [b.decode("utf-8", "replace") for b in random_corpus(8, 20000)]
    settings = Settings.load(None)
    corpora = {
        "bench": (bench, [(settings.pii_fields, settings.pii_mode, 1, settings.watermark_quorum)]),
        "hostile": (
            hostile,
            [(settings.pii_fields, "hash", 1, 4), (("email", "name"), "drop", 4, 1)],
        ),
        "random": (
            rnd,
            [
                (("email", "phone", "ip"), "hash", 1, 1),
                (("email", "category"), "drop", 3, 4),
                ((), "hash", 1, 1),
            ],
        ),
        "random_str": (rnd_str, [(("email", "phone", "ip"), "hash", 2, 1)]),
    }
    total = 0
    for name, (lines, configs) in corpora.items():
        for cfg in configs:
            outs = ingest(lines, *cfg)
            h = hashlib.sha256()
            for k, v in outs:
                p = pickle.dumps((k, v), protocol=5)
                h.update(p)
                dest.write(f"{name}{cfg} {k} {v!r}\n")
            dest.write(
                f"== {name}{cfg} {len(lines)} lines -> {len(outs)} items sha {h.hexdigest()}\n"
            )
            print(name, cfg, len(outs), h.hexdigest()[:16], flush=True)
            total += len(outs)
    print("total items", total)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
