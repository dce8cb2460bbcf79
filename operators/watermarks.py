"""Event time of one input partition (a Kafka partition, or a replayed file).

A partition's *base* is a robust "latest event time": it moves to an event time
only once ``quorum`` of the partition's last ``window`` accepted events are at or
after it, so a few isolated events from a skewed device clock cannot drag it
along (with ``quorum=1`` it is the plain maximum). Where events name their user
(``who``: replay and bounded reading, which have no wall clock to cap the base at),
each user is one vote however many events it sends, the latest of its times above
the base, and the base moves to the ``quorum``-th latest vote of the users heard
from in the last ``horizon`` events: a burst from one device ahead (a phone's
offline queue) is one vote, and users whose events come in runs each vote too. A
partition that had fewer users than ``quorum`` in its last ``horizon`` events (one
user's export, a small tenant) moves to the earliest of those users' latest event
times, never past the events' rule: users who visit in turns, in runs longer than the
window, move it at each visit, and a user who sends one event a day ahead, then older
ones (a batch uploaded late), holds it back with those. The partition's watermark is
``base - lateness``: an event older than its own partition's watermark is late.
Live events name their user too, without votes: where the last ``window`` events came
from ``quorum`` users or more, the base moves only to a time with ``quorum`` of them at
or after it from as many different users (``_live``).

Replay and bounded reading judge the future against the base: an event more than
``max_future`` ahead of it is *held* (``hold``), not yet accepted. A gap in the
recording (a week without traffic) and a device with a skewed clock look the same
at first; what follows tells them apart. After a gap every event is held; a skewed
device's events come among others that are not. So once the events read since the
last accepted one are all held and come from ``quorum`` different users (or number
``window``), the base jumps to the earliest of them and they are accepted; at the
end of the partition, ``quorum`` such events suffice. An event still held when it
leaves the last ``window`` events, or at the end, is a future event. Live reading
judges the future against the wall clock only (injected as ``now``), so a stream
that was historical becomes live without any manual step, and stops the base at it.

>>> c = PartitionClock(lateness=60.0, max_future=86400.0, quorum=2, window=8)
>>> [c.observe(ts) for ts in (100.0, 200.0, 10_000_000.0, 300.0)]
[False, True, True, True]
>>> c.base, c.watermark()  # 300 and the outlier are at or after 300: the outlier alone is not
(300.0, 240.0)
>>> c.verdict(200.0), c.verdict(250.0), c.verdict(300.0 + 86401.0)
('late', None, 'future')

Two users a week later (``quorum=2``): a gap, so both are accepted and time moves on.

>>> c.hold(700_000.0, "ann", "e1"); c.settle()
([], [])
>>> c.hold(700_050.0, "bob", "e2"); c.settle(), c.base
((['e1', 'e2'], []), 700000.0)

Users ann (1), bob (2) and cy (3), and a phone (9) an hour ahead, in a burst: its
events count as one user.

>>> d = PartitionClock(lateness=60.0, max_future=86400.0, quorum=2, window=8)
>>> [d.observe(ts, who=u) for ts, u in ((100.0, 1), (200.0, 2))]
[False, True]
>>> [d.observe(3800.0 + i, who=9) for i in range(4)], d.base  # bob and the phone: 200
([True, False, False, False], 200.0)
>>> d.observe(300.0, who=3), d.base  # cy and the phone
(True, 300.0)
"""

from __future__ import annotations

import bisect
import operator
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

NEG_INF: Final = float("-inf")
# Timestamps outside these years are rejected at validation, so deadline arithmetic
# (an event time plus a day, a week...) can never leave the calendar.
MIN_TS: Final = 0.0  # 1970-01-01T00:00:00Z
MAX_TS: Final = 253370764799.0  # 9998-12-31T23:59:59Z
# A partition with fewer than ``quorum`` users in its last ``HORIZON_WINDOWS * window``
# events (1,024 at the defaults) keeps time with those users; a burst from one device
# shorter than that (a phone's offline queue of up to a thousand events, flushed at once)
# counts as one user.
HORIZON_WINDOWS: Final = 32


# The sort key of ``above``: its time (a C callable, where a def costs a call per comparison).
_ts = operator.itemgetter(0)
# The user of an entry of ``above``.
_who = operator.itemgetter(2)
# The sort key of ``voices``' items: the seq of the user's latest event.
_last = operator.itemgetter(1)

# An entry of ``above`` (whose user may be None) or of ``ahead``: (ts, seq, who).
_Entry = TypeVar("_Entry", bound=tuple[float, int, Any])


def _heard_after(entries: list[_Entry], seq: int) -> list[_Entry]:
    """The entries of ``above`` or ``ahead`` heard after event ``seq``, in order.

    A function of its own, not a comprehension in the hot methods: a comprehension
    reading a method's locals makes them cells, created at every call (the clock's
    ``observe`` runs once per accepted event), where they filter rarely."""
    return [e for e in entries if e[1] > seq]


def _earliest(entries: list[_Entry], seq: int) -> int:
    """The earliest seq of ``entries``, or ``seq`` (the event being counted) if there are
    none: no entry added later was heard before it."""
    return min([e[1] for e in entries], default=seq)


def _passed(entries: list[_Entry], base: float) -> int:
    """How many of ``entries`` (sorted by time) a base at ``base`` passes: those at or
    before it (a scan from the start, without bisect's key call per step)."""
    i = 0
    for e in entries:
        if not e[0] <= base:
            break
        i += 1
    return i


def _later_than(entries: list[_Entry], ts: float) -> list[_Entry]:
    """The entries of ``above`` or ``ahead`` later than ``ts``, in order (see ``_heard_after``)."""
    return [e for e in entries if e[0] > ts]


# ``voices`` is pruned to ``quorum`` users once it holds this many times as many (and
# ``ahead`` to its latest votes).
VOICES: Final = 8


@dataclass(slots=True)
class PartitionClock:
    """The robust watermark of one input partition; pickles with the source's offset.

    A native class in the compiled build (``make fast``): it pickles as a call of its
    class with its fields (``__reduce__``), the same bytes in both builds, and reads a
    pickle of the plain class it was before (``__setstate__``) in either.
    """

    lateness: float
    max_future: float
    quorum: int = 4
    window: int = 32
    base: float = NEG_INF
    top: float = NEG_INF  # the latest accepted event time, isolated outliers included
    seq: int = 0
    # Accepted event times above ``base`` among the last ``window`` events: (ts, seq,
    # who), sorted by ts; ``who`` (a keyed hash of the user, never the id) None counts as
    # a user of its own. Small: after each advance, fewer than ``quorum`` users' entries,
    # plus outliers until they fall out of the window.
    above: list[tuple[float, int, int | None]] = field(default_factory=list)
    # Events more than ``max_future`` ahead of ``base`` (replay and bounded reading), in
    # arrival order: (seq, ts, user, item). Saved with the partition's offset.
    held: list[tuple[int, float, str, Any]] = field(default_factory=list)
    # The users heard last (``who`` -> the seq of their latest event): at least the last
    # ``quorum`` different ones, at most ``VOICES * quorum``. How many users the partition
    # had in its last ``horizon`` events, up to ``quorum``. Empty where events come
    # without ``who`` (live, control requests).
    voices: dict[int, int] = field(default_factory=dict)
    # Where events name their user: each user's vote, the latest of their times above
    # ``base``: (ts, seq of their latest event above the base, who), sorted by ts, one
    # entry per user; at most ``VOICES * quorum`` (beyond, the earliest votes go).
    ahead: list[tuple[float, int, int]] = field(default_factory=list)
    # The seq after which users were counted (-1: not yet). ``voices`` tells how many users
    # the partition has lately once it covers a whole ``horizon``.
    since: int = -1

    # Replay and bounded reading: a partition's first events, waiting for its first base
    # (``establish``), kept as the events (privacy applied). Saved with the offset.
    first: list[Any] = field(default_factory=list)
    # The time of each user's latest event (``who`` -> ts), for the users in ``voices``:
    # their votes where the partition has fewer users than ``quorum`` lately. Not the
    # latest of their times (``ahead``): a user's one event a day ahead must not stop
    # their next, older ones from holding the base back.
    recent: dict[int, float] = field(default_factory=dict)
    # Live: the users of the last ``window`` events above the base (``_live``). Not
    # saved: a restored clock starts with none.
    heard: deque[int] = field(default_factory=deque, compare=False, repr=False)
    # No entry of ``above`` (``ahead``) was heard before this seq: until the window (the
    # horizon) reaches it, none can have left it, and ``observe`` does not look. Derived
    # from the entries (again at each restore); never saved, never compared.
    above_floor: int = field(default=0, init=False, compare=False, repr=False)
    ahead_floor: int = field(default=0, init=False, compare=False, repr=False)

    @property
    def horizon(self) -> int:
        """How many of its latest events tell how many users a partition has lately."""
        return self.window * HORIZON_WINDOWS

    def __reduce__(self) -> tuple[type[PartitionClock], tuple[Any, ...]]:
        fields: tuple[Any, ...] = (
            self.lateness,
            self.max_future,
            self.quorum,
            self.window,
            self.base,
            self.top,
            self.seq,
        )
        voices = self._recent_voices()
        ahead = [e for e in self.ahead if e[1] > self.seq - self.horizon]
        if not voices and not self.first:
            # No users counted (live, control): the fields of a clock from before they
            # were. Control entries name no user: the bytes that code wrote, which it
            # reads too. Live ones keep which were the same user, numbered 1, 2, ... in
            # place of the process's hash of them.
            if all(e[2] is None for e in self.above):
                return PartitionClock, (*fields, [e[:2] for e in self.above], self.held)
            ids: dict[int | None, int | None] = {None: None}
            above = [(e[0], e[1], ids.setdefault(e[2], len(ids))) for e in self.above]
            return PartitionClock, (*fields, above, self.held)
        return PartitionClock, (
            *fields,
            self.above,
            self.held,
            voices,
            ahead,
            self.since,
            self.first,
            {w: t for w, t in self.recent.items() if w in voices},
        )

    def __post_init__(self) -> None:
        # Typed Any: the compiled build checks a tuple's length where it is typed.
        entries: list[Any] = self.above
        if any(len(e) == 2 for e in entries):  # saved before users were counted
            self.above = [(e[0], e[1], None) if len(e) == 2 else e for e in entries]
        # Live: empty when restored (the users come back under new hashes; the entries
        # ``above`` still tell which of them were the same user).
        self.heard = deque(maxlen=self.window)
        self.above_floor = _earliest(self.above, self.seq)
        self.ahead_floor = _earliest(self.ahead, self.seq)

    def __setstate__(self, state: Any) -> None:
        """A clock pickled as a plain class, ``(None, {slot: value})``; one saved before
        ``held`` existed reads with nothing held."""
        slots = state[1] if isinstance(state, tuple) else state
        self.held = []
        self.voices = {}
        self.ahead = []
        self.since = -1
        self.first = []
        self.recent = {}
        for key, value in slots.items():
            setattr(self, key, value)
        self.__post_init__()

    def watermark(self) -> float:
        """Events older than this are late for this partition."""
        return self.base - self.lateness

    def verdict(self, ts: float, now: float | None = None) -> str | None:
        """``'late'``, ``'future'`` or ``None`` (acceptable) for an event at ``ts``.

        ``now`` (epoch seconds from the wall clock) is given when reading live: the
        future is then judged against it alone.
        """
        if ts < self.base - self.lateness:
            return "late"
        if now is not None:
            return "future" if ts > now + self.max_future else None
        if self.base > NEG_INF and ts > self.base + self.max_future:
            return "future"
        return None

    def observe(self, ts: float, now: float | None = None, who: int | None = None) -> bool:
        """Count an accepted event of the user ``who`` (a keyed hash; None: a user of its
        own); return True when the base moved.

        ``now`` (live: the wall clock plus ``time.max_lead``) caps the base: a partition's
        time never runs ahead of it, so a device or tool whose clock is ahead, even in a burst of
        ``quorum`` events, cannot make the partition's other events late. Its events are
        accepted (up to ``max_future`` ahead) and wait, at the shard, for the time they name.
        """
        seq = self.seq = self.seq + 1
        if ts > self.top:
            self.top = ts
        if who is not None and now is None:  # its user heard (replay, bounded reading)
            voices = self.voices
            voices[who] = seq
            self.recent[who] = ts
            if len(voices) > VOICES * self.quorum or self.since < 0:
                self._prune()
        if ts <= self.base:
            return False
        if who is not None and now is not None:
            # Live: users with events above the base only (one whose clock stands still
            # at the base, or behind it, would be waited for forever).
            self.heard.append(who)
        above = self.above
        if not above or ts >= above[-1][0]:
            above.append((ts, seq, who))  # in order, the usual case: where insort puts it
        else:
            bisect.insort(above, (ts, seq, who), key=_ts)
        if who is not None:
            if now is not None:
                return self._live(now)
            # Replay and bounded reading, an event above the base naming its user: two rules, the
            # base moves to the earlier of the times they give. The events': ``quorum`` of the
            # last ``window`` events at or after it (devices ahead, scattered, stay apart). The
            # users': each user one vote, the latest time of theirs above the base; the
            # ``quorum``-th latest vote of the users heard in the last ``horizon`` events (a
            # burst from one device is one vote; users sending runs of events each vote too). A
            # partition with fewer users than that lately moves to the earliest of those
            # users' latest event times, never past the events' rule.
            # (Once per accepted event: inline here, not a method of its own.)
            if len(above) > 2 * self.window:  # bounded, whatever the rule below reads
                above[:] = _heard_after(above, seq - self.window)
            ahead = self.ahead
            oldest = seq - self.window * HORIZON_WINDOWS  # ``horizon``, inline
            for vote in ahead:  # at most ``quorum`` entries: one per user
                if vote[2] == who:
                    k = ahead.index(vote)
                    if vote[0] >= ts and vote[1] > oldest:  # the same vote, heard again
                        ahead[k] = (vote[0], seq, who)
                        break
                    del ahead[k]  # a later time, or a vote not heard from in a horizon
                    bisect.insort(ahead, (ts, seq, who), key=_ts)
                    break
            else:
                if not ahead or ts >= ahead[-1][0]:
                    ahead.append((ts, seq, who))  # in order, the usual case
                else:
                    bisect.insort(ahead, (ts, seq, who), key=_ts)
            quorum = self.quorum
            if len(ahead) > VOICES * quorum:  # bounded: the votes heard, then the latest
                ahead[:] = _heard_after(ahead, oldest)
                if len(ahead) > VOICES * quorum:
                    ahead[:] = _later_than(ahead, ahead[0][0])
            # The events' rule, as without users: ``quorum`` of the last ``window`` events at
            # or after it. Scattered devices ahead, each a user, stay apart in it.
            # Entries are added as they are heard, then only removed: none was heard before
            # ``above_floor`` (the earliest when last looked at), so none can have left the
            # window before it reaches that seq. Looked at once in about ``window`` events,
            # not at each; ``ahead`` (below) once in about a horizon.
            window = seq - self.window
            if self.above_floor <= window:
                above[:] = _heard_after(above, window)
                self.above_floor = _earliest(above, seq)
            m = len(above)
            if m < quorum:
                return False
            n = len(ahead)
            if n >= quorum:
                if self.ahead_floor <= oldest:  # votes not heard from in a horizon: none count
                    ahead[:] = _heard_after(ahead, oldest)
                    n = len(ahead)
                    self.ahead_floor = _earliest(ahead, seq)
                if n >= quorum:  # and the users' rule: one burst is one vote
                    voted = ahead[n - quorum][0]
                    events = above[m - quorum][0]
                    # ``_advance``, inline (once per event; ``observe`` calls this without
                    # ``now``, so no cap): ``above`` and ``ahead`` hold ``quorum`` or more.
                    base = voted if voted < events else events
                    if base <= self.base:
                        return False
                    self.base = base
                    if above[0][0] <= base:
                        if m > 1 and above[1][0] <= base:
                            del above[: _passed(above, base)]
                        else:
                            del above[0]
                    if ahead[0][0] <= base:
                        if n > 1 and ahead[1][0] <= base:
                            del ahead[: _passed(ahead, base)]
                        else:
                            del ahead[0]
                    return True
            if self._users() >= quorum:
                return False
            # Few users lately: each votes with the time of their latest event, and the base
            # moves to the earliest vote, never past the events' rule. (Users who visit in
            # turns, in runs longer than the window, are never all among its events.)
            base = above[m - quorum][0]
            recent = self.recent
            for w, s in self.voices.items():
                if s > oldest:
                    t = recent.get(w)
                    if t is None:  # not heard since a snapshot from before votes were kept
                        return False
                    if t < base:
                        base = t
            return self._advance(base, None)
        quorum = self.quorum
        n = len(above)
        if n < quorum:
            return False
        oldest = self.seq - self.window
        for e in above:  # a loop, not any(): no generator per event
            if e[1] <= oldest:
                above[:] = _heard_after(above, oldest)
                n = len(above)
                if n < quorum:
                    return False
                break
        base = above[n - quorum][0]
        # Sorted: everything before the new base is at or below it, and so are the
        # entries after it that tie with it (bisect_right, without a key call per step).
        i = n - quorum + 1
        if now is not None and base > now:  # capped: what is above it stays counted
            if now <= self.base:
                return False
            base, i = now, 0
        self.base = base
        while i < n and above[i][0] <= base:
            i += 1
        del above[:i]
        if self.ahead:  # votes of events that named their user (a clock restored as such)
            self.ahead[:] = _later_than(self.ahead, base)
        return True

    def go_live(self) -> None:
        """Read live from now on. After a bounded read, the replay's users and votes go, so
        that no snapshot holds live entries' users (a hash of the process's own) in the
        form that keeps them, and its entries' users (keyed hashes) are forgotten. A
        clock saved live keeps its entries' users (numbered 1, 2, ...)."""
        if self.since >= 0:  # users were counted (votes and ``recent`` come with them)
            self.voices.clear()
            self.ahead.clear()
            self.recent.clear()
            self.since = -1
            self.above = [(e[0], e[1], None) for e in self.above]
            self.heard.clear()

    def _live(self, now: float) -> bool:
        """``observe`` for a live event above the base that names its user: the latest time
        with ``quorum`` of the last ``window`` events at or after it from ``quorum``
        different users, so that a burst from one device ahead counts once (a worker
        reading a backlog is behind the wall clock, which alone does not stop such a
        burst from making the rest of the backlog late). Where none has that many, it
        waits if the last ``window`` events above the base (``heard``) came from
        ``quorum`` users; else (a quiet partition, a burst that fills the window) it moves
        as without users. Capped at ``now``. ``None`` (a restored entry) is one user.
        (Live waits for no user beyond the window: one who left, or whose clock stands
        still, would stop the partition's time; a silent partition goes idle instead.)"""
        above = self.above
        oldest = self.seq - self.window
        for e in above:  # a loop, not any(): no generator per event
            if e[1] <= oldest:
                above[:] = _heard_after(above, oldest)
                break
        quorum = self.quorum
        m = len(above)
        if m < quorum:
            return False
        i = m - quorum
        if len(set(map(_who, above[i:]))) < quorum:  # not all different users
            j = _quorum_index(above, quorum, quorum)
            if j >= 0:
                i = j
            elif len(set(self.heard)) >= quorum:  # fewer above the base: wait for them
                return False
        # ``_advance``, inline (live keeps no votes): capped, then what it passes dropped.
        base = above[i][0]
        if base > now:
            base = now
        if base <= self.base:
            return False
        self.base = base
        i = 0
        while i < m and above[i][0] <= base:
            i += 1
        del above[:i]
        return True

    def _advance(self, base: float, now: float | None) -> bool:
        """Move the base to ``base`` if that is later; drop the entries it passes (sorted:
        a scan from the start, without bisect's key call per step). Capped at ``now``:
        what is above it stays counted."""
        if now is not None and base > now:
            base = now
        if base <= self.base:
            return False
        self.base = base
        # Usually only the first entry of each is passed: deleted by index, no slice made.
        # More (a base held back while entries filled a window): one del of a slice, not
        # one per entry, each moving the rest (quadratic in ``window``, unbounded).
        above = self.above
        if above and above[0][0] <= base:
            if len(above) > 1 and above[1][0] <= base:
                del above[: _passed(above, base)]
            else:
                del above[0]
        ahead = self.ahead
        if ahead and ahead[0][0] <= base:
            if len(ahead) > 1 and ahead[1][0] <= base:
                del ahead[: _passed(ahead, base)]
            else:
                del ahead[0]
        return True

    def _prune(self) -> None:
        """Keep the ``quorum`` users heard last: all ``_users`` needs to count up to
        ``quorum``. (Pruned once they are ``VOICES`` times as many, not at each event.)"""
        if self.since < 0:
            self.since = self.seq - 1
        voices = self.voices
        if len(voices) > self.quorum:
            oldest = self.seq - self.horizon  # never counted again: forgotten
            kept = [v for v in sorted(voices.items(), key=_last)[-self.quorum :] if v[1] > oldest]
            voices.clear()
            voices.update(kept)
            recent = self.recent
            self.recent = {w: recent[w] for w in voices if w in recent}

    def _recent_voices(self) -> dict[int, int]:
        """``voices`` but those not heard from in a horizon, which never count again: what
        a snapshot keeps (a user's hash leaves it a horizon after their last event)."""
        oldest = self.seq - self.horizon
        return {w: s for w, s in self.voices.items() if s > oldest}

    def _users(self) -> int:
        """How many users the partition had in its last ``horizon`` events, up to ``quorum``
        (``voices``; until they cover a whole horizon, as many as ``quorum``)."""
        oldest = self.seq - self.horizon
        if self.since < 0 or oldest < self.since:
            return self.quorum
        quorum = self.quorum
        count = 0
        for s in self.voices.values():
            if s > oldest:
                count += 1
                if count >= quorum:
                    break
        return count

    def hold(self, ts: float, user: str, item: Any) -> None:
        """Count an event more than ``max_future`` ahead of the base, and keep it until
        ``settle`` accepts or rejects it. (Its user is not heard: a device far ahead is
        not one of the partition's users until one of its events is accepted.)"""
        self.seq += 1
        self.held.append((self.seq, ts, user, item))

    def settle(self) -> tuple[list[Any], list[Any]]:
        """``(accepted, rejected)``: the held items accepted now, and those that left the
        last ``window`` events still held (future events), each in arrival order.

        The events read since the last accepted one, all held, show that the partition's
        time moved (a gap in the recording, not a skewed device) once they come from
        ``quorum`` (at least 2) different users, or number ``window``: then the base jumps
        to the earliest of them, and every held item within ``max_future`` of it is
        accepted; the rest stay held. Held events with accepted ones between them and
        now are skewed clocks among the partition's traffic: they wait to be rejected.
        """
        held = self.held
        rejected: list[Any] = []
        oldest = self.seq - self.window
        if held[0][0] <= oldest:
            rejected = [h[3] for h in held if h[0] <= oldest]
            held[:] = [h for h in held if h[0] > oldest]
        accepted: list[Any] = []
        quorum = max(self.quorum, 2)
        while held:  # again after a jump: the run may span a second gap
            run = self._run()
            if not run or (len(run) < self.window and len({h[2] for h in run}) < quorum):
                break
            accepted += self._jump(run)
        if held:  # the base moved on the partition's own events: what it now reaches
            limit = self.base + self.max_future
            if any(h[1] <= limit for h in held):
                accepted += self._reach(limit)
        return accepted, rejected

    def _run(self) -> list[tuple[int, float, str, Any]]:
        """The held events read since the last accepted one (the last events read)."""
        held = self.held
        seq = self.seq
        i = len(held)
        while i and held[i - 1][0] == seq:
            i -= 1
            seq -= 1
        return held[i:]

    def _jump(self, run: list[tuple[int, float, str, Any]]) -> list[Any]:
        """Move the base to the earliest of ``run``; accept what it brings within reach."""
        first = min(h[1] for h in run)
        if first > self.base:
            self.base = first
            self.above = [e for e in self.above if e[0] > first]
        return self._reach(self.base + self.max_future)

    def _reach(self, limit: float) -> list[Any]:
        """Accept the held items at or before ``limit``."""
        held = self.held
        accepted = [h for h in held if h[1] <= limit]
        held[:] = [h for h in held if h[1] > limit]
        for h in accepted:
            if h[1] > self.top:
                self.top = h[1]
        return [h[3] for h in accepted]

    def end(self) -> tuple[list[Any], list[Any]]:
        """The partition is complete: nothing later can come, so its time is its latest.

        Returns ``(accepted, rejected)`` of the held items. The partition's last events,
        if at least ``quorum`` (at least 2) of them were all held, are where its time went
        (the recording ends after a gap): accepted, with what comes within ``max_future``
        of them. Any other held item is accepted if within ``max_future`` of the latest
        accepted time, else it is a future event.
        """
        accepted: list[Any] = []
        while self.held:
            run = self._run()
            if len(run) < max(self.quorum, 2):
                break
            accepted += self._jump(run)
        while True:  # an item accepted moves the latest accepted time: reach again from it
            if self.top > self.base:
                self.base = self.top
                self.above.clear()
            reached = self._reach(self.base + self.max_future)
            if not reached:
                break
            accepted += reached
        rejected = [h[3] for h in self.held]
        self.held = []
        return accepted, rejected

    def establish(self, times: list[float]) -> float | None:
        """Set the first base from a partition's first events' times (before judging
        them): the earliest, so that none of them is late. Returns the time after the
        widest gap between them wider than ``max_future``, if any: those before it (a
        clock reset to 1970, a device a month behind) are best judged first, so that the
        others, all held, show the gap together (``settle``) and are accepted."""
        if not times:
            return None
        ranked = sorted(times)
        self.base = ranked[0]
        gap, after = self.max_future, None
        for i in range(1, len(ranked)):
            if ranked[i] - ranked[i - 1] > gap:
                gap, after = ranked[i] - ranked[i - 1], ranked[i]
        return after


def _quorum_index(above: list[tuple[float, int, int | None]], users: int, events: int) -> int:
    """The greatest index of ``above`` (sorted by time) with ``users`` different users and
    ``events`` entries from it on, or -1. ``None`` (a restored entry's user) is one user."""
    seen: set[int | None] = set()
    n = len(above)
    i = n - 1
    while i >= 0:
        seen.add(above[i][2])
        if len(seen) >= users and n - i >= events:
            return i
        i -= 1
    return -1
