"""After a deletion, nothing in a shard's memory holds the person: a walk of memory.

A realistic stream (browsing, identify with an e-mail, cart, order, search, video, a
refused link on a shared device) of several users goes through ingest (validation,
privacy) and a shard engine, with the default config and with the demo's (recommender,
clustering scored against a truth, experiment). Three people are then erased at 75: one
active (``delete``; their e-mail is their userId, pseudonymised), one parked in the cold
tier (``delete_and_suppress``), one idle, waiting to go cold (``delete``). The test then
walks every object reachable from the shard state, the engine and its models, and our
modules' own data (process-wide caches): dicts, lists, tuples, sets, ``__dict__``,
``__slots__``, other referents, the cold tier's bytes also decoded. It looks for each
person's ids, pseudonyms and keyed hashes, message ids, order id, and their distinctive
values (e-mail and its hash, search query). Only what the design keeps is allowed:
``ALLOWED``. What ingest keeps is another test's (``test_..._ingests_memory_...``).

Every id and value of theirs holds ``qz7k`` (in no other fixture), so a hit is theirs,
not a coincidence. Times in minutes after 2026-03-02T08:00Z.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import types
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.models.hook import build_models
from audienceflow.operators.codec import decode_user
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import ControlRequest
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import parse_timestamp
from tests.helpers import Feeder, at

ROOT = Path(__file__).resolve().parent.parent
SALT = "erasure-audit-salt"
# The warm person logs in with their e-mail as userId: ingest pseudonymises it ("uid:").
WARM = {"user": "qz7k.warm@example.org", "anon": "anon-qz7kwarm", "email": "qz7k.warm@example.org"}
COLD = {"user": "user-qz7kcold", "anon": "anon-qz7kcold", "email": "qz7k.cold@example.org"}
IDLE = {"user": "user-qz7kidle", "anon": "anon-qz7kidle", "email": "qz7k.idle@example.org"}
OTHERS = [f"shopper-{i}" for i in range(12)]
PRODUCTS = [f"sku-{i}" for i in range(8)]


def _ev(minutes: float, mid: str, who: dict[str, str], etype: str, **body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": etype, "timestamp": at(minutes), "messageId": mid, **body}
    if "user" in who:
        out["userId"] = who["user"]
    if "anon" in who:
        out["anonymousId"] = who["anon"]
    return out


def _journey(t: float, tag: str, who: dict[str, str], email: str, salt: int) -> list[Any]:
    """A person browsing anonymously, identifying with an e-mail, viewing, searching,
    adding to the cart, ordering, watching a video: message ids ``msg-<tag>-<n>``."""
    anon = {"anon": who["anon"]}
    p = [PRODUCTS[(salt + k) % len(PRODUCTS)] for k in range(4)]
    steps: list[tuple[float, dict[str, str], str, dict[str, Any]]] = [
        (0, anon, "page", {"name": "Home"}),
        (
            1,
            anon,
            "track",
            {"event": "Product Viewed", "properties": {"product_id": p[0], "category": "shoes"}},
        ),
        (2, who, "identify", {"traits": {"email": email, "plan": "gold"}}),
        (
            3,
            who,
            "track",
            {"event": "Product Viewed", "properties": {"product_id": p[1], "category": "shoes"}},
        ),
        (
            4,
            who,
            "track",
            {"event": "Products Searched", "properties": {"query": f"engraved {tag} bracelet"}},
        ),
        (
            5,
            who,
            "track",
            {
                "event": "Product Added",
                "properties": {
                    "product_id": p[2],
                    "category": "shoes",
                    "price": 30.0,
                    "quantity": 1,
                    "email": email,
                },
            },
        ),
        (
            6,
            who,
            "track",
            {"event": "Product Viewed", "properties": {"product_id": p[3], "category": "bags"}},
        ),
        (
            7,
            who,
            "track",
            {
                "event": "Product Added",
                "properties": {
                    "product_id": p[3],
                    "category": "bags",
                    "price": 12.5,
                    "quantity": 2,
                },
            },
        ),
        (
            8,
            who,
            "track",
            {
                "event": "Video Playback Completed",
                "properties": {"content_asset_id": f"video-{salt % 3}", "category": "howto"},
            },
        ),
        (9, who, "page", {"name": "Cart"}),
    ]
    if salt % 2:  # every other one orders
        steps.append((10, who, "track", {"event": "Order Completed", "properties": {
            "order_id": f"order-{tag}", "products": [{"product_id": p[2], "price": 30.0}],
            "revenue": 30.0}}))  # fmt: skip
    return [
        _ev(t + dt, f"msg-{tag}-{n}", w, etype, **body)
        for n, (dt, w, etype, body) in enumerate(steps)
    ]


def _stream() -> list[Any]:
    """The cold person at -20 to -10 (cold from 50 on); the warm one at 30 to 40, whose
    session closes at 70, in the model epoch the requests at 75 read (its ranking kept by
    that epoch's view), and at 72; the others around them and after the requests."""
    # Visitors an hour before: the clusterer's warm-up (``models.clustering.warmup``, 50
    # sessions), so that the sessions closed later are assigned a cluster.
    lines = [
        _ev(-60 + k / 4, f"msg-b{k}", {"anon": f"visitor-{k}"}, "track", event="Product Viewed",
            properties={"product_id": PRODUCTS[k % len(PRODUCTS)], "category": "shoes"})
        for k in range(60)
    ]  # fmt: skip
    lines += _journey(-20, "qz7kcold", COLD, COLD["email"], 1)
    for i, u in enumerate(OTHERS):
        who = {"user": u, "anon": f"device-{i}"}
        lines += _journey(2 + 6 * i, f"s{i}", who, f"shopper{i}@example.com", i)
    lines += _journey(30, "qz7kwarm", WARM, WARM["email"], 3)
    # The warm person on shopper-2's device: a link between two known users, refused
    # (identity.max_user_ids 1), which shopper-2's profile remembers.
    shared = {"user": WARM["user"], "anon": "device-2"}
    lines.append(_ev(35.5, "msg-qz7kwarm-shared", shared, "page", name="Home"))
    # The warm person again just before the requests: a dedup entry and an interaction
    # the recommender has not learned yet when they come.
    view = {"event": "Product Viewed", "properties": {"product_id": PRODUCTS[5]}}
    lines.append(_ev(72, "msg-qz7kwarm-last", WARM, "track", **view))
    # The idle person: a short visit, no cart, no timer; at the requests it waits in
    # the cooling queue (from the session's close at 72 until 102, after the last event) to
    # go cold.
    anon = {"anon": IDLE["anon"]}
    lines.append(_ev(40, "msg-qz7kidle-0", anon, "page", name="Home"))
    lines.append(_ev(41, "msg-qz7kidle-1", IDLE, "identify", traits={"email": IDLE["email"]}))
    lines.append(_ev(42, "msg-qz7kidle-2", IDLE, "track", **view))
    for i, u in enumerate(OTHERS[:6]):  # after the requests: stream time moves on
        who = {"user": u, "anon": f"device-{i}"}
        lines += _journey(76 + 2 * i, f"t{i}", who, f"shopper{i}@example.com", i + 1)
    # the suppressed person again, after their request: filtered, nothing kept
    lines.append(_ev(90, "msg-qz7kcold-again", {"user": COLD["user"]}, "page", name="Home"))
    return sorted(lines, key=lambda x: x["timestamp"])


def _clock_hash(privacy: Privacy, ident: str) -> int:
    """How ingest's partition clock counts ``ident`` (``PartitionIngest._who``): an int."""
    key = hashlib.sha256(b"audienceflow partition clock\0" + privacy.salt).digest()
    return int.from_bytes(hashlib.blake2b(ident.encode(), key=key, digest_size=8).digest(), "big")


def _needles(privacy: Privacy, engine: ShardEngine) -> dict[str | int, str]:
    """What must not be found (text -> what it is of whom)."""
    out: dict[str | int, str] = {}
    for person, tag in ((WARM, "qz7kwarm"), (COLD, "qz7kcold"), (IDLE, "qz7kidle")):
        for kind in ("user", "anon"):
            ident = person[kind]
            named = privacy.pseudonym(ident, "uid")  # the id itself: it holds no PII
            out[ident] = f"{tag} {kind} id"
            if named != ident:
                out[named] = f"{tag} {kind} id's pseudonym"
            out[engine._hash(named)] = f"{tag} {kind} id's keyed hash"
            out[_clock_hash(privacy, named)] = f"{tag} {kind} id's clock hash"
        email = person["email"]
        out[email] = f"{tag} e-mail"
        out[privacy._hash(email)] = f"{tag} e-mail's hash"
        out[f"engraved {tag} bracelet"] = f"{tag} search query"
        out[f"msg-{tag}-"] = f"{tag} message id"
        out[f"order-{tag}"] = f"{tag} order id"
    return out


# What the design keeps of an erased person, each with why. The suppression list holds
# the keyed hashes of every identifier of a ``delete_and_suppress`` (README, Privacy,
# "The suppression list holds salted hashes"): without them their next events would be
# ingested again. ``suppressed_with`` links them so that an unsuppress lifts them all.
ALLOWED = {
    ("state.suppressed", "qz7kcold user id's keyed hash"),
    ("state.suppressed", "qz7kcold anon id's keyed hash"),
    ("state.suppressed_with", "qz7kcold user id's keyed hash"),
    ("state.suppressed_with", "qz7kcold anon id's keyed hash"),
}

# Ingest's partition clock counts the users it heard last by a keyed hash (an int, keyed
# with a key derived from the salt; ``PartitionIngest._who``), saved with the partition's
# offset: the hashes go as newer users push them out (at most ``VOICES * quorum``), not at
# a deletion, which reaches the shards, not the clock (and forgetting a vote would move
# the watermark, and so the outputs). README, Privacy, the retention table.
CLOCK = {"ingest.clock.voices", "ingest.clock.recent", "ingest.clock.ahead", "ingest.clock.above"}

_SKIP = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType, types.CodeType, types.FrameType)  # fmt: skip


def _walk(
    roots: dict[str, Any], parked: dict[str, bytes]
) -> Iterator[tuple[str, str | bytes | int]]:
    """(path, text) for every string or bytes reachable from ``roots``; the cold tier's
    bytes decoded into the users they hold. Modules, classes and functions are not
    followed (their globals would reach the test itself)."""
    seen: set[int] = set()
    cold = {id(b) for b in parked.values()}
    stack: deque[tuple[str, Any]] = deque(roots.items())  # breadth first: shortest paths
    while stack:
        path, obj = stack.popleft()
        # Each place it is, not only the first (one object); ints: the clock's hashes.
        if isinstance(obj, str | int) and not isinstance(obj, bool):
            yield path, obj
            continue
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray | memoryview):
            data = bytes(obj)
            yield path, data
            if id(obj) in cold:
                stack.append((path + ".decoded", decode_user(data)))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                stack.append((f"{path}[key]", k))
                stack.append((f"{path}[{k!r:.40}]", v))
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            stack.extend((f"{path}[]", v) for v in obj)
        elif isinstance(obj, float | complex | bool) or obj is None:
            continue
        else:
            attrs: dict[str, Any] = {}
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if isinstance(name, str) and hasattr(obj, name):
                        attrs[name] = getattr(obj, name)
            attrs.update(getattr(obj, "__dict__", None) or {})
            for name, v in attrs.items():
                stack.append((f"{path}.{name}", v))
            if not attrs:  # a C object (River's arrays, a deque's subclass...)
                stack.extend((f"{path}<ref>", r) for r in gc.get_referents(obj))


def _section(path: str) -> str:
    """``state.suppressed[...]...`` -> ``state.suppressed``: the allow-list's key."""
    return path.split("[", 1)[0]


def _find(
    engine: ShardEngine, feed: Feeder | None, needles: dict[str | int, str]
) -> list[tuple[str, str]]:
    found = []
    for path, text in _walk(_roots(engine, feed), engine.state.cold):
        for needle, what in needles.items():
            if isinstance(needle, int) or isinstance(text, int):
                hit = needle == text
            else:
                hit = needle in text if isinstance(text, str) else needle.encode() in text
            kept = (_section(path), what) in ALLOWED or (
                _section(path) in CLOCK and what.endswith("clock hash")
            )
            if hit and not kept:
                found.append((path, what))
    return found


CONFIGS = {"default": None, "demo": ROOT / "examples" / "demo.yaml"}


def _run(config: Path | None) -> tuple[ShardEngine, Feeder, Privacy, list[Any]]:
    """The stream through ingest and one shard, the three requests at 75 among it; the
    lines after 91 in a batch of their own, which ingest reads after the shard applied
    the requests."""
    engine, feed, privacy, out = _run_until_requests(config)
    requests = [
        ControlRequest("delete", (WARM["anon"],), "r-warm", parse_timestamp(at(75))),
        ControlRequest("delete_and_suppress", (COLD["user"],), "r-cold", parse_timestamp(at(75))),
        ControlRequest("delete", (IDLE["user"],), "r-idle", parse_timestamp(at(75))),
    ]
    out += engine.on_items([*requests, *_events(feed, at(75), at(91))])
    out += engine.on_items(_events(feed, at(91), "~"))
    return engine, feed, privacy, out


def _events(feed: Feeder, start: str, end: str) -> list[Any]:
    """The stream's lines from ``start`` to before ``end`` (ISO times) through ingest as a
    replay reads them (validation, privacy, routing): what it gives the shard."""
    from audienceflow.operators.routing import OUT

    lines = [
        (f"in:{i}", orjson.dumps(x))
        for i, x in enumerate(_stream())
        if start <= x["timestamp"] < end
    ]
    keyed = feed.ingest.feed(lines)
    assert not [v for k, v in keyed if k == OUT]  # nothing dead-lettered or filtered
    return [v for k, v in keyed if k != OUT]


def _run_until_requests(config: Path | None) -> tuple[ShardEngine, Feeder, Privacy, list[Any]]:
    """The stream before the requests, through the ingest a replay makes
    (``flows.partitions.make_ingest``: with the identity's blocked ids) and one shard."""
    from audienceflow.flows.partitions import make_ingest

    environ = {"AUDIENCEFLOW_PII_SALT": SALT, "AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1"}
    settings = Settings.load(config, environ=environ)
    state = ShardState("shard-000")
    state.models = build_models(settings, "shard-000")
    engine = ShardEngine(settings, state, models=state.models, emit_profiles=True)
    feed = Feeder(settings)
    feed.ingest = make_ingest(settings, "p", None, False)
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    out = engine.on_items(_events(feed, "", at(75)))
    return engine, feed, privacy, out


def _roots(engine: ShardEngine, feed: Feeder | None) -> dict[str, Any]:
    st = engine.state
    roots: dict[str, Any] = {f"state.{f}": getattr(st, f) for f in st.__getstate__()}
    roots["engine"] = engine
    # The process's own caches: our modules' data (not their functions or classes).
    for name, mod in sorted(sys.modules.items()):
        if name.startswith("audienceflow"):
            for key, value in vars(mod).items():
                if not key.startswith("__") and not isinstance(value, _SKIP):
                    roots[f"module {name}.{key}"] = value
    if feed is not None:
        roots["ingest"] = feed.ingest
    return roots


@pytest.mark.timeout(120)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_an_erased_person_is_nowhere_in_the_shards_memory(config: str) -> None:
    # The test can see them: before the requests, the same walk finds both people (the
    # cold one in the cold tier's decoded bytes), their values in ingest's memory of
    # clean values, and a ranking a view of the recommender kept (demo).
    early, feed_early, privacy, _ = _run_until_requests(CONFIGS[config])
    needles = _needles(privacy, early)
    seen = _find(early, feed_early, needles)
    whats = {w for _, w in seen}
    assert {"qz7kwarm user id's pseudonym", "qz7kwarm anon id", "qz7kcold user id"} <= whats
    assert {"qz7kwarm message id", "qz7kwarm order id", "qz7kcold search query"} <= whats
    assert any(p.startswith("state.cold[") and ".decoded" in p for p, _ in seen)
    assert any(p.startswith("module audienceflow.operators.privacy._CLEAN_VALUES") for p, _ in seen)
    assert any(p.startswith("ingest._whos") and w.endswith("clock hash") for p, w in seen)
    if early.cfg.models.recommendations.enabled:
        assert any(".ranked_for" in p for p, _ in seen)
    engine, _, _, out = _run(CONFIGS[config])  # (the same process: the same caches)
    receipts = [r for r in out if type(r).__name__ == "Receipt"]
    assert [r.status for r in receipts] == ["done", "done", "done"]
    st = engine.state
    assert COLD["user"] not in st.users and COLD["user"] not in st.cold
    # After them: nothing but what ALLOWED names, and still nothing once the stream ends.
    found = _find(engine, None, needles)
    assert not found, "\n".join(f"{what} at {path}" for path, what in found[:20])
    engine.finish()
    found = _find(engine, None, needles)
    assert not found, "\n".join(f"{what} at {path}" for path, what in found[:20])


@pytest.mark.timeout(120)
def test_an_erased_person_is_nowhere_in_ingests_memory_from_its_next_batch() -> None:
    """Ingest (one per input partition) keeps bounded caches keyed by user id: the
    clock's keyed hash of each (``PartitionIngest._whos``), the shard of each
    (``_index``, murmur2 only), the ids a blocked-id list let through (``_unblocked``).
    Requests go to the shards, not to every partition's ingest: a shard's deletion tells
    the process (``privacy.erasures``), and each ingest empties them at its next batch,
    even of the suppressed person's event it read before."""
    engine, feed, privacy, _ = _run(None)
    assert feed.ingest._unblocked and feed.ingest._whos  # in use (``_index``: murmur2 only)
    assert not _find(engine, feed, _needles(privacy, engine))


def test_the_hashes_sought_are_the_receipts_own() -> None:
    """The keyed hash the test looks for is the one a receipt lists (README, Privacy)."""
    engine, _, privacy, out = _run(None)
    (cold,) = [r for r in out if type(r).__name__ == "Receipt" and r.request_id == "r-cold"]
    key = SALT.encode()[:64]
    want = hashlib.blake2b(COLD["user"].encode(), key=key, digest_size=16).hexdigest()
    assert want in cold.identifiers
    assert _needles(privacy, engine)[want] == "qz7kcold user id's keyed hash"


class _SlottedBase:
    __slots__ = ("kept",)


class _Slotted(_SlottedBase):
    """A slot in a base class, a ``__dict__`` in the subclass: a walk of ``__dict__``
    alone misses the slot (and the C referents are not asked: it has attributes)."""

    def __init__(self, kept: Any) -> None:
        self.kept = kept
        self.other = 1


@pytest.mark.timeout(60)
def test_the_walk_reaches_every_kind_of_container() -> None:
    """The walk is no weaker than the shard's memory needs: a value in a slot, a tuple, a
    frozenset, a dict's key, a C object's referents (no ``__dict__`` entries), a cold
    tier's encoded user (found only decoded) is found; a module or function is not
    followed. (Each walk above passes vacuously if one of them is skipped.)"""
    import functools

    from audienceflow.operators.codec import encode_user
    from audienceflow.operators.state import UserState

    cold_user = UserState("qz7k-cold-walk", 0.0)
    blob = encode_user(cold_user)
    roots: dict[str, Any] = {
        "slot": _Slotted("qz7k-slot"),
        "tuple": (1.0, ("qz7k-tuple",)),
        "frozenset": frozenset({"qz7k-frozen"}),
        "key": {"qz7k-key": 1},
        "c-object": functools.partial(max, "qz7k-referent"),
        "cold": {"u": blob},
        "module": sys.modules[__name__],
    }
    texts = [(p, t) for p, t in _walk(roots, {"u": blob}) if isinstance(t, str)]
    for needle in ("slot", "tuple", "frozen", "key", "referent"):
        assert any(f"qz7k-{needle}" in t for _, t in texts), needle
    assert any(".decoded" in p and "qz7k-cold-walk" in t for p, t in texts)
    assert not any(p.startswith("module") for p, _ in texts)


@pytest.mark.timeout(60)
def test_every_ingest_of_the_process_forgets_its_ids_at_its_next_batch() -> None:
    """Several ingests in one process (Bytewax workers are threads of it): one deletion
    (``forget_erased``, which a shard calls) empties each one's caches keyed by user id
    at its own next batch, ``_index`` too (murmur2 placement, the only one that fills
    it), and not before (the counter is read at the start of a batch)."""
    from audienceflow.operators.privacy import forget_erased
    from audienceflow.operators.routing import PartitionIngest
    from audienceflow.operators.validate import Taxonomy, Validator
    from audienceflow.operators.watermarks import PartitionClock

    def ingest(name: str) -> PartitionIngest:
        clock = PartitionClock(lateness=0.0, max_future=3600.0, quorum=1)
        return PartitionIngest(name, Validator(Taxonomy.default()), Privacy((), "hash", SALT),
                               4, 60.0, clock, partitioner="murmur2",
                               blocked=lambda u: False)  # fmt: skip

    a, b = ingest("a"), ingest("b")
    who = {"user": "user-qz7kmurmur", "anon": "anon-qz7kmurmur"}
    line = orjson.dumps(_ev(0, "msg-qz7kmurmur-0", who, "page"))
    for ing in (a, b):
        ing.feed([(f"{ing.name}:0", line)])
        assert "user-qz7kmurmur" in ing._index and "user-qz7kmurmur" in ing._whos
        assert "user-qz7kmurmur" in ing._unblocked
    forget_erased()
    assert a._index and b._index  # not before their next batch
    for ing in (a, b):
        ing.feed([])
        assert not ing._index and not ing._whos and not ing._unblocked
