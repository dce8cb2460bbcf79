"""Ingest of one input partition: raw lines in, keyed items out.

Each input partition (a Kafka partition, or a replayed file) validates, filters
and routes its own lines and keeps its own event time (``PartitionClock``):

- an event older than its partition's watermark is dead-lettered as
  ``late_event``; one too far ahead is a ``future_event`` (live), or is held until what
  follows shows a gap in the recording or a skewed clock (replay, bounded reading; see
  ``watermarks``);
- every other event goes to its shard, ``shard_index(user id)``: ``crc32(id) mod shards``,
  or with ``state.placement: partition`` the input partition a Kafka producer keyed by the
  user's id would write it to (``partitioner``: ``murmur2``, the Java client's default,
  or ``crc32``, librdkafka's), so a topic keyed by user is processed where it is read;
- when the partition's watermark has crossed a ``tick``-sized step of event time
  during a batch of lines, one ``Watermark`` goes to every shard at the end of the
  batch (after the events it covers), and one at once when the partition turns
  idle or active, so every shard knows every partition's time; a backlog read in
  batches of a thousand lines sends one per batch, not one per tick of event time;
- the shards of an event's other identifiers get a ``LinkNotice`` (one list per shard
  per batch, before the batch's watermark);
- dead letters and filtered events are keyed ``OUT``, or ``out_key(source)`` when the
  source says which of its partitions read them (the live worker keeps them there),
  but for an accepted line's event judged late or too far ahead: its dead letter goes
  to the event's shard (``records.Rejected``), which filters it instead if the person
  is suppressed (ingest holds no suppression list).

In replay and bounded reading, a partition's first events wait until ``quorum``
of them have been read, so its first watermark comes from several events and a
skewed clock on the very first one is judged like any other.

>>> from audienceflow.operators.validate import Validator, Taxonomy
>>> from audienceflow.operators.privacy import Privacy
>>> from audienceflow.operators.watermarks import PartitionClock
>>> ing = PartitionIngest("f", Validator(Taxonomy.default()), Privacy(()), 1, 60.0,
...                       PartitionClock(lateness=0.0, max_future=3600.0, quorum=1))
>>> line = b'{"type":"page","userId":"u","timestamp":"2026-03-02T08:00:00Z"}'
>>> [(k, type(v).__name__) for k, v in ing.feed([("f:1", line)])]
[('shard-000', 'Event'), ('shard-000', 'Watermark')]
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final

from audienceflow.operators import control
from audienceflow.operators.ahead import Waiting
from audienceflow.operators.ingest_guard import unprocessable
from audienceflow.operators.privacy import Privacy, erasures
from audienceflow.operators.records import (
    ControlRequest,
    DeadLetter,
    Event,
    Filtered,
    LinkNotice,
    Rejected,
    Watermark,
    event_line,
    iso,
)
from audienceflow.operators.validate import Validator
from audienceflow.operators.watermarks import NEG_INF, PartitionClock

OUT: Final = "_out"


def out_key(part: str) -> str:
    """The key of the dead letters and filtered events read by source partition ``part``
    (Bytewax's name): the worker sink routes them to the worker that read them."""
    return f"{OUT}@{part}"


def is_out(key: str) -> bool:
    """``OUT``, or an ``out_key``: not a shard's key (shard keys start ``shard-``)."""
    return key.startswith(OUT)


Keyed = tuple[str, Any]


_M: Final = 0x5BD1E995
_U32: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (seed ``0x9747b28c``), as a signed 32-bit int.

    The Java client's default partitioner puts key ``k`` in partition
    ``(murmur2(k) & 0x7fffffff) % partitions``; librdkafka's ``murmur2_random`` too.

    >>> murmur2(b"21"), murmur2(b"foobar")
    (-973932308, -790332482)
    """
    n = len(data)
    h = (0x9747B28C ^ n) & _U32
    end = n - n % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _U32
        k ^= k >> 24
        k = (k * _M) & _U32
        h = ((h * _M) & _U32) ^ k
    rest = n % 4
    if rest:
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


PARTITIONERS = ("crc32", "murmur2")


def shard_index(ident: str, shards: int, partitioner: str = "crc32") -> int:
    """The shard of an identifier: stable across processes and runs (not ``hash()``).

    ``crc32`` is also librdkafka's default partitioner (``consistent_random`` on a key),
    ``murmur2`` the Java client's: with one shard per partition of a topic keyed by user
    id, the shard of a user is the partition its events were written to.
    """
    if shards == 1:
        return 0
    data = ident.encode()
    if partitioner == "murmur2":
        return (murmur2(data) & 0x7FFFFFFF) % shards
    return zlib.crc32(data) % shards


def shard_name(index: int) -> str:
    return f"shard-{index:03d}"


def layout(shards: int, partitioner: str, placement: str = "shared") -> str:
    """How users are spread over shards: what a resumed snapshot must have been written with.

    A shard's users are those ``shard_index`` maps to it; with another number of shards,
    another hash, or shards keyed by input partition instead of by name, they belong
    elsewhere, and their events would find no profile.

    >>> layout(8, "crc32"), layout(4, "murmur2", "partition")
    ('8 shards by crc32', '4 partition shards by murmur2')
    """
    kind = "partition shard" if placement == "partition" else "shard"
    return f"{shards} {kind}{'s' if shards != 1 else ''} by {partitioner}"


def shard_key(user_id: str, shards: int, partitioner: str = "crc32") -> str:
    """The name of a user's shard (see ``shard_index``)."""
    return shard_name(shard_index(user_id, shards, partitioner))


def _void_alias(ev: Event, blocked: Callable[[str | None], bool]) -> Filtered | None:
    """An alias one of whose two identifiers is a blocked value, filtered as
    ``blocked_identifier`` (else None).

    An alias only links ``previousId`` to ``userId``; a blocked value never links, so such
    an alias has nothing to apply. Routed, it went to the shard of ``"null"`` (one shard
    for every sender of it), which made a profile for the other identifier there.
    """
    for key, value in (("userId", ev.user_id), ("previousId", ev.previous_id)):
        if blocked(value):
            detail = (
                f"step 'ingest': an alias's {key} is a blocked value "
                "(identity.blocked_values, identity.blocked_patterns), which never links"
            )
            return Filtered("blocked_identifier", ev.position, ev.message_id, detail)
    return None


class PartitionIngest:
    """Validates, filters and routes one input partition's lines; keeps its event time.

    ``clock`` is the partition's state to snapshot (with the source's offset).
    ``live``: the future is judged against the wall clock passed to ``feed``.
    """

    def __init__(
        self,
        name: str,
        validator: Validator,
        privacy: Privacy,
        shards: int,
        tick: float,
        clock: PartitionClock,
        live: bool = False,
        control: bool = False,
        keys: tuple[str, ...] = (),
        partitioner: str = "crc32",
        home: int | None = None,
        out: str = OUT,
        lead: float = 0.0,
        blocked: Callable[[str | None], bool] | None = None,
        max_ahead: int = 1000,
        dedup_window: float = 3600.0,
        max_ahead_total: int = 10_000,
    ) -> None:
        self.name = name
        # Identity's blocked values (``identity.is_blocked`` of the config's; None: identity
        # is off, and ids are taken as they are).
        self.blocked = blocked
        # Live: how far the partition's time may run ahead of the wall clock (``time.max_lead``).
        self.lead = lead
        # Live: the events accepted ahead of the wall clock (plus ``lead``), which wait at
        # their shards until it reaches them: at most ``max_ahead`` of one user
        # (``time.max_ahead_per_user``) and ``max_ahead_total`` in all
        # (``time.max_ahead_total``) at a time (``_ahead_of_time``). Saved with the offset
        # by the Kafka source (``waiting_ahead``, ``resume_ahead``): the events stay held at
        # their shards across a restart, so their count must too. ``state.dedup_window``:
        # a copy of a waiting event within it never waits (its shard drops it as a
        # duplicate), so it is not counted.
        self.max_ahead = max_ahead
        self.max_ahead_total = max_ahead_total
        self.dedup_window = dedup_window
        self.waiting = Waiting(max_ahead, max_ahead_total, dedup_window, privacy.salt)
        self.out = out  # the key of what it dead-letters or filters
        self.validator = validator
        self.privacy = privacy
        # The dataflow key of each shard: its name, or a name Bytewax places on the
        # worker reading the shard's partition (``state.placement: partition``).
        self.keys = list(keys) if keys else [shard_name(i) for i in range(shards)]
        if len(self.keys) != shards:
            raise ValueError(f"{len(self.keys)} shard keys for {shards} shards")
        self.shards = shards
        self.partitioner = partitioner
        self.home = home  # the shard this partition's events should go to, if it has one
        self.routed_away = 0  # events sent to another partition's shard (placement: partition)
        self._index: dict[str, int] = {}  # id -> shard, for murmur2 (pure Python, ~3 µs)
        self._whos: dict[str, int] = {}  # id -> its hash for the clock (``_who``)
        # User ids ``blocked`` was asked of and does not block (``_blocked_user``): a user's
        # next events are routed without asking again (a call and its checks per event).
        self._unblocked: set[str] = set()
        self._erasures = erasures()  # the process's deletions its caches have seen
        self._who_key = hashlib.sha256(b"audienceflow partition clock\0" + privacy.salt).digest()
        self.tick = tick
        self.clock = clock
        self.live = live
        self.control = control  # its lines are data subjects' requests (operators/control.py)
        self.step = math.floor(clock.base / tick) if clock.base > NEG_INF else NEG_INF
        self.idle = False
        # Events and requests accepted: routed to shards, or held for the partition's first
        # watermark (not dead-lettered or filtered). A live source counts a partition's
        # silence from the last of these (``idle_after``).
        self.accepted = 0
        self.stepped = False  # the watermark crossed a tick step in this batch
        # Link notices of this batch, per shard: sent as one list per shard (an item that
        # crosses processes costs far more than its size), before any watermark.
        self.notices: dict[int, list[LinkNotice]] = {}
        # Replay/bounded: a partition's first events wait for its first watermark.
        # Replay/bounded: a partition's first events wait for its first watermark, in the
        # clock (saved with the offset: a restart goes on waiting with them).
        self.pending: list[Event] | None = (
            clock.first if not live and not control and clock.base == NEG_INF else None
        )
        self.pending_users = {e.user_id for e in self.pending or ()}  # their users
        self.accepted += len(self.pending or ())
        # First events a snapshot saved waiting, restored where none wait (read live now,
        # after a bounded read): routed with the first batch.
        self.carried: list[Event] = []
        if self.pending is None and clock.first:
            self.carried, clock.first = clock.first, []
        if live:  # read live after a bounded read: its votes go (``PartitionClock.go_live``)
            clock.go_live()

    def feed(
        self, items: Iterable[tuple[str, bytes | str]], now: float | None = None
    ) -> list[Keyed]:
        """Ingest ``(position, raw line)`` items; ``now`` is the wall clock when live."""
        out: list[Keyed] = []
        at = now if self.live else None
        if self._erasures != erasures():
            self._forget_ids()
        if self.carried:
            self._carry(at, out)
        if self.control:
            for position, raw in items:
                self._request(raw, position, at, out)
        else:
            # Bound methods: calling an instance goes through its type's __call__ slot.
            validate = self.validator.__call__
            privacy = self.privacy.__call__
            event = self._event
            blocked = self.blocked
            unblocked = self._unblocked
            checked: Event | DeadLetter | Filtered
            for position, raw in items:
                # ``check_line``, inline (one call less per line).
                try:
                    checked = validate(raw, position)
                except Exception as exc:  # no single line may stop the stream
                    checked = unprocessable("validate", exc, privacy, raw, position)
                else:
                    try:
                        checked = privacy(checked)
                    except Exception as exc:
                        checked = unprocessable("privacy", exc, privacy, raw, position)
                if type(checked) is Event:
                    if blocked is not None:
                        if checked.type == "alias":
                            void = _void_alias(checked, blocked)
                            if void is not None:
                                out.append((self.out, void))
                                continue
                        elif (
                            (anon := checked.anonymous_id) is not None
                            and checked.user_id != anon
                            and checked.user_id not in unblocked
                            and self._blocked_user(checked.user_id)
                            and not blocked(anon)
                        ):
                            # ``"userId": "null"`` (or -1, "undefined"...) names no profile:
                            # the event is its anonymous id's, routed by it (its shard holds
                            # that profile) and counted under it by the partition's clock.
                            checked.user_id = anon
                    event(checked, raw, at, out)
                else:
                    out.append((self.out, checked))
            if at is not None and self.waiting.due(at + self.lead):
                # Once a batch, not only at the next event ahead: a burst of many users'
                # events ahead stayed listed after the wall clock passed them, for as long
                # as no other came.
                self.waiting.release(at + self.lead)
        if self.notices:
            self._send_notices(out)
        if self.stepped:
            self._broadcast(out)  # once per batch, after the events it covers
        return out

    def feed_events(self, events: Iterable[Event], now: float | None = None) -> list[Keyed]:
        """Route already validated events (tests, and users testing their config)."""
        out: list[Keyed] = []
        at = now if self.live else None
        if self._erasures != erasures():
            self._forget_ids()
        if self.carried:
            self._carry(at, out)
        for ev in events:
            self._event(ev, None, at, out)
        if self.notices:
            self._send_notices(out)
        if self.stepped:
            self._broadcast(out)
        return out

    def set_idle(self, idle: bool = True) -> list[Keyed]:
        """The partition turned idle (nothing for a while, or at its end) or active."""
        out: list[Keyed] = []
        if idle:
            self._flush_pending(out)
        if idle != self.idle:
            self.idle = idle
            self._broadcast(out)
        return out

    def end(self) -> list[Keyed]:
        """The partition is complete (end of a file, or of a topic in bounded mode)."""
        out: list[Keyed] = []
        self._flush_pending(out)
        self._resolve(*self.clock.end(), out)
        self.idle = True
        self._broadcast(out)
        return out

    def watermark(self) -> Watermark:
        return Watermark(self.name, self.clock.watermark(), self.idle)

    # --- internals --------------------------------------------------------

    def _broadcast(self, out: list[Keyed]) -> None:
        if self.notices:
            self._send_notices(out)  # a watermark never passes a notice it covers
        self.stepped = False
        mark = self.watermark()
        out.extend((k, Watermark(mark.partition, mark.at, mark.idle, k)) for k in self.keys)

    def _wake(self, out: list[Keyed]) -> None:
        """An idle partition accepted an event or request: it is active again, and says so
        before what it accepted. Lines it dead-letters or filters leave it idle: a
        partition that only carries those has no time to hold anyone back with."""
        self.idle = False
        self._broadcast(out)

    def _carry(self, now: float | None, out: list[Keyed]) -> None:
        """Route the first events a snapshot saved waiting (``carried``), before the batch."""
        carried, self.carried = self.carried, []
        for ev in carried:
            self._event(ev, None, now, out)

    def _send_notices(self, out: list[Keyed]) -> None:
        keys = self.keys
        out.extend((keys[i], batch) for i, batch in sorted(self.notices.items()))
        self.notices = {}

    def _event(
        self, ev: Event, raw: bytes | str | None, now: float | None, out: list[Keyed]
    ) -> None:
        """Route an accepted event, or hold or reject it by the partition's time. ``raw``:
        its line, quoted by a dead letter; None for an event not read from a line here
        (``feed_events``, carried, pending), whose dead letter writes it out
        (``event_line``) only when there is one."""
        pending = self.pending
        if pending is not None:
            self.accepted += 1
            pending.append(ev)
            # Its first watermark once ``quorum`` users have spoken (``establish``), or a
            # horizon's worth of events has come from fewer: a burst from one device does
            # not set it.
            users = self.pending_users
            users.add(ev.user_id)
            if len(users) >= self.clock.quorum or len(pending) >= self.clock.horizon:
                self._flush_pending(out)
            return
        clock = self.clock
        ts = ev.ts
        base = clock.base
        # Within [watermark, base + max_future] an event is neither late nor in the future
        # (the usual case, decided without a call); anything else is the clock's to judge.
        if now is not None or not (base - clock.lateness <= ts <= base + clock.max_future):
            verdict = clock.verdict(ts, now)
            if verdict == "future" and now is None:
                # Replay or bounded reading: a gap in the recording or a skewed clock,
                # which what follows tells apart (``PartitionClock.hold``). Kept as the
                # event (privacy applied), never as the raw line: it is saved with the
                # partition's offset.
                clock.hold(ts, ev.user_id, ev)
                self._settle(out)
                return
            if verdict is None and now is not None and ts > now + self.lead:
                verdict = self._ahead_of_time(ev, now + self.lead)
            if verdict is not None:
                line = raw if raw is not None else event_line(ev)
                self._reject(self._dead(verdict, ev, line, now), ev, out)
                return
        self._route(ev, out)
        if now is None:  # replay, bounded: users kept in the snapshot, by a keyed hash
            who = self._whos.get(ev.user_id)
            moved = clock.observe(ts, None, self._who(ev.user_id) if who is None else who)
        else:  # live: users never leave the process (``PartitionClock.heard``)
            moved = clock.observe(ts, now + self.lead, hash(ev.user_id))
        if moved:
            step = math.floor(clock.base / self.tick)
            if step > self.step:
                self.step = step
                self.stepped = True
        if clock.held:
            self._settle(out)

    def _ahead_of_time(self, ev: Event, horizon: float) -> str | None:
        """Live: ``'ahead'`` if ``ev``, ahead of ``horizon`` (the wall clock plus ``lead``),
        is one more than its user may have waiting (``max_ahead`` of their events accepted
        ahead of the wall clock and not yet reached by it), ``'ahead_total'`` if one more
        than the partition may (``max_ahead_total``); else None, and it is counted (a copy
        of one waiting is not). Without the first, one device (or a bot) sending events
        stamped days ahead, each within ``time.max_future``, grew its shard's held events,
        state and snapshots without limit (100,000 events: ~112 MB, a 16.6 MB snapshot);
        without the second, as many users doing so (or a fleet of clocks ahead) grew the
        shards' held events and this reader's snapshot (100,000 events: 6-9 MB)."""
        waiting = self.waiting
        waiting.release(horizon)
        over = waiting.admit(ev.ts, ev.user_id, ev.message_id)
        if over is None:
            return None
        return "ahead" if over == "user" else "ahead_total"

    def waiting_ahead(self) -> bytes | None:
        """Live: the events counted against ``time.max_ahead_per_user`` and
        ``time.max_ahead_total`` now, to save with the partition's offset (``Waiting.pack``:
        keyed digests of users and message ids, no id); None if none wait."""
        return self.waiting.pack() if len(self.waiting) else None

    def resume_ahead(self, waiting: bytes | Iterable[tuple[float, str, str]]) -> None:
        """Count again the events ``waiting_ahead`` saved (or, from a snapshot written
        before it packed them, their (time, user, message id) list): read before the
        resumed offset, they wait at their shards, restored from the same snapshot. Those
        the wall clock has reached since go at the next event or batch."""
        if isinstance(waiting, bytes):
            self.waiting.unpack(waiting)
        else:
            self.waiting.restore(waiting)

    def _settle(self, out: list[Keyed]) -> None:
        """Route the held events the partition's time now vouches for; dead-letter those
        that left the window still held (``PartitionClock.settle``)."""
        accepted, rejected = self.clock.settle()
        self._resolve(accepted, rejected, out)
        if accepted:
            self._step()

    def _resolve(self, accepted: list[Event], rejected: list[Event], out: list[Keyed]) -> None:
        """Dead-letter the held events rejected as future events; route those accepted."""
        for ev in rejected:
            self._reject(self._dead("future", ev, event_line(ev), None, held=True), ev, out)
        for ev in accepted:
            self._route(ev, out)

    def _step(self) -> None:
        """Note that the watermark crossed a ``tick`` step, if it did (``_event``'s, inline)."""
        step = math.floor(self.clock.base / self.tick)
        if step > self.step:
            self.step = step
            self.stepped = True

    def _route(self, ev: Event, out: list[Keyed]) -> None:
        """Send an accepted event to its shard (and its links to theirs)."""
        if self.idle:
            self._wake(out)
        self.accepted += 1
        shards = self.shards
        home = self._shard(ev.user_id) if shards > 1 else 0
        out.append((self.keys[home], ev))
        if self.home is not None and home != self.home:
            self.routed_away += 1
        if shards > 1 and ev.known:
            # The other identifiers' shards learn of the link (see records.LinkNotice).
            for other in (ev.anonymous_id, ev.previous_id):
                if other is not None:
                    there = self._shard(other)
                    if there != home:
                        notice = LinkNotice(other, ev.user_id, ev.ts)
                        batch = self.notices.get(there)
                        if batch is None:
                            self.notices[there] = [notice]
                        else:
                            batch.append(notice)

    def _forget_ids(self) -> None:
        """A shard of the process applied a deletion since the last batch: the caches keyed
        by user id (``_index``, ``_whos``, ``_unblocked``) are emptied, so no erased id stays
        in them (each only saves work: a miss computes or asks again)."""
        self._erasures = erasures()
        self._index.clear()
        self._whos.clear()
        self._unblocked.clear()

    def _who(self, user: str) -> int:
        """``user`` as the clock counts users (replay and bounded reading): a hash keyed
        with the privacy salt, so the clock's snapshot holds no id, nor anything a list of
        ids can be checked against without the salt."""
        whos = self._whos
        who = whos.get(user)
        if who is None:
            if len(whos) >= 1 << 15:
                whos.clear()  # a bounded cache: a miss only costs the hash again
            digest = hashlib.blake2b(
                user.encode("utf-8", "surrogatepass"), key=self._who_key, digest_size=8
            ).digest()
            who = whos[user] = int.from_bytes(digest, "big")
        return who

    def _blocked_user(self, user: str) -> bool:
        """``blocked(user)``, a user id it does not block remembered (``_unblocked``)."""
        assert self.blocked is not None
        if self.blocked(user):
            return True
        unblocked = self._unblocked
        if len(unblocked) >= 1 << 15:
            unblocked.clear()  # a bounded cache: a miss only asks again
        unblocked.add(user)
        return False

    def _shard(self, ident: str) -> int:
        if self.partitioner == "crc32":
            return zlib.crc32(ident.encode()) % self.shards
        index = self._index
        i = index.get(ident)
        if i is None:
            if len(index) >= 1 << 16:
                index.clear()  # a bounded cache: a miss only costs the hash again
            i = index[ident] = shard_index(ident, self.shards, self.partitioner)
        return i

    def _request(
        self, raw: bytes | str, position: str, now: float | None, out: list[Keyed]
    ) -> None:
        """A control line: its request goes to every shard (any may hold the identifiers).

        A request is never late (it applies at once when stream time has passed it).
        Live, one more than ``time.max_future`` ahead of the wall clock is dead-lettered
        as ``future_event``, as an event would be. Read bounded (a replay) there is no
        clock to say it is in the future: it is applied, at the end of the input if the
        events end before its time (``ShardEngine``'s ``controls``), as dropping it would
        keep the profile of a person who asked to be erased.
        """
        req = control.parse(raw, position, self.privacy)
        if type(req) is not ControlRequest:
            out.append((self.out, req))
            return
        if now is not None and req.ts - now > self.clock.max_future:
            detail = (
                f"step 'control': request time {iso(req.ts)} is more than "
                f"{self.clock.max_future:g}s ahead of the wall clock {iso(now)}"
            )
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            dead = DeadLetter("future_event", detail, position, text, stage="control")
            out.append((self.out, self.privacy(dead)))
            return
        if self.idle:
            self._wake(out)
        self.accepted += 1
        out.extend((k, req) for k in self.keys)
        if self.clock.observe(req.ts, None if now is None else now + self.lead):
            self._step()

    def _flush_pending(self, out: list[Keyed]) -> None:
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        self.pending_users = set()
        self.clock.first = []
        self.accepted -= len(pending)  # counted when held; counted again as they are routed
        after = self.clock.establish([ev.ts for ev in pending])
        if after is not None:  # what is before the gap first, then the rest, held, as one
            pending = [e for e in pending if e.ts < after] + [e for e in pending if e.ts >= after]
        if self.clock.base > NEG_INF:
            self.step = math.floor(self.clock.base / self.tick)
        for ev in pending:
            # None of them is late (the base is the earliest of them): no dead letter
            # quotes their line.
            self._event(ev, None, None, out)
        if self.clock.base > NEG_INF:
            self._broadcast(out)  # after the events it covers

    def _reject(self, dead: DeadLetter, ev: Event, out: list[Keyed]) -> None:
        """Send an event's dead letter to its user's shard, which filters it instead if
        the person is suppressed (``records.Rejected``)."""
        home = self._shard(ev.user_id) if self.shards > 1 else 0
        at = self.clock.watermark()
        rejected = Rejected(dead, ev.user_id, ev.anonymous_id, ev.previous_id, ev.message_id, at)
        out.append((self.keys[home], rejected))

    def _dead(
        self, verdict: str, ev: Event, raw: bytes | str, now: float | None, held: bool = False
    ) -> DeadLetter:
        c = self.clock
        if verdict == "late":
            reason = "late_event"
            detail = (
                f"event time {iso(ev.ts)} is before the watermark {iso(c.watermark())} of "
                f"input partition {self.name!r} (allowed lateness {c.lateness:g}s)"
            )
        elif verdict in ("ahead", "ahead_total"):
            assert now is not None
            reason = "future_event"
            clock = "the wall clock" + (
                f" plus time.max_lead ({self.lead:g}s)" if self.lead else ""
            )
            if verdict == "ahead":
                bound = (
                    f"{self.max_ahead} events of its user ahead of it already wait for "
                    "their time (time.max_ahead_per_user)"
                )
            else:
                bound = (
                    f"{self.max_ahead_total} events of input partition {self.name!r} ahead "
                    "of it already wait for their time (time.max_ahead_total)"
                )
            detail = (
                f"event time {iso(ev.ts)} is ahead of {clock}, {iso(now + self.lead)}, and {bound}"
            )
        else:
            reason = "future_event"
            ref = "the wall clock" if now is not None else f"input partition {self.name!r}'s time"
            at = now if now is not None else c.base
            detail = (
                f"event time {iso(ev.ts)} is more than {c.max_future:g}s ahead of {ref} {iso(at)}"
            )
            if held:
                detail += (
                    f", and the events after it did not follow it there (they came from fewer "
                    f"than {max(c.quorum, 2)} users, and the partition's next {c.window} "
                    "events were not all as far ahead); raise time.max_future if its "
                    "events are sparser than that"
                )
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        dead = DeadLetter(reason, f"step 'ingest': {detail}", ev.position, text, stage="ingest")
        scrubbed = self.privacy(dead)
        assert isinstance(scrubbed, DeadLetter)
        return scrubbed
