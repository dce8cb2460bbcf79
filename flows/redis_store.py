"""Live profiles in Redis: one hash per profile, written a batch at a time.

Key ``{redis.key_prefix}{canonical id}`` (default ``af:profile:u1``); one field per
profile entry (``operators.features.profile``), each value one JSON value
(strings quoted), plus ``updated_at``; the key expires ``redis.ttl`` after its
last write, so inactive users disappear. Every other identifier of the profile
(an ``anonymousId`` linked by an ``identify``, an ``alias``'s ``previousId``) has
a lookup key ``{key_prefix without its ':'}~id:{identifier}`` (default
``af:profile~id:a1``) holding the canonical id, written and expiring with the
profile. The keys hold the ids as the engine has them: ids that look like
e-mails, phone numbers or IPs were pseudonymised at ingest. A set
``{key_prefix without its ':'}~ids:{canonical id}`` (``af:profile~ids:u1``), written and
expiring with them, lists every identifier a lookup key was written for to that
profile, by this worker or an earlier one.

A batch is applied in order, in one pipelined round trip, with at most one write
per profile between two erasures (the latest). An ``Erasure`` (a deletion, or a
profile merged into another) is one script (``_ERASE``, atomic): it deletes the
profile key, every lookup key still naming the profile (from its set), and the
lookup key and profile key of every erased identifier; for each erased identifier
whose lookup key names another profile, that profile goes the same way. The
erasure's identifiers are what the shard's state knows of the person when it applies
the request, and Redis may know more: a request applied again by a worker that
lost that state (started without recovery state after input retention took the
person's events, or from a snapshot older than the request), or applied after the
person was evicted (``history_window``), named the request's ids only, and the lookup
keys of the profile's other identifiers stayed (``af:profile~id:a2`` naming a profile
the erasure had just removed, which no later erasure of that profile removed). The
writer forgets the profile, and every profile it remembers under or with an erased
identifier, so this writer never re-publishes them. (Another worker's writer may still
remember a profile the script reached through an identifier's lookup key, and write it
again after Redis lost its data: README, "Retention in Kafka and Redis".)

Faults:

- While Redis is unreachable the write is retried with back-off: the dataflow
  waits rather than lose a profile. Once the worker is stopping (``stop`` set,
  e.g. by SIGTERM) a failed attempt raises ``RedisAbandoned`` instead: the epoch
  never completes, so its work stays after the last snapshot and is redone on
  resume.
- A Redis that comes back empty (restarted without persistence, flushed) is
  detected. The worker's writer (``resend``) has a key named after its sink partition,
  the same across restarts (``{key_prefix without ':'}~writer:out-0``), holding
  ``done`` while Redis holds every profile its process's shards hold (with ``held``:
  ``done <shard layout> <those shards>``), ``resending`` while they write them again.
  Each batch (and a batch with nothing to write, every ``CHECK_EVERY_S``) reads it in the
  same round trip (``_mark``): missing (Redis lost its data, now or while the worker was
  down, or a first start), ``resending`` (a stop during a re-publication) or ``done`` for
  other shards (a layout changed) at a writer's first batch, or missing later, and the
  writer asks the shards of its process for every profile again
  (``flows/dataflow.RepublishRequests``, so it keeps no copy), and sets ``done`` only
  once every shard of the process has written them all: as soon as they have, batch or
  no batch (``_finish``, a thread of the writer's while a re-publication is owed; a bug
  of its own stops the worker at the writer's next batch or close, ``FinisherFailed``).
  Unless the writer keys of the cluster (``writers``, read in that round trip) vouch
  together for every shard the process holds (``_covers``: a new worker thread's writer,
  or processes merged): then it only marks its own key ``done``. The process's shards
  are the placement model's, checked as it runs (``RepublishRequests.misplaced``): once
  one of another process's is found in it, its writers set their keys ``resending``, ask
  the shards again, and never mark ``done`` (nothing is ``resent`` any more). A
  replay's writer (no ``resend``) sets a random sentinel key of its own (``SET .. GET``):
  missing after its first write, the data went away; it keeps the latest profile of the
  users it wrote (one compact JSON text each, ``_kept``), at most ``remember`` of them
  (least recently written forgotten first; entries older than the TTL are skipped, as
  Redis would have expired them), and writes those again.

>>> encode({"user_id": "u1", "segments": ["a"], "cart_items": 2})
{'user_id': b'"u1"', 'segments': b'["a"]', 'cart_items': b'2'}
>>> decode({b"segments": b'["a"]', b"device": b'"mobile"'})
{'device': 'mobile', 'segments': ['a']}
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from audienceflow.flows import metrics
from audienceflow.flows.redact import redact
from audienceflow.flows.sinks import FAILURES
from audienceflow.operators.records import Erasure, ProfileUpdate, owned

if TYPE_CHECKING:
    from audienceflow.flows.placement import HeldShards

log = logging.getLogger("audienceflow.redis")

_RETRY_MAX_S = 5.0
REMEMBER_MAX = 100_000  # profiles kept per writer for re-publishing after Redis lost its data
_REPUBLISH_CHUNK = 1000
CHECK_EVERY_S = 5.0  # a quiet writer looks for its sentinel this often (``_check``)
# A writer awaiting its shards (``_finish``) looks whether it was closed this often.
FINISH_WAIT_S = 1.0
_RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# A worker's writer key (``_mark``): Redis holds every profile, or a re-publication is under way.
DONE = b"done"
RESENDING = b"resending"
# What a writer owes when the writer keys already vouch for every shard of its process
# (``_covers``): no request, only its own key to mark "done" (``Resend.resent(0)``).
COVERED = 0

# One erasure, atomic (a Lua script runs alone). ARGV: the profile, lookup and set key
# prefixes, the erased profile's canonical id, then the erased identifiers. The profiles
# to remove: the canonical one, each identifier's own, and the one each identifier's
# lookup key names; for each, every lookup key its set lists that still names it, then
# the profile key and the set. Last the lookup keys of the canonical id and identifiers.
# Keys are built in the script, not passed as KEYS: it reads the sets to know them (one
# Redis, not a cluster). Returns the number of keys deleted.
_ERASE = """
local pp, lp, ip, canonical = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local profiles, seen = {canonical}, {[canonical] = true}
local function add(id)
  if id and not seen[id] then
    seen[id] = true
    profiles[#profiles + 1] = id
  end
end
for i = 5, #ARGV do
  add(redis.call('GET', lp .. ARGV[i]))
  add(ARGV[i])
end
local n = 0
for _, c in ipairs(profiles) do
  for _, m in ipairs(redis.call('SMEMBERS', ip .. c)) do
    if redis.call('GET', lp .. m) == c then
      n = n + redis.call('DEL', lp .. m)
    end
  end
  n = n + redis.call('DEL', pp .. c, ip .. c)
end
n = n + redis.call('DEL', lp .. canonical)
for i = 5, #ARGV do
  n = n + redis.call('DEL', lp .. ARGV[i])
end
return n
"""

T = TypeVar("T")


class RedisUnavailable(RuntimeError):
    """Redis could not be reached at start-up."""


class RedisRefused(RuntimeError):
    """Redis answered a write with an error retrying cannot mend (out of memory, a
    read-only replica, no permission): the profiles are not stored."""


class RedisAbandoned(RuntimeError):
    """Stopping while Redis is unreachable: the unwritten profiles are left to the resume."""


class FinisherFailed(RuntimeError):
    """The writer's own thread (``_finish``) failed on something other than Redis (a bug):
    its key was never marked "done". Raised at the writer's next batch, or at its close."""


StoreOp = ProfileUpdate | Erasure


class Resend(Protocol):
    """The shards of the writer's process, which hold every profile
    (``flows/dataflow.RepublishRequests``)."""

    def request(self) -> int:
        """Have every shard write all it holds again; the request's number (from 1)."""
        ...

    def resent(self, request: int) -> bool:
        """Whether every shard has written all it holds since ``request`` (for 0: whether
        every shard is built)."""
        ...

    def wait(self, request: int, timeout: float) -> bool:
        """``resent(request)``, waiting at most ``timeout`` seconds for it."""
        ...

    @property
    def misplaced(self) -> bool:
        """A shard was found where the placement model does not put it: the writer keys
        of the process vouch for none of its shards (``resent`` is never true again)."""
        ...


# One profile write: (canonical id, its fields, its other identifiers).
_Write = tuple[str, dict[str, Any], tuple[str, ...]]


def encode(fields: dict[str, Any]) -> dict[str, bytes]:
    """Profile fields as Redis hash values: each one JSON value."""
    return {k: orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for k, v in fields.items()}


def _kept(fields: dict[str, Any]) -> bytes:
    """A profile as the writer remembers it: one JSON text, in a bytes object of its size
    (``owned``). Kept as its 18 encoded hash values, as orjson returned them, a profile
    held ~75 KB, so a writer's 100,000 remembered profiles (``REMEMBER_MAX``) ~7 GB; as
    this, ~0.6 KB each (``bench/redis_sink.py``)."""
    return owned(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))


def decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A Redis hash back to profile fields, keys sorted."""
    return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}


class ProfileStore:
    """The profile hashes of one Redis database, as written by one writer."""

    def __init__(
        self,
        url: str,
        prefix: str,
        ttl: float = 30 * 86400,
        stop: threading.Event | None = None,
        remember: int = REMEMBER_MAX,
        resend: Resend | None = None,
        name: str | None = None,
        held: HeldShards | None = None,
        writers: Sequence[str] = (),
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.stop = stop
        # With ``resend`` (the worker: its shards hold every profile and write them again
        # when told) the writer keeps no copy; without it (a replay's sink), its own.
        self.resend = resend
        self.remember = 0 if resend is not None else remember
        self.owed: int | None = None  # the request whose re-publication the writer awaits
        # The sentinel's last round trip; the first batch sets it, with or without a
        # profile: a writer resumed quiet that waited for its first profile to set it
        # never found Redis emptied meanwhile (its shards held every profile).
        self.checked = time.monotonic() - CHECK_EVERY_S
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        # Not under the profile prefix, so a scan of profiles never meets it. A worker's
        # is named after its sink partition, so its restart finds what it left (``_mark``).
        self.sentinel = f"{prefix.rstrip(':')}~writer:{name or uuid.uuid4().hex}"
        # What the worker's writer key holds once Redis holds every profile of its
        # process's shards: "done", the shard layout and those shards (``held``), so that
        # another process or writer can tell which shards it vouches for (``_covers``).
        self.held = held if resend is not None else None
        self.done = DONE if self.held is None else _done(self.held)
        # The writer keys of the cluster's sink partitions (``writers``), this one's with
        # them, whatever the layout that wrote them: read when this one's does not say
        # "done" for this process's shards, whether together they vouch for all of them.
        self.writer_keys = (
            [f"{prefix.rstrip(':')}~writer:{w}" for w in writers] if self.held is not None else []
        )
        # A bug in ``_finish`` (not a Redis error): said at the next batch, or at close.
        self.failed: str | None = None
        self.marked = False  # the sentinel has been set once
        self.found: Any = None  # what the worker's writer key held at its last look (``_mark``)
        # A round trip failed (its reply lost, maybe after it ran): what it found of the
        # writer key is unknown, and the key may hold what it set (``_mark``).
        self.unsure = False
        self.first = True  # that look was the writer's first
        # The writer key's round trips and what they found (``owed``, ``unsure``, ...): the
        # sink's thread and ``_finish``'s, which marks it "done" between batches.
        self.lock = threading.RLock()
        self.finisher: threading.Thread | None = None
        self.closed = threading.Event()
        self.lookup_prefix = f"{prefix.rstrip(':')}~id:"
        self.set_prefix = f"{prefix.rstrip(':')}~ids:"
        # uid -> (monotonic time written, ``_kept`` fields, other identifiers)
        self.written: OrderedDict[str, tuple[float, bytes, tuple[str, ...]]] = OrderedDict()

    def check(self) -> None:
        """Raise ``RedisUnavailable`` naming the URL unless the server answers PING."""
        try:
            self.client.ping()
        except redis.exceptions.RedisError as exc:
            metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
            raise RedisUnavailable(
                f"cannot reach Redis at {self.where} (redis.url): {redact(str(exc))}"
            ) from None

    def key(self, user_id: str) -> str:
        return f"{self.prefix}{user_id}"

    def lookup_key(self, identifier: str) -> str:
        """The key naming the canonical id of the profile ``identifier`` belongs to."""
        return f"{self.lookup_prefix}{identifier}"

    def ids_key(self, user_id: str) -> str:
        """The set of the identifiers whose lookup keys were written naming ``user_id``."""
        return f"{self.set_prefix}{user_id}"

    def write(self, ops: Iterable[StoreOp]) -> int:
        """Apply profile writes and erasures, in order, in one pipeline; return the
        number of profiles written."""
        self._raise_failed()
        steps, covered = _collapse(ops)
        if not steps:
            if self.resend is not None:
                self._check()
            return 0
        now = time.monotonic()
        written = runs = 0
        # Each identifier a deletion of this batch names (a merge names none), and each
        # profile written, with the index of its step: one scan of what the writer
        # remembers per batch (``_forget``), not one per deletion.
        gone: dict[str, int] = {}
        wrote: dict[str, int] = {}
        for k, step in enumerate(steps):
            if isinstance(step, Erasure):
                self.written.pop(step.canonical, None)
                for ident in step.identifiers:
                    gone[ident] = k
                continue
            runs += 1
            for uid, fields, idents in step:
                if self.remember:
                    self.written[uid] = (now, _kept(fields), idents)
                    self.written.move_to_end(uid)
                    wrote[uid] = k
                written += 1
        if gone:
            self._forget(gone, wrote)
        while len(self.written) > self.remember:
            self.written.popitem(last=False)
        what = f"{written} profile writes, {len(steps) - runs} erasures"
        lost = self._retry(lambda: self._trip(steps), what)
        metrics.PROFILE_ERASURES.inc(len(steps) - runs + covered)
        if lost:
            self._lost()
        return written

    def _check(self) -> None:
        """A batch with no profile: still set or look for the sentinel, at most every
        ``CHECK_EVERY_S``, so a quiet worker finds Redis emptied too. One attempt: an
        unreachable Redis is for the next write to wait out, not a batch of gauges. Once
        the shards wrote everything again, at once: until then a stop re-sends it all."""
        now = time.monotonic()
        owed = self.owed  # read once: ``_finish`` may mark "done" (and clear it) meanwhile
        finishing = owed is not None and self.resend is not None and self.resend.resent(owed)
        if now - self.checked < CHECK_EVERY_S and not finishing:
            return
        self.checked = now
        try:
            lost = self._trip([])
        except redis.exceptions.RedisError as exc:
            metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
            return
        if lost:
            self._lost()

    def _lost(self) -> None:
        """Redis lost its data: every profile is written again."""
        if self.resend is None:
            self._republish()
            return
        found = self.found
        if self.owed in (None, COVERED) and self.resend.misplaced:
            log.warning(
                "Redis at %s: this process holds shards the placement model puts elsewhere "
                "(see the warning before): %s (was %r) no longer vouches for them, and the "
                "shards write every profile they hold",
                self.where,
                self.sentinel,
                found,
            )
        elif self.owed is None and isinstance(found, bytes) and found.startswith(DONE):
            # Its key read "done" for other shards (the look that found it, not a loss
            # during a re-send): the worker's layout changed (more processes, more worker
            # threads), and the writer keys do not vouch for all it holds now.
            log.info(
                "Redis at %s: the writer keys do not vouch for every shard this process "
                "holds (%s was %r; the layout changed, or an older release wrote it): the "
                "shards write every profile they hold",
                self.where,
                self.sentinel,
                self.found,
            )
        elif self.owed is None and self.found is None and self.first:
            # A first start looks the same as a Redis emptied while the worker was down:
            # the re-send is cheap when the shards hold nothing, and no alarm. Not once
            # something is owed: the loss came since that look, under the running worker.
            log.info(
                "Redis at %s has no %s (a first start, or Redis was emptied while the "
                "worker was down): the shards write every profile they hold",
                self.where,
                self.sentinel,
            )
        else:
            log.warning(
                "Redis at %s lost its data (restarted empty or flushed; or a stop came "
                "during a re-publication: %s was %r): the shards re-publish every profile "
                "they hold",
                self.where,
                self.sentinel,
                self.found,
            )
        self._owe(self.resend.request())

    def _owe(self, request: int) -> None:
        """Await ``request`` (``COVERED``: none), and mark the key "done" once resent."""
        self.owed = request
        if self.finisher is None:
            self.finisher = threading.Thread(target=self._finish, name="redis-done", daemon=True)
            self.finisher.start()

    def _finish(self) -> None:
        """``_finishing``; a failure other than Redis's (a bug) is logged and kept for the
        sink's thread to raise (``FinisherFailed``), the way a refused Kafka record is: the
        key stays unmarked, and ended silently the thread let the worker run on with it so
        until a restart re-sent every profile, with nobody told why. Named by its type and
        place only: its message may quote a profile."""
        try:
            self._finishing()
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.failed = (
                f"the writer of {self.sentinel} at {self.where} failed marking Redis complete "
                f"({type(exc).__name__} in {where.name}, {Path(where.filename).name}:"
                f"{where.lineno}): its key is not marked done, and a restarted worker "
                "writes every profile again"
            )
            log.error("%s", self.failed)
            with self.lock:
                self.finisher = None

    def _raise_failed(self) -> None:
        """Raise ``FinisherFailed`` if ``_finish`` failed since the last call. Reset only
        once read set: ``_finish`` may set it between the read and a reset of None."""
        failed = self.failed
        if failed is not None:
            self.failed = None
            raise FinisherFailed(failed)

    def _finishing(self) -> None:
        """While a re-publication is owed: mark the writer key "done" as soon as the shards
        have written everything, batch or no batch. Marked only with a later batch, the key
        of a writer whose sink got none (its worker thread holds no shard, and wrote one
        dead letter) read "resending" until a restart re-sent every profile. The shards'
        last chunks wake it (``Resend.wait``): no round trip of its own before then, and
        none at all in steady state. A round trip that fails is tried again after
        ``CHECK_EVERY_S`` (the sink's own writes wait out an unreachable Redis)."""
        resend = self.resend
        assert resend is not None
        pause = 0.0
        while not self.closed.wait(pause):
            pause = 0.0
            with self.lock:
                owed = self.owed
                if owed is None:
                    self.finisher = None  # under the lock: ``_lost`` starts another
                    return
            if not resend.wait(owed, FINISH_WAIT_S):
                continue
            with self.lock:
                # ``_mark`` asks ``resend`` again: a request since (Redis emptied again)
                # waits, and after a round trip whose reply was lost none marks "done".
                if self.owed is None or self.closed.is_set() or not resend.resent(self.owed):
                    continue
                try:
                    self._trip([])
                except redis.exceptions.RedisError as exc:
                    metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
                    pause = CHECK_EVERY_S

    def _trip(self, steps: list[list[_Write] | Erasure]) -> bool:
        """``_write``; for the worker's writer, with the request it makes when it finds
        Redis emptied, under ``lock``: ``_finish`` never marks "done" between a round trip
        that found the key missing (and set "resending") and that request."""
        with self.lock:
            lost = self._write(steps)
            if lost and self.resend is not None:
                self._lost()
                return False
        return lost

    def _write(self, steps: list[list[_Write] | Erasure]) -> bool:
        """One round trip; True when the sentinel was gone (Redis lost its data)."""
        with self.client.pipeline(transaction=False) as pipe:
            if self.resend is not None:
                mark = self._mark(pipe)
            else:
                pipe.set(self.sentinel, b"1", ex=self.ttl, get=True)
            for step in steps:
                if isinstance(step, Erasure):
                    pipe.eval(_ERASE, 0, self.prefix, self.lookup_prefix, self.set_prefix,
                              step.canonical, *step.identifiers)  # fmt: skip
                    continue
                for uid, fields, idents in step:
                    self._put(pipe, uid, fields, idents)
            try:
                replies = pipe.execute()
            except redis.exceptions.RedisError:
                self.unsure = True
                raise
        self.checked = time.monotonic()
        if self.resend is not None:
            lost = mark(replies)
            self.unsure = False
            return lost
        lost = self.marked and replies[0] is None
        self.marked = True
        return lost

    def _mark(self, pipe: Any) -> Callable[[list[Any]], bool]:
        """Queue the worker's writer key's round trip; return how to read its replies (True:
        Redis lost profiles). It never reads ``done`` unless every profile of the process's
        shards was written since Redis last lost its data, whatever stopped when:
        ``done`` is set only over ``resending`` (XX), and a missing key becomes
        ``resending`` (NX) in the same round trip that finds it missing. After a round trip
        whose reply was lost, ``resending`` may be what that one set over a missing key:
        it counts as missing, and no ``done`` is set in the round trip that reads it.

        With ``held``, ``done`` names the shards it vouches for. A key that does not say
        "done" for this process's shards (missing, ``resending``, or "done" for others: a
        new worker thread's, a layout changed) has the writer keys read too, after the NX:
        a loss after them takes this key too, which the XX that marks it then finds. If
        they vouch for every shard the process holds (``_covers``), that proves Redis
        holds all it would write again, and the writer only marks its key (``COVERED``)."""
        key, ex = self.sentinel, self.ttl
        owed, unsure = self.owed, self.unsure
        if owed in (None, COVERED) and self.resend is not None and self.resend.misplaced:
            # The mask of its "done" (or of the keys it took at their word) may name shards
            # the process never held, nor wrote again: un-vouched whatever it says, and the
            # process's shards write what they hold. Never "done" again (``resent``): a
            # restart re-sends it all.
            pipe.set(key, RESENDING, ex=ex, get=True)

            def unvouched(replies: list[Any]) -> bool:
                self.found, self.first, self.marked = replies[0], not self.marked, True
                return True

            return unvouched
        if owed is None:  # Redis complete, as far as the writer knows
            pipe.getex(key, ex=ex)
            pipe.set(key, RESENDING, ex=ex, nx=True)
            held = self.held
            ask = held is not None and bool(self.writer_keys) and self.found != self.done
            if ask:
                pipe.mget(self.writer_keys)

            def found(replies: list[Any]) -> bool:
                value = replies[0]
                self.found, self.first, self.marked = value, not self.marked, True
                if value == self.done:
                    return False
                if ask and held is not None and _covers([value, *replies[2]], held):
                    log.info(
                        "Redis at %s: the writer keys vouch for every shard this process "
                        "holds (%s was %r): no profile to write again",
                        self.where,
                        key,
                        value,
                    )
                    self._owe(COVERED)
                    return False
                return True

            return found
        assert self.resend is not None
        if unsure or not self.resend.resent(owed):
            pipe.set(key, RESENDING, ex=ex, get=True)
            # Emptied again during the re-send (or maybe, seen by a round trip unanswered).
            return lambda replies: replies[0] is None or (unsure and replies[0] == RESENDING)
        pipe.set(key, self.done, ex=ex, xx=True, get=True)
        pipe.set(key, RESENDING, ex=ex, nx=True)

        def done(replies: list[Any]) -> bool:
            if replies[0] is None:
                return True  # emptied again at the end: not done, and the key says so
            self.owed = None
            self.found = self.done
            log.info("Redis at %s holds every profile again (%s)", self.where, key)
            return False

        return done

    def _put(self, pipe: Any, uid: str, fields: dict[str, Any], idents: tuple[str, ...]) -> None:
        key = self.key(uid)
        pipe.hset(key, mapping=encode(fields))
        pipe.expire(key, self.ttl)
        for ident in idents:
            pipe.set(self.lookup_key(ident), uid.encode(), ex=self.ttl)
        if idents:
            ids = self.ids_key(uid)
            pipe.sadd(ids, *idents)
            pipe.expire(ids, self.ttl)

    def _forget(self, gone: dict[str, int], wrote: dict[str, int]) -> None:
        """Forget every remembered profile under or with an identifier a deletion named
        (what the erasure's script may remove beyond its canonical profile), unless the
        batch wrote it after that deletion. ``gone``: identifier -> step of the last
        deletion naming it; ``wrote``: profile -> step of its write in the batch."""
        drop = []
        for uid, (_, _, idents) in self.written.items():
            if uid not in gone and gone.keys().isdisjoint(idents):
                continue
            erased = max(gone.get(x, -1) for x in (uid, *idents))
            if wrote.get(uid, -1) < erased:
                drop.append(uid)
        for uid in drop:
            del self.written[uid]

    def _republish(self) -> None:
        """Write every remembered profile again (those not yet expired by the TTL)."""
        fresh_after = time.monotonic() - self.ttl
        entries = [
            (u, orjson.loads(kept), i)
            for u, (at, kept, i) in self.written.items()
            if at > fresh_after
        ]
        log.warning(
            "Redis at %s lost its data (restarted empty or flushed): re-publishing %d profiles",
            self.where,
            len(entries),
        )
        for i in range(0, len(entries), _REPUBLISH_CHUNK):
            chunk = entries[i : i + _REPUBLISH_CHUNK]

            def send(chunk: list[_Write] = chunk) -> None:
                with self.client.pipeline(transaction=False) as pipe:
                    for uid, fields, idents in chunk:
                        self._put(pipe, uid, fields, idents)
                    pipe.execute()

            self._retry(send, f"{len(chunk)} profile re-publications")
            metrics.REDIS_REPUBLISHED.inc(len(chunk))

    def _retry(self, attempt: Callable[[], T], what: str) -> T:
        """``attempt()`` until Redis answers; raise ``RedisAbandoned`` once stopping."""
        wait = 0.1
        while True:
            try:
                return attempt()
            except redis.exceptions.RedisError as exc:
                metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
                reason = redact(str(exc))
                if not isinstance(exc, _RETRYABLE):
                    raise RedisRefused(f"Redis at {self.where} refused {what}: {reason}") from None
                if self.stop is not None and self.stop.is_set():
                    raise RedisAbandoned(
                        f"stopping while Redis at {self.where} is unreachable ({reason}): "
                        f"{what} left to the resume from the last snapshot"
                    ) from None
                log.warning(
                    "Redis at %s unreachable (%s); retrying %s in %.1fs",
                    self.where,
                    reason,
                    what,
                    wait,
                )
                if self.stop is not None:
                    self.stop.wait(wait)
                else:
                    time.sleep(wait)
                wait = min(wait * 2, _RETRY_MAX_S)

    def canonical(self, identifier: str) -> str:
        """The canonical id of ``identifier``'s profile: its lookup key's value, else itself."""
        found = self.client.get(self.lookup_key(identifier))
        return found.decode() if isinstance(found, bytes) else identifier

    def read(self, identifier: str) -> dict[str, Any] | None:
        """The live profile ``identifier`` belongs to (any of its identifiers: the lookup
        key first, then the profile key), or None when Redis holds none."""
        raw = self.client.hgetall(self.key(self.canonical(identifier)))
        return decode(raw) if raw else None  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the finisher and the client; raise ``FinisherFailed`` if the finisher
        failed since the last batch (a worker stopping now still says so)."""
        self.closed.set()
        finisher = self.finisher
        if finisher is not None:  # at most its round trip under way
            finisher.join(FINISH_WAIT_S + 10)
        self.client.close()
        self._raise_failed()


class _ProfilePartition(StatelessSinkPartition[Any]):
    def __init__(self, store: ProfileStore) -> None:
        self.store = store

    def write_batch(self, items: list[Any]) -> None:
        ops = (rec for _, rec in items if type(rec) is ProfileUpdate or type(rec) is Erasure)
        try:
            metrics.PROFILE_WRITES.inc(self.store.write(ops))
        except RedisRefused as exc:
            # A process of a cluster (``replay --processes``) ends on Bytewax's own panic,
            # which does not carry this: kept where the process says why it failed.
            FAILURES.append(str(exc))
            raise

    def close(self) -> None:
        self.store.close()


class RedisProfileSink(DynamicSink[Any]):
    """Applies the ``ProfileUpdate`` and ``Erasure`` records of a ``(key, record)`` stream;
    one client per worker."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProfilePartition:
        return _ProfilePartition(ProfileStore(self.url, self.prefix, self.ttl))


def _done(held: HeldShards) -> bytes:
    """A writer key's "done" for the shards ``held``: ``done <layout> <shards, hex mask>``."""
    return b"%s %s %x" % (DONE, held.layout.encode(), held.mask)


def _covers(values: Iterable[Any], held: HeldShards) -> bool:
    """Whether the writer keys' ``values`` vouch together for every shard ``held`` holds.

    A key says "done" for shards only while Redis holds every profile they held when it
    was set, and has lost nothing since: a loss takes the key with it. Profiles written
    since went to Redis the ordinary way, so Redis holds every profile of each shard some
    key names, whichever process holds it now. Only a "done" of the same shard layout
    counts (under another, the i-th shard holds other users); a bare "done" (written by
    a release that named no shards), "resending" or anything else vouches for none.

    >>> from audienceflow.flows.placement import HeldShards
    >>> _covers([b"done ab 5", b"resending", None, b"done ab 2"], HeldShards("ab", 7))
    True
    >>> _covers([b"done ab 5", b"done cd 2", b"done"], HeldShards("ab", 7))
    False
    """
    vouched = 0
    for value in values:
        parts = value.split(b" ") if isinstance(value, bytes) else ()
        if len(parts) != 3 or parts[0] != DONE or parts[1] != held.layout.encode():
            continue
        try:
            shards = int(parts[2], 16)
        except ValueError:
            continue
        if shards >= 0:
            vouched |= shards
    return held.mask & ~vouched == 0


def _collapse(ops: Iterable[StoreOp]) -> tuple[list[list[_Write] | Erasure], int]:
    """Runs of profile writes (the latest per profile) split by erasures, in order; and
    how many erasures were left out as done by the one before them (``_covered``)."""
    steps: list[list[_Write] | Erasure] = []
    run: dict[str, _Write] = {}
    covered = 0
    for op in ops:
        if type(op) is ProfileUpdate:
            uid = op.user_id
            idents = tuple(i for i in op.identifiers if i != uid)
            run.pop(uid, None)  # re-inserted: the latest write keeps its place in the order
            run[uid] = (uid, op.fields, idents)
        else:
            assert isinstance(op, Erasure)
            if run:
                steps.append(list(run.values()))
                run = {}
            elif steps and _covered(steps[-1], op):
                covered += 1
                continue
            steps.append(op)
    if run:
        steps.append(list(run.values()))
    return steps, covered


def _covered(before: list[_Write] | Erasure, erasure: Erasure) -> bool:
    """Whether the erasure ``before``, with no write between them, already removed all
    ``erasure`` would: its canonical id is one of ``before``'s identifiers and so are all
    of its own. ``_ERASE`` removes each identifier's profile, the one its lookup key
    names, their lookup keys and sets, so the second finds nothing left. A deletion's
    erasures (one per canonical id of the request, each listing all its identifiers)
    ran the script n times over n identifiers: ~10,000 GETs and DELs for 100 ids."""
    if type(before) is not Erasure:
        return False
    ids = before.identifiers
    if erasure.canonical not in ids:
        return False
    return erasure.identifiers is ids or set(erasure.identifiers) <= set(ids)
