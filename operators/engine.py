"""The per-shard engine: every user of a shard, their timers, and one clock.

Events are keyed to a shard by a stable hash of the user id; a shard holds the
``UserState`` of each of its users, a heap of event-time deadlines (session
close, trigger timers, segment re-checks, eviction) and the stream clock.
Stream time reaches quiet users because every shard receives every input
partition's ``Watermark`` and pops its due deadlines, not only the user whose
event arrived. Lateness and the future are judged before an event gets here,
at ingest, against its own input partition's watermark (``routing``).

The engine knows nothing of Bytewax: ``flows/`` wraps it in a stateful step.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from math import nextafter
from typing import Any, Final, Protocol

from audienceflow.operators import (
    control,
    diagnostics,
    features,
    lab,
    segments,
    sessions,
    tracking,
)
from audienceflow.operators.codec import decode_user, encode_user
from audienceflow.operators.deadlines import (
    MARK,
    MINUTE,
    cool_pop_marker,
    cool_purge,
    cool_push,
    pop_marker,
    purge,
    push_later,
)
from audienceflow.operators.experiments import ArmedTimer
from audienceflow.operators.identity import ANON, KNOWN, IdentityGraph, Resolved
from audienceflow.operators.merge import merge_users
from audienceflow.operators.privacy import Privacy, forget_erased
from audienceflow.operators.records import (
    Action,
    ControlRequest,
    DeadLetter,
    Drift,
    DueMark,
    Erasure,
    Event,
    ExperimentUpdate,
    Exposure,
    Filtered,
    IdentityChange,
    LinkNotice,
    ProfileUpdate,
    Receipt,
    Rejected,
    SegmentChange,
    Session,
    ShardStats,
    Watermark,
    event_line,
    iso,
    stable_id,
)
from audienceflow.operators.routing import shard_key
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_state import ShardState as ShardState
from audienceflow.operators.state import INF, NO_ITEMS, UserState, drop_recommendations
from audienceflow.operators.triggers import (
    Candidate,
    EventTrigger,
    SegmentTrigger,
    TimerTrigger,
    Trigger,
    ignores,
)

Output = (
    Session
    | SegmentChange
    | Action
    | DeadLetter
    | Filtered
    | ProfileUpdate
    | ShardStats
    | Drift
    | DueMark
    | IdentityChange
    | Receipt
    | Erasure
    | Exposure
    | ExperimentUpdate
)


_EVENT_ONLY: Final = frozenset({"event"})
_LISTENERS_KEPT: Final = 4096  # event names (or segment changes) whose triggers are kept
# Records about a user that say which of its identifiers produced them.
_STAMPED = (SegmentChange, Action, Exposure)
# At one event time, a control request applies before events (a suppression filters them).
_CONTROL: Final = 0
_EVENT: Final = 1
# Ids the dedup index (``ShardEngine._seen_by``) may list beyond twice the table's size.
_SEEN_BY_SLACK: Final = 1024


shard_of = shard_key  # the shard key of a user (defined with the routing that uses it)


def _kind_key(new_session: bool, category: bool, video: bool, cart: bool) -> int:
    """The key of ``ShardEngine._kinds``: one bit per fact (``_apply`` builds it inline)."""
    return (8 if new_session else 0) + (4 if category else 0) + (2 if video else 0) + cart


def _entered_again(
    canonical: str, entered: dict[str, float], at: float, old: str
) -> list[SegmentChange]:
    """The segments ``entered`` by the profile renamed from ``old`` to ``canonical``, as it
    enters them again, by name. A function of its own, as ``_due``: a comprehension in
    ``ShardEngine._merge`` made its locals cells, created at every identity link."""
    return [
        SegmentChange(canonical, seg, "enter", at, {"rule": "identity_merge", "from": old})
        for seg in sorted(entered)
    ]


def _due(timers: dict[str, float], due: float) -> list[str]:
    """The names of ``timers`` due at or before ``due``."""
    return [k for k, t in timers.items() if t <= due]


class ModelHook(Protocol):
    """What the engine asks of the online models (see ``audienceflow.models``)."""

    # ``sync(t)`` for any ``t`` below this does nothing: the engine skips the call.
    quiet_until: float

    def on_event(self, user: UserState, ev: Event) -> None:
        """Update the user's live scores (``user.intent_score``) after ``ev`` was applied."""

    def on_session(self, user: UserState, session: Session) -> list[SegmentChange | Drift]:
        """Learn from a closed session (set ``session.intent_score``); return cluster
        segment changes (``cluster:<id>``) and drift records."""
        ...

    def reassign(self, user: UserState, at: float) -> list[SegmentChange | Drift]:
        """Checkpoint: move the user to the nearest cluster now, without learning."""
        ...

    def forget(self, user: UserState, at: float) -> list[SegmentChange | Drift]:
        """Eviction: take the user out of the models' books (cluster exit)."""
        ...

    def report(self) -> dict[str, Any]: ...

    def sync(self, now: float) -> list[SegmentChange | Drift]:
        """Stream time reached ``now``: learn what closed in model epochs before it."""
        ...

    def flush(self) -> list[SegmentChange | Drift]:
        """End of a recorded stream: learn everything still queued."""
        ...

    def erase(self, user_ids: set[str], message_ids: set[str]) -> int:
        """A deletion: drop what is queued of these users and events; how many."""
        ...

    def rename(self, old: str, new: str) -> None:
        """A merge: the profile ``new`` takes the cluster the user ``old`` was in."""
        ...


class ShardEngine:
    """Applies events and stream time to a shard's users and says what happened.

    ``partitions`` names every input partition: until each has reported its
    watermark (or turned idle), stream time waits for it. ``controls`` names those of
    them that carry control requests (a replay's control files): their time never takes
    stream time past the events' (``StreamClock.update``).
    """

    def __init__(
        self,
        settings: Settings,
        state: ShardState,
        wall: Callable[[], float] | None = None,
        models: ModelHook | None = None,
        emit_profiles: bool = False,
        partitions: Iterable[str] = (),
        mark_due: bool = False,
        suppressed: Iterable[str] = (),
        controls: Iterable[str] = (),
    ) -> None:
        self.cfg = settings
        self.state = state
        self.wall = wall
        self.models = models
        self.emit_profiles = emit_profiles
        self.mark_due = mark_due
        self.timers = [t for t in settings.triggers if isinstance(t, TimerTrigger)]
        # A merge tells when a half's timer started from its deadlines (``_timer_start``).
        self._timer_by_name = {t.name: t for t in self.timers}
        self._experiments_by_name = {e.name: e for e in settings.experiments.items}
        reco = settings.models.recommendations
        self._reco_bounds = (reco.window, reco.max_bought)
        state.clock.lateness = settings.lateness
        state.clock.idle_after = settings.idle_after if wall is not None else None
        state.clock.expect(partitions)
        # Replay and bounded reading only: live, the control topic's time stops at the
        # wall clock as every partition's does, and a request more than ``max_future``
        # ahead of it is dead-lettered at ingest, so its marks count as they are.
        self._controls = frozenset(controls) if wall is None else frozenset()
        # Users whose live profile changed since the last ``_profiles``: kept only when
        # profiles are emitted (otherwise it held every user id ever seen, never read).
        self._touched: dict[str, None] = {}
        self._finishing = False
        self._revived: list[str] = []  # users revived since the last ``_cool``
        self._seen_after = 0  # ``state.seen``'s size after the last ``_expire_seen``
        # ``state.seen``'s message ids by the identifier that sent them, for deletions
        # (``_seen_of``): built at the first one, then kept as ids arrive; never saved.
        self._seen_by: dict[str, list[str]] | None = None
        self._seen_by_size = 0  # ids the index lists, forgotten ones included
        # How many ``Rejected`` items the held queues hold (``_release_rejected`` walks
        # them only when there is one): counted here once, then kept; never saved.
        self._rejected_held = sum(
            type(e[3]) is Rejected for q in (state.held, state.held_run, state.lag_held) for e in q
        )
        self.evaluator = segments.Evaluator(settings.segments)
        self._half_life = settings.features.affinity_half_life
        self._session_spec = settings.sessions
        self._feature_spec = settings.features
        self._video_events = settings.features.video_complete_events
        self._limits = settings.features.limits
        # What an event changed, by ``_kind_key`` (new session, has a category, video
        # completion, cart: one bit each).
        self._kinds: dict[int, frozenset[str]] = {}
        fs = settings.features
        self._cart_events = (
            fs.cart_add_events | fs.cart_remove_events | fs.order_events | fs.cart_refresh_events
        )
        # The triggers an event or a segment change can reach: a segment trigger ignores
        # events, a timer or event trigger segment changes (other kinds, such as an
        # experiment's wrapper, receive everything).
        self._on_event = [t for t in settings.triggers if type(t) is not SegmentTrigger]
        self._on_change = [
            t
            for t in settings.triggers
            if type(t) is not TimerTrigger and type(t) is not EventTrigger
        ]
        # Of those, the ones that do not ignore an event of a name, or a segment change of
        # a segment and direction (``Trigger.ignores``), worked out once per key: most
        # events and changes concern no trigger. Bounded: names come from the input.
        self._event_listeners: dict[Any, tuple[Trigger, ...]] = {}
        self._change_listeners: dict[tuple[str, str], tuple[Trigger, ...]] = {}
        spec = settings.sessions
        self._timeout, self._max_length = spec.timeout, spec.max_length
        self._history_window = spec.history_window
        self.lab = lab.for_shard(settings, state)
        # Rule window structures (rules work: tracking.py) and the traits rules read, of
        # every rule: an experiment arm's ``when`` may count what no other rule does.
        rules = settings.rules
        self.trackers = tracking.merge([t for r in rules for t in r.trackers])
        self.traits = settings.rule_traits
        self.group_traits = settings.rule_group_traits  # an account's, read as group.X
        self.pii = frozenset(f.lower() for f in (*settings.pii_fields, *settings.pii_traits))
        self.group_pii = frozenset(
            f.lower() for f in (*settings.pii_fields, *settings.pii_group_traits)
        )
        if settings.identity.enabled and state.ids is None:
            state.ids = IdentityGraph(settings.identity)
        self.ids = state.ids if settings.identity.enabled else None
        self._ids_fitted = False  # ``_fit_ids`` ran (at the first event)
        self._merged = False  # a merge left the linking event to evaluate every rule
        # A rename's ``enter`` records (``_merge``), and where in the output they start,
        # until the linking event's evaluation has said which of them stand (``_settle``).
        self._renamed: tuple[int, list[SegmentChange]] | None = None
        self.cold_after = settings.cold_after
        if self.cold_after is None:  # the tier is off (again): every cold user comes back
            for uid in list(state.cold):
                self._revive(uid)
        elif len(state.cool_filed) < len(state.users):  # e.g. a snapshot without the tier
            for user in state.users.values():
                self._file_cool(user)
        self.salt = settings.pii_salt.encode()
        privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
        for ident in suppressed:  # named as events name them: pseudonymised like their ids
            state.suppressed.setdefault(self._hash(privacy.pseudonym(ident, "uid")), -INF)
        # How far before a user's newest event another of theirs can still be applied
        # (partition lateness, partitions out of step): window entries older are pruned.
        self.track_slack = settings.lateness + settings.align_within

    # --- input -----------------------------------------------------------

    def on_items(
        self,
        items: Iterable[
            Event | Watermark | ControlRequest | LinkNotice | list[LinkNotice] | Rejected
        ],
    ) -> list[Output]:
        """Apply a batch of events and watermarks (in order) and then the stream time.

        Link notices come one by one or as a list (an input partition sends each shard
        one list per batch of lines: one item to move between processes, not hundreds).
        """
        out: list[Output] = []
        if type(items) is list and items and type(items[0]) is Watermark:
            start = self._marks(items)
            if start == len(items):  # watermarks alone, and nothing came due
                self._expire_seen()
                self._profiles(out)
                return out
            if start:
                items = items[start:]
        st = self.state
        clock = st.clock
        heap, drun, held, run, wall = st.heap, st.run, st.held, st.held_run, self.wall
        # Without a wall clock, stream time moves only when a watermark arrives: read
        # once per watermark, not twice per event. With one, it is read where it is used.
        static = wall is None
        now = clock.now(wall) if static else -INF
        # Set by an event behind stream time (``_event``): due work waits for the end of
        # the batch from then on.
        behind = False
        # Nothing is left due at ``now`` once the check below has run (``_advance`` ran
        # what was): in a replay an event held for later than ``now`` makes nothing due
        # before it either, so the check after it is skipped (nearly every event of a
        # replay is held so). Until the batch's first check, what an earlier call left
        # is not known (a restored snapshot), so the check runs.
        checked = False
        for item in items:
            if type(item) is Event:  # the most frequent first
                if self._event(item, out, now if static else None, behind):
                    behind = True
                elif checked and static and item.ts > now:
                    continue
            elif type(item) is Watermark:
                clock.update(item.partition, item.at, item.idle, self._controls)
                if static:
                    now = clock.now(wall)
            elif type(item) is ControlRequest:
                if behind:  # it applies after what came before it: a deleted user stays so
                    self._advance(clock.now(wall), out)
                    behind = False
                self._request(item, out)
            elif type(item) is LinkNotice:
                self._notice(item)
            elif type(item) is Rejected:
                self._rejected(item, out)
            elif type(item) is list:
                for notice in item:
                    self._notice(notice)
            else:
                assert isinstance(item, Event)
                if self._event(item, out, now if static else None, behind):
                    behind = True
            # Due work runs after every item, not per batch, so what comes out depends
            # only on the sequence of items, never on how the engine was handed them.
            # Except after an event behind stream time (live: its partition rejoined from
            # idleness with older events): its user lags, and its events and what they
            # arm wait for the partition's own time (``_lagging``), so the partition's
            # next events, in this batch or a later one, can still come before them.
            # Every later event of the batch is held to the batch end too (applied at
            # once, one at stream time would overtake the held ones stream time passed
            # meanwhile), and a control request applies after them.
            if (heap or drun or held or run) and not behind:
                checked = True
                due = now if static else clock.now(wall)
                if (
                    (heap and heap[0][0] <= due)
                    or (drun and drun[0][0] <= due)
                    or (run and run[0][0] <= due)
                    or (held and held[0][0] <= due)
                ):
                    self._advance(due, out)
        self._advance(clock.now(wall), out)  # an empty batch still lets the wall clock act
        self._cool(clock.now(wall))
        self._expire_seen()
        self._profiles(out)
        return out

    def _marks(self, items: list[Any]) -> int:
        """Apply the watermarks that lead ``items`` while they make nothing due; how many.

        Live, a partition's watermark goes to every shard after each batch it reads, and
        most shards receive it alone: it moves stream time, if at all, short of their
        next deadline, held event, cooling user and model epoch, and the full pass
        (``on_items``) would find nothing to do at its end but read the clock five times.
        What it would do is exactly what is left: a watermark making something due at
        stream time (``<=``: a deadline at exactly the new time fires), or a lagging
        user (whose limit is the slowest partition's mark, not stream time), or users
        revived since ``_cool`` stop this here, and ``on_items`` applies the rest item by
        item (applying that watermark again changes nothing: ``StreamClock.update`` keeps
        the maximum).
        """
        st = self.state
        if st.lagging or self._revived:
            return 0
        clock, wall, controls = st.clock, self.wall, self._controls
        bound = INF  # the earliest stream time at which the tail of ``on_items`` acts
        for queue in (st.heap, st.held, st.cooling):
            if queue and queue[0][0] < bound:
                bound = queue[0][0]
        for run in (st.run, st.held_run, st.cool_run):
            if run and run[0][0] < bound:
                bound = run[0][0]
        models = self.models
        if models is not None and models.quiet_until < bound:
            bound = models.quiet_until
        # Live, reading ``clock.now(wall)`` while every partition is idle moves stream
        # time to the wall-clock fallback, and it never moves back: the clock is read
        # where the full pass reads it, after each item only while a deadline or a held
        # item is queued, else once at the end. Read earlier, between a watermark that
        # leaves every partition idle and one that makes a partition active again, it
        # would take stream time to the wall (the partition's next events then behind it).
        reads = bool(st.heap or st.run or st.held or st.held_run)
        n = 0
        for item in items:
            if type(item) is not Watermark:
                break
            clock.update(item.partition, item.at, item.idle, controls)
            if (clock.now(wall) if reads else clock.now()) >= bound:
                break
            n += 1
        else:
            if not reads and wall is not None and clock.now(wall) >= bound:
                n -= 1  # the tail has work: ``on_items`` applies the last one again
        return n

    def on_time(self) -> list[Output]:
        """Live mode: let the wall-clock fallback move stream time when input is idle."""
        out: list[Output] = []
        now = self.state.clock.now(self.wall)
        self._advance(now, out)
        self._cool(now)
        self._profiles(out)  # held events released by time changed their users too
        return out

    def _profiles(self, out: list[Output]) -> None:
        """The live profile of every user touched since the last call (for Redis)."""
        if not (self.emit_profiles and self._touched):
            return
        st = self.state
        now = max(st.clock.latest(self._controls), st.last_event)
        hl = self.cfg.features.affinity_half_life
        for uid in self._touched:
            user = self._peek(uid)
            if user is not None:
                profile = features.profile(user, now, hl, self.models is not None)
                out.append(ProfileUpdate(uid, profile, self._members(uid)))
        self._touched.clear()

    def _members(self, uid: str) -> tuple[str, ...]:
        return (uid,) if self.ids is None else tuple(self.ids.members(uid))

    def held_profiles(self, within: float = INF) -> Iterator[ProfileUpdate]:
        """The current profile of every user the shard holds (warm or cold), one at a time,
        for a profile store that lost its data; those whose latest event is more than
        ``within`` seconds of stream time old are left out (the store would have expired
        them).

        Lazy: the ids are listed when the first is asked for, each profile is read when
        its turn comes, so a caller may hand them out over several activations. A user
        deleted (or evicted) meanwhile is skipped: no profile of a deleted person is made.
        """
        st = self.state
        ids = [*st.users, *st.cold]
        hl = self.cfg.features.affinity_half_life
        models = self.models is not None
        now = max(st.clock.latest(self._controls), st.last_event)
        since = now - within
        for uid in ids:
            user = self._peek(uid)
            if user is None or max(user.last_ts, user.last_seen, user.first_seen) < since:
                continue
            now = max(st.clock.latest(self._controls), st.last_event)
            yield ProfileUpdate(uid, features.profile(user, now, hl, models), self._members(uid))

    def next_due(self) -> float | None:
        """Event time of the earliest pending deadline or held event, if any (parked ones
        of lagging users too: live, ``on_time`` then releases them)."""
        st = self.state
        due = min(
            self.held_from(),
            st.heap[0][0] if st.heap else INF,
            st.run[0][0] if st.run else INF,
            st.lag[0][0] if st.lag else INF,
        )
        return None if due == INF else due

    def wall_due(self) -> float | None:
        """Live, every partition idle: the wall-clock time (of ``wall``) at which the
        fallback (stream time = wall clock - ``idle_after`` - lateness) reaches the earliest
        pending deadline or held event. None otherwise: with a partition active, its
        watermarks move stream time; in a replay, or with nothing pending, no time does."""
        clock = self.state.clock
        if self.wall is None or clock.idle_after is None or not clock.all_idle():
            return None
        due = self.next_due()
        return None if due is None else due + clock.idle_after + clock.lateness

    def held_from(self) -> float:
        """Event time of the earliest item still held back (INF when none): every event
        earlier than it has been applied, dead-lettered or filtered."""
        st = self.state
        return min(
            st.held[0][0] if st.held else INF,
            st.held_run[0][0] if st.held_run else INF,
            st.lag_held[0][0] if st.lag_held else INF,
        )

    def buffered(self) -> int:
        """Events held back until stream time passes them (or their partition's time):
        read, and not yet applied, dead-lettered or filtered. Not the identity link notices
        and control requests held with them (``audienceflow_buffered_events`` is the count
        the events read must wait for; notices outnumbered the events read). A walk of the
        queues: for the periodic report (``stats``), not per event."""
        st = self.state
        n = 0
        for queue in (st.held, st.held_run, st.lag_held):
            for entry in queue:
                kind = type(entry[3])
                n += kind is Event or kind is Rejected
        return n

    def finish(self) -> list[Output]:
        """End of a recorded stream: profiles as of the last event, then every deadline.

        A control request dated after the last event is not part of "the last event":
        stream time stayed at the events' (``StreamClock.update``), and it applies here,
        at its own time, in time order with the deadlines after the events (a session
        closes before a deletion dated the next day, as live). The final profile of a
        person it deletes is then not written: every later output leaves them out.
        """
        out: list[Output] = []
        st = self.state
        self._lagging(force=True)  # the input is complete: nothing can come before them
        waiting = max(
            (h[0] for h in (*st.held, *st.held_run) if type(h[3]) is not ControlRequest),
            default=float("-inf"),
        )
        last = max(st.clock.latest(self._controls), st.last_event, waiting)
        # The input is complete, so the instant ``last`` is too: its segment re-checks
        # (filed just after it, ``_run_due``) run before the profiles as of ``last``.
        self._advance(nextafter(last, INF) if last > -INF else last, out)
        for uid in list(st.cold):  # the final profiles and checkpoints are of every user
            self._revive(uid)
        if self.models is not None:
            self._model_learning(self.models.flush(), out)
            # Checkpoint: users assigned early move to the cluster the final model gives them.
            for _, user in sorted(st.users.items()):
                self._model_records(user, self.models.reassign(user, last), out)
        hl = self.cfg.features.affinity_half_life
        profiles = [
            ProfileUpdate(
                u.user_id,
                features.profile(u, last, hl, self.models is not None),
                self._members(u.user_id),
            )
            for _, u in sorted(st.users.items())
        ]
        diagnostics.final_values(self.cfg, st.diag, st.users, last)  # rules work
        st.clock.finish()
        self._finishing = True
        receipts = st.receipts
        self._advance(INF, out)
        if st.receipts != receipts:  # requests after the events: their deleted users' go
            users = st.users
            profiles = [p for p in profiles if p.user_id in users]
        out.extend(profiles)
        out.append(self.stats())
        return out

    def stats(self) -> ShardStats:
        st = self.state
        extra: dict[str, Any] = {
            "evicted": st.evicted,
            "buffered": self.buffered(),
            "stream_time": st.clock.time,
        }
        extra["limits_hit"] = dict(sorted(st.limits_hit.items()))  # rules work
        if st.currencies:  # amounts summed by currency, with money.currency unset
            extra["currencies"] = {c: list(n) for c, n in sorted(st.currencies.items())}
        extra["rules"] = diagnostics.report(self.cfg, st.diag)
        if self.models is not None:
            extra["models"] = self.models.report()
        if self.lab is not None:
            extra["experiments"] = self.lab.report()
        if self.ids is not None:
            extra["identity"] = {
                "linked_identifiers": self.ids.links(),
                "links_to_other_shards": self.ids.elsewhere,
            }
        extra["suppressed_identifiers"] = len(st.suppressed)
        users = len(st.users) + len(st.cold)  # cold ones too: they are tracked users
        return ShardStats(
            st.shard, st.processed, dict(st.filtered), dict(st.dead_lettered), users, extra
        )

    def _expire_seen(self) -> None:
        """Forget message ids older than the dedup window (insertion order ~ time order).

        Only memory depends on this: a copy is judged on the two event times
        (``_event``), and an id forgotten here can no longer match what arrives at or
        after stream time (a partition rejoining from idleness behind stream time is the
        exception: a copy of an id forgotten here is then taken as a new event).

        Ids come in arrival order, which is time order within a partition but not across
        partitions read side by side: a partition ahead of stream time (a file of a later
        day, read before the others catch up) leaves ids at the front that stream time has
        not reached, and they would keep every id behind them, expired or not, until it
        does (never, for a file months ahead). Such ids are moved to the back, at most
        as many per call as the dict grew since the last one (and 64), so the walk keeps
        pace with what arrives and a call never walks the whole dict.
        """
        seen = self.state.seen
        if self._seen_by is not None and self._seen_by_size > 2 * len(seen) + _SEEN_BY_SLACK:
            self._seen_by = None  # mostly forgotten ids: built again at the next deletion
        if not seen:
            return
        clock = self.state.clock
        now = clock.now(self.wall)
        if self.state.lagging:
            # A deletion parked for a lagging partition applies at its own time, and its
            # receipt counts the ids within the window of that time: kept until then, or
            # the count depends on whether this ran in between (how the input was batched).
            now = min(now, clock.floor())
        cutoff = now - self.cfg.dedup_window
        front = seen[next(iter(seen))][0]
        if cutoff <= front <= now:  # the usual case: the front is in the window
            self._seen_after = len(seen)
            return
        # One pass: restarting iteration after each deletion would walk the deleted
        # slots at the front of the dict again every time.
        gone: list[str] = []
        ahead: list[str] = []  # ids later than stream time, at the front: moved to the back
        budget = max(64, len(seen) - self._seen_after)
        for mid, (ts, _) in seen.items():
            if ts < cutoff:
                gone.append(mid)
            elif ts <= now or len(ahead) >= budget:
                break
            else:
                ahead.append(mid)
        for mid in gone:
            del seen[mid]
        for mid in ahead:
            seen[mid] = seen.pop(mid)
        self._seen_after = len(seen)

    # --- one event -------------------------------------------------------

    def _dead(self, reason: str, detail: str, ev: Event, out: list[Output]) -> None:
        st = self.state
        st.dead_lettered[reason] = st.dead_lettered.get(reason, 0) + 1
        out.append(
            DeadLetter(
                reason, f"step 'profiles': {detail}", ev.position, event_line(ev), stage="profiles"
            )
        )

    def _event(
        self, ev: Event, out: list[Output], now: float | None = None, defer: bool = False
    ) -> bool:
        """An event arrives: suppression, dedup, then apply it now or hold it in time order.

        ``now``: stream time, when the caller knows it has not moved since it read it.
        ``defer``: hold it whatever its time (the batch's due work waits, see ``on_items``).
        True when the event is behind stream time (then held, and its user lags: see
        ``on_items`` and ``_lagging``); a lagging user's events are held whatever their time.
        """
        st = self.state
        if st.suppressed and self._suppressed(ev):
            self._filter("suppressed", ev, out)
            return False
        seen = st.seen
        mid, ts = ev.message_id, ev.ts
        first = seen.get(mid)
        if first is not None:
            # A copy within the window of event time (either side) of the first; judged
            # on the two event times, not on when stream time forgets the first, so
            # the verdict does not depend on how often watermarks arrive.
            if abs(ts - first[0]) <= self.cfg.dedup_window:
                self._filter("duplicate", ev, out)
                return False
            del seen[mid]  # a new use of the id: it goes to the end (time order)
        seen[mid] = (ts, ev.user_id)
        if self._seen_by is not None:
            self._seen_by.setdefault(ev.user_id, []).append(mid)
            self._seen_by_size += 1
        # Events are applied in event-time order, once stream time has passed them: no
        # earlier event of the same user can still come then (it would be older than its
        # partition's watermark, so ingest dead-letters it as late), and every deadline
        # before it has fired. Each user's events, and the shared models (read and
        # trained in epochs, see models.hook), then see the same sequence whatever the
        # interleaving of input partitions, the batching or the restarts: outputs are a
        # function of the events alone. The price is latency: an event waits until
        # stream time (the slowest active partition less the allowed lateness) reaches it.
        # Every held item is later than stream time, so an event at it is earlier than
        # all of them and can go at once; one before it is held too (``on_items``).
        if now is None:
            now = st.clock.now(self.wall)
        lagging = st.lagging
        if ts != now or defer or (lagging and self._lags(ev)):
            seq = st.held_seq = st.held_seq + 1
            # ``_hold``, inline (nearly every event of a replay is held): an event comes
            # after a run's last item at the same time as it, since ``held_seq`` only grows
            # and a control request sorts first, so comparing the times alone is enough.
            run = st.held_run
            if not run or run[-1][0] <= ts:
                run.append((ts, _EVENT, seq, ev))
            else:
                heapq.heappush(st.held, (ts, _EVENT, seq, ev))
            if ts < now:  # its user's events and deadlines wait for its partition
                lagging.add(ev.user_id)
                return True
            return False
        self._arrive(ev, out)
        return False

    def _hold(self, entry: tuple[float, int, int, Any]) -> None:
        """Hold an item until stream time passes it: at the end of ``held_run`` if it comes
        after everything there (``held_seq`` only grows, so an item at the same time as
        the last one comes after it unless it is a control request), else in ``held``.

        Items mostly come in time order: at a million users ~4500 are held, and a heap
        push and pop of each walked ~12 levels of it.
        """
        st = self.state
        run = st.held_run
        if not run or run[-1] < entry:
            run.append(entry)
        else:
            heapq.heappush(st.held, entry)

    def _filter(self, reason: str, ev: Event, out: list[Output]) -> None:
        st = self.state
        st.filtered[reason] = st.filtered.get(reason, 0) + 1
        out.append(Filtered(reason, ev.position, ev.message_id))

    def _arrive(self, ev: Event, out: list[Output]) -> str | None:
        """Apply an event, in event-time order, to the profile its identifiers say; the
        id of that profile (None when it was filtered)."""
        st = self.state
        if st.suppressed and self._suppressed(ev):  # suppressed while it was held
            self._filter("suppressed", ev, out)
            # Its message id went into the dedup window as it arrived, with the person's
            # id, and the request purged the entries up to its own time only.
            first = st.seen.get(ev.message_id)
            if first is not None and first[0] == ev.ts and first[1] == ev.user_id:
                del st.seen[ev.message_id]
                self._unindex_seen(ev.user_id, ev.message_id)
            return None
        uid = ev.user_id
        ids = self.ids
        if ids is not None:
            if not self._ids_fitted:  # once: only this method changes what it checks
                self._fit_ids(ids)
            anon = ev.anonymous_id
            known = uid if anon is None or uid != anon else None  # ``ev.known``, inlined
            prev = ev.previous_id
            canonical = ids.settled(known, anon, prev)
            if canonical is not None:  # links nothing new: ``resolve`` would say just this
                uid = canonical
            else:
                try:
                    res = ids.link(
                        known, anon, prev, ev.ts, ev.message_id,
                        prev is not None and self._seen_known(prev),
                    )  # fmt: skip
                except ValueError:
                    self._filter("blocked_identifier", ev, out)
                    return None
                uid = res.canonical
                if res.change is not None:
                    out.append(res.change)
                    if res.absorbed:
                        self._merge(res, ev.ts, out, event=ev.type != "alias")
            named = known == uid  # the profile is named by the event's userId
        else:
            named = False
        user = st.users.get(uid)
        if user is None:
            user = self._user(uid)  # cold, or new
            if user is None:
                user = st.users[uid] = UserState(uid, first_seen=ev.ts)
        if named and not user.known:
            user.known = True
        user.via = ev.user_id
        start = len(out)
        if ev.type == "alias":  # links only: no activity of its own
            st.processed += 1
            if ev.active:
                user.last_seen = max(user.last_seen, ev.ts)
            if self.emit_profiles:
                self._touched[uid] = None
            self._schedule(user)
        else:
            self._apply(user, ev, out)
        if self._renamed is not None:
            self._settle(out)
        if user.via != uid:
            self._stamp(user, out, start)
        return uid

    def _seen_known(self, ident: str) -> bool:
        """Whether the profile named ``ident`` was seen as an event's ``userId`` (an
        alias's ``previousId`` that no link keeps in the graph); a cold one is read, not
        revived."""
        user = self._peek(ident)
        return user is not None and user.known

    def _fit_ids(self, ids: IdentityGraph) -> None:
        """Tell the graph this shard's place (a graph restored from a snapshot older than
        the partitioner has no such slot)."""
        cfg, st = self.cfg, self.state
        if st.shard and (
            ids.shards != cfg.shards or getattr(ids, "partitioner", None) != cfg.partitioner
        ):
            ids.shards, ids.shard = cfg.shards, int(st.shard[6:])
            ids.partitioner = cfg.partitioner
        if not hasattr(ids, "aliased"):  # a graph from a snapshot older than the slot
            ids.aliased = set()
        self._ids_fitted = True

    def _stamp(self, user: UserState, out: list[Output], start: int) -> None:
        """Name the identifier (not the canonical id) that produced a user's records."""
        uid, via = user.user_id, user.via
        for i in range(start, len(out)):
            rec = out[i]
            if type(rec) is Session:
                if rec.user_id == uid:
                    rec.extra["identifier"] = via
            elif isinstance(rec, _STAMPED) and rec.user_id == uid:
                rec.identifier = via

    # --- identity ----------------------------------------------------------

    def _merge(self, res: Resolved, at: float, out: list[Output], event: bool = False) -> None:
        """Profiles became one: fold their states into the canonical one (see merge.py).
        ``event``: the linking event is applied next (``_apply``), and its evaluation, of
        every rule (``_merged``), is the merged profile's; else (an alias) it is made here.
        Made here, before the event, it read the instant without it: a window that lapses
        there as the event renews it made the profile exit and enter again."""
        st = self.state
        canonical = res.canonical
        parts: list[UserState] = []
        for uid in (canonical, *res.absorbed):
            user = self._user(uid)
            if user is not None:
                self._run_due(user, at, out, evict=False, merging=True)  # each half's past
                if uid in st.users:
                    parts.append(st.users.pop(uid))
        if not parts:
            return
        kept = (
            parts[0]
            if parts[0].user_id == canonical
            else min(parts, key=lambda u: (u.first_seen, u.user_id))
        )
        took: tuple[int, str] | None = None  # the cluster the profile takes from a half
        for user in parts:
            if user is kept:
                continue
            if self.models is not None:
                if kept.cluster < 0 <= user.cluster and took is None:
                    # The profile takes this half's cluster: it leaves it (with its
                    # other segments, below) and the profile enters it, after the rename.
                    took = (user.cluster, user.user_id)
                    self.models.rename(user.user_id, canonical)
                else:
                    self._model_records(user, self.models.forget(user, at), out)
            self._leave(user, canonical, at, out)
            starts: dict[str, float] = {}
            merge_users(kept, user, canonical, self.cfg.sessions.history_max,
                        self.cfg.features.affinity_half_life, self.cfg.features.limits,
                        self._timer_start, self._reco_bounds, starts,
                        self._exposure_current, at=at, hits=self.state.limits_hit,
                        history_window=self._history_window)  # fmt: skip
            self._replan(kept, starts, at)
        if kept.user_id != canonical:  # the canonical id had no state: the profile is renamed
            old = kept.user_id
            entered = dict(kept.segments)
            self._leave(kept, canonical, at, out)
            starts = {}
            for name in kept.timers or ():
                start = self._timer_start(kept, name)
                if start is not None:
                    starts[name] = start
            kept.user_id = canonical
            self._replan(kept, starts, at)
            renamed = _entered_again(canonical, entered, at, old)
            if renamed:
                self._renamed = (len(out), renamed)
                out.extend(renamed)
            kept.segments = entered
        if took is not None and kept.cluster == took[0]:
            seg = f"cluster:{took[0]}"
            kept.segments[seg] = at
            out.append(
                SegmentChange(
                    canonical, seg, "enter", at, {"rule": "identity_merge", "from": took[1]}
                )
            )
        kept.scheduled = INF
        st.users[canonical] = kept
        if st.lagging and not st.lagging.isdisjoint(res.absorbed):
            st.lagging.add(canonical)  # its halves' deadlines waited: the profile's do
        if self.emit_profiles:
            self._touched[canonical] = None
        if event:
            self._merged = True
        else:
            self._segments(kept, at, out, [])
        self._schedule(kept)

    def _settle(self, out: list[Output]) -> None:
        """Take back a rename's ``enter`` of each segment that the linking event's
        evaluation then left, with that ``exit``: the canonical id never held it (the
        absorbed id's ``exit`` says the person left), so no id enters and leaves a segment
        at one instant. A trigger on the exit has heard it, as under one id."""
        assert self._renamed is not None
        first, renamed = self._renamed
        self._renamed = None
        entered = {ch.segment: ch for ch in renamed}
        uid, at = renamed[0].user_id, renamed[0].at
        drop: set[int] = set()
        for i in range(first + len(renamed), len(out)):
            rec = out[i]
            if (
                type(rec) is SegmentChange
                and rec.change == "exit"
                and rec.user_id == uid
                and rec.at == at
                and rec.segment in entered
            ):
                drop.add(id(rec))
                drop.add(id(entered.pop(rec.segment)))
        if drop:
            out[first:] = [rec for rec in out[first:] if id(rec) not in drop]

    def _timer_start(self, user: UserState, name: str) -> float | None:
        """When ``user``'s timer ``name`` started, by the deadline its trigger gave it
        (under the user's arm, for an experiment's); None for no timer trigger's."""
        trig = self._timer_by_name.get(name)
        due = (user.timers or NO_ITEMS).get(name)
        if trig is None or due is None:
            return None
        if isinstance(trig, ArmedTimer):
            return trig.started(user)
        return due - trig.after

    def _exposure_current(self, name: str, exposed: Any) -> bool:
        """Whether ``exposed`` is of experiment ``name``'s arms as configured now."""
        exp = self._experiments_by_name.get(name)
        return exp is not None and exp.kept(exposed)

    def _replan(self, user: UserState, starts: dict[str, float], at: float) -> None:
        """A merged or renamed profile's experiment timers, for its arm now: an arm may
        follow the profile's id (``ArmedTimer.replan``)."""
        for name, start in starts.items():
            trig = self._timer_by_name.get(name)
            if isinstance(trig, ArmedTimer):
                trig.replan(user, start, at)

    def _leave(self, user: UserState, into: str, at: float, out: list[Output]) -> None:
        """``user``'s id is gone (merged into ``into``): it leaves its segments."""
        for seg in sorted(user.segments):
            reason = {"rule": "identity_merge", "into": into}
            out.append(SegmentChange(user.user_id, seg, "exit", at, reason))
        user.segments = {}
        self._touched.pop(user.user_id, None)
        out.append(Erasure(user.user_id, ()))

    # --- data subjects' requests --------------------------------------------

    def _hash(self, ident: str) -> str:
        return hashlib.blake2b(ident.encode(), key=self.salt[:64], digest_size=16).hexdigest()

    def _suppressed(self, ev: Event | Rejected) -> bool:
        sup = self.state.suppressed
        return (
            self._hash(ev.user_id) in sup
            or (ev.anonymous_id is not None and self._hash(ev.anonymous_id) in sup)
            or (ev.previous_id is not None and self._hash(ev.previous_id) in sup)
        )

    def _rejected(self, item: Rejected, out: list[Output]) -> None:
        """An event ingest dead-lettered (late, or too far ahead) arrives: judged once
        stream time reaches its partition's watermark at the time (``at``), so that every
        request its partition had passed by then (a suppression of its person) applies
        first, in event-time order, as it does before the events after it."""
        st = self.state
        if item.at > st.clock.now(self.wall):
            st.held_seq += 1
            self._hold((item.at, _EVENT, st.held_seq, item))
            self._rejected_held += 1
            return
        self._judge_rejected(item, out)

    def _release_rejected(self, gone: set[str], suppress: bool, out: list[Output]) -> None:
        """Judge now the held rejected events naming an identifier in ``gone`` (deleted):
        filtered if the request also suppresses, else their dead letters. The heaps in
        place (``_advance`` holds them).

        Only when a rejected event is held: the walk of the queues per request, over the
        control requests held with it, made a batch of them quadratic (20,000 requests of a
        control file dated after the events' start: 200 million checks, 20 s of 37)."""
        if not self._rejected_held:
            return
        st = self.state

        def theirs(entry: tuple[float, int, int, Any]) -> bool:
            item = entry[3]
            return type(item) is Rejected and (
                item.user_id in gone or item.anonymous_id in gone or item.previous_id in gone
            )

        found: list[tuple[float, int, int, Any]] = []
        for heap in (st.held, st.lag_held):
            if any(theirs(e) for e in heap):
                found += [e for e in heap if theirs(e)]
                kept = [e for e in heap if not theirs(e)]
                heapq.heapify(kept)
                heap[:] = kept
        if any(theirs(e) for e in st.held_run):  # in time order: it stays so without them
            found += [e for e in st.held_run if theirs(e)]
            run = [e for e in st.held_run if not theirs(e)]
            st.held_run.clear()
            st.held_run.extend(run)
        self._rejected_held -= len(found)
        for entry in sorted(found):
            self._judge_rejected(entry[3], out, suppress)

    def _judge_rejected(self, item: Rejected, out: list[Output], suppress: bool = False) -> None:
        """Filtered if its person is suppressed (or ``suppress``: the request being applied
        suppresses them), as their events are; else its dead letter."""
        st = self.state
        if suppress or (st.suppressed and self._suppressed(item)):
            st.filtered["suppressed"] = st.filtered.get("suppressed", 0) + 1
            out.append(Filtered("suppressed", item.dead.position, item.message_id))
        else:
            out.append(item.dead)

    def _notice(self, notice: LinkNotice) -> None:
        """Another shard linked one of ours to one of its identifiers (in event-time order)."""
        st = self.state
        if self.ids is None:
            return
        if notice.ts > st.clock.now(self.wall):
            st.held_seq += 1
            self._hold((notice.ts, _EVENT, st.held_seq, notice))
            return
        self._linked_elsewhere(notice)

    def _linked_elsewhere(self, notice: LinkNotice) -> None:
        ids = self.ids
        if ids is not None and not (ids.blocked(notice.here) or ids.blocked(notice.there)):
            ids.link_elsewhere(notice.here, notice.there)

    def _request(self, req: ControlRequest, out: list[Output]) -> None:
        """A control request arrives: it applies at its time, or at once if that has passed."""
        st = self.state
        # While users lag (``_lagging``), after what their partition may still deliver
        # before it: their events are in event-time order with it, as in a replay.
        if req.ts > st.clock.now(self.wall) or (st.lagging and req.ts > st.clock.floor()):
            st.held_seq += 1
            self._hold((req.ts, _CONTROL, st.held_seq, req))
            return
        self._control(req, max(req.ts, st.clock.now(self.wall)), out)

    def _control(self, req: ControlRequest, at: float, out: list[Output]) -> None:
        """Delete, suppress or unsuppress every identifier linked to the request's ids."""
        st = self.state
        ids = self.ids
        # The request's identifiers, and ours that other shards linked to them.
        names = req.ids if ids is None else ids.reach(req.ids)
        canon = sorted({ids.canonical(i) if ids is not None else i for i in names})
        members = sorted({*names, *(m for c in canon for m in self._members(c))})
        purged = {"users": 0, "timers": 0, "open_sessions": 0, "deadlines": 0,
                  "dedup_entries": 0, "links": 0, "profile_keys": 0, "model_queue": 0}  # fmt: skip
        found = any(c in st.users or c in st.cold for c in canon) or (
            ids is not None and any(ids.component(c) is not None for c in canon)
        )
        if req.kind in ("delete", "delete_and_suppress"):
            gone = set(members)
            # One tuple for every erasure of the request: a copy each was n² references
            # for a request of n ids (100 of 100: 86 kB), all of a batch of requests held
            # in one output list (2 GB for 20,000 of them, replayed from a control file).
            erased = tuple(members)
            for c in canon:
                user = self._user(c)
                if user is not None:
                    del st.users[c]
                    drop_recommendations(user)  # a pending list holds the user's items
                    purged["users"] += 1
                    purged["timers"] += len(user.timers or ())
                    purged["open_sessions"] += user.session is not None
                    if self.models is not None:
                        self.models.forget(user, at)  # its records would name the user
                if ids is not None:
                    linked = ids.component(c) is not None
                    gone_links = ids.purge(c)  # its links here and to other shards
                    purged["links"] += len(gone_links) if linked else 0
                self._touched.pop(c, None)
                # The profile store holds what this shard wrote: the profile of a user
                # whose events come here (it may outlive the state, so even if not found).
                if (
                    user is not None
                    or shard_key(c, self.cfg.shards, self.cfg.partitioner) == st.shard
                ):
                    out.append(Erasure(c, erased))
                    purged["profile_keys"] += 1
            # Held events are all later than the request (stream time is at it): a deletion
            # is not a suppression, so they will make a new profile when their time comes
            # (held rejected events are another matter: ``_release_rejected`` below).
            # The heap in place: ``_advance``, which applies this request, holds the list,
            # and a new one would hide every deadline scheduled after it in that call.
            if ids is not None:  # other profiles' refused links naming them
                ids.forget_refusals(members)
            # Users with a deadline, not entries: a user's stale entries (a deadline moved
            # before it came) depend on how its items were batched, a receipt must not.
            queued: set[str] = set()
            purge(st, gone, queued)
            # Their rejected events still held (``_rejected``: held to their partition's
            # watermark, which may be later than their own time) go now, before the
            # receipt, as they went at ingest before: nothing of them stays in state.
            self._release_rejected(gone, req.kind != "delete", out)
            if st.lag:  # parked deadlines of lagging users (``_lagging``) are theirs too
                kept = [e for e in st.lag if e[1] not in gone]
                queued.update(e[1] for e in st.lag if e[1] in gone)
                heapq.heapify(kept)
                st.lag[:] = kept
            purged["deadlines"] = len(queued)
            self._forget_cooling(gone)
            seen = st.seen
            mine = self._seen_of(gone, at)
            # Counted over the entries that can still match (within the window of ``at``):
            # which older ones were already forgotten depends on how often watermarks
            # came, and the receipt must not.
            horizon = at - self.cfg.dedup_window
            purged["dedup_entries"] = sum(1 for k in mine if seen[k][0] >= horizon)
            if self.models is not None:
                purged["model_queue"] = self.models.erase(gone, mine)
            # Removed in place: two copies of the whole table per request (every message
            # id of the dedup window, of every user) made a deletion cost 130 ms at 200k
            # entries. The others' entries older than the window stay for
            # ``_expire_seen``, as only memory depends on when they go.
            for k in mine:
                del seen[k]
            # Ingest's memory of clean property values (shared by the process) may hold
            # the person's own (a search query, an order id), its caches their ids.
            forget_erased()
        hashed = sorted({self._hash(m) for m in members})
        if req.kind in ("suppress", "delete_and_suppress"):
            # A star, not every pair: the first hash lists the others and each of them
            # lists it, so an unsuppress of any reaches all (``lift`` below) as before.
            # Every pair was a list of n per identifier (n² entries, a profile of 1,000
            # identifiers took 50 ms and a million entries of state).
            with_, first = st.suppressed_with, hashed[0] if hashed else ""
            for h in hashed:
                st.suppressed.setdefault(h, at)
                together = with_.setdefault(h, [])
                if h != first:
                    if first not in together:
                        together.append(first)
                    continue
                known = set(together)
                together += [o for o in hashed if o != h and o not in known]
            found = True
        elif req.kind == "unsuppress":
            lift, found = list(hashed), False
            while lift:  # and what each was suppressed with
                h = lift.pop()
                found = st.suppressed.pop(h, None) is not None or found
                lift.extend(st.suppressed_with.pop(h, ()))
        st.receipts += 1
        receipt = Receipt(req.request_id, req.kind, st.shard, "done" if found else "not_found",
                          at, hashed, purged, st.receipts,
                          source=control.read_at(req.position))  # fmt: skip
        receipt.chain = control.chain_next(st.chain, receipt.body())
        st.chain = receipt.chain
        out.append(receipt)

    def _seen_of(self, gone: set[str], at: float) -> set[str]:
        """The dedup entries (message ids) sent by an identifier in ``gone`` up to ``at``.

        Through an index by identifier (``_seen_by``): a walk of the whole table, every
        message id of the window of every user, cost ~60 ns an entry for each request,
        12 ms at 200k entries and 0.2 s at an hour of 1k events/s, so a batch of 1,000
        erasure requests held every shard for minutes. The index is built at the first
        deletion (one walk) and kept as ids arrive; it may list ids the table has
        forgotten or given to another identifier since, each checked against the table.
        """
        seen = self.state.seen
        by = self._seen_by
        if by is None:
            by = self._seen_by = {}
            for mid, (_, ident) in seen.items():
                by.setdefault(ident, []).append(mid)
            self._seen_by_size = len(seen)
        mine: set[str] = set()
        for ident in gone:
            mids = by.pop(ident, None)
            if mids is None:
                continue
            later: list[str] = []
            for mid in mids:
                entry = seen.get(mid)
                if entry is None or entry[1] != ident:
                    continue  # forgotten, or sent again by another identifier
                if entry[0] <= at:
                    mine.add(mid)
                else:
                    later.append(mid)
            if later:
                later = by[ident] = list(dict.fromkeys(later))  # an id sent twice: once
            self._seen_by_size -= len(mids) - len(later)
        return mine

    def _unindex_seen(self, ident: str, mid: str) -> None:
        """``mid`` left the dedup table: out of the index by identifier too. The index is
        no snapshot's, but it is memory: a suppressed person's event held past their
        request (``_arrive``) left their id and message id listed there until the
        index was next rebuilt."""
        by = self._seen_by
        mids = by.get(ident) if by is not None else None
        if mids is not None and mid in mids:
            assert by is not None
            mids.remove(mid)
            self._seen_by_size -= 1
            if not mids:
                del by[ident]

    def _apply(self, user: UserState, ev: Event, out: list[Output]) -> None:
        """Apply one event to its user, after everything of the user due before it."""
        st = self.state
        st.processed += 1
        merged, self._merged = self._merged, False  # ``_merge`` left its evaluation here
        if ev.ts > st.last_event:
            st.last_event = ev.ts
        if self.emit_profiles:
            self._touched[user.user_id] = None
        # An identify or a group call is no activity: it updates the profile only. Nor is
        # any call with ``context.active`` false (Segment's "just update the traits but
        # not 'last seen'"): it opens or extends no session and moves neither the user's
        # latest activity (``last_ts``: active_within, recency) nor its ``last_seen``
        # (eviction, the cold tier); a track, page or screen call so sent is counted in
        # the rules' windows (count, since, sequence, distinct) only.
        profile = ev.type == "identify" or ev.type == "group"
        # An order or a conversion is the user's act whatever the flag says (a server
        # sending its orders with active false): it is counted, as any other.
        quiet = profile or (
            not ev.active
            and ev.name not in self._session_spec.order_events
            and ev.name not in self._session_spec.conversion_events
        )
        if user.scheduled <= ev.ts:  # scheduled never runs late of the true next deadline
            self._run_due(user, ev.ts, out, evict=False, follows=not quiet)
        elif (
            quiet
            and (s := user.session) is not None
            and min(s.last + self._timeout, s.start + self._max_length) <= ev.ts
        ):
            # A close left for after this instant's events (a lapse there, ``_run_due``)
            # is made by the user's event at it; an identify opens no session, so it makes
            # the close here, before it, as it would at any other instant.
            self._run_due(user, ev.ts, out, evict=False)
        if quiet:
            user.device = ev.device or user.device
            user.locale = ev.locale or user.locale
            if ev.active:
                user.last_seen = max(user.last_seen, ev.ts)
            lim = self.cfg.features.limits
            if ev.type == "group":
                if self.group_traits:
                    features.group(user, ev, self.group_traits, self.group_pii, lim, st.limits_hit)
            elif profile:
                if self.traits:
                    features.identify(user, ev, self.traits, self.pii, lim, st.limits_hit)
            elif self.trackers:
                for tracker in self.trackers:
                    tracker.observe(user, ev, self._limits, self.track_slack, st.limits_hit)
            self._segments(
                user,
                ev.ts,
                out,
                [],
                None,
                None if merged else _EVENT_ONLY,
            )
            self._schedule(user)
            return
        spec = self._session_spec
        s = user.session
        seq = user.session_seq
        if s is not None and ev.ts < s.start and s.start - ev.ts >= self._timeout:
            # Late, and would belong to a session that has already closed.
            st.processed -= 1
            self._dead(
                "late_event",
                f"event time {iso(ev.ts)} belongs to a session of user "
                f"{ev.user_id!r} that has already closed",
                ev,
                out,
            )
            if merged:
                self._segments(user, ev.ts, out, [])
                self._schedule(user)
            return
        name = ev.name
        # An order sent again (its order_id counted in the session already, as a reloaded
        # confirmation page sends it, or by the user recently, ``sessions.seen_order``) is
        # no new order: it fires no event trigger below, and starts no timer. The session
        # it lands in, the open one or one it opens, counts no order for it.
        order = name in spec.order_events
        orders = s.orders if s is not None and order else 0
        closed = sessions.observe(user, ev, spec, st.limits_hit, st.currencies)
        now = user.session
        repeat = order and now is not None and now.orders == (orders if now is s else 0)
        if closed:  # at the event's instant (``_run_due``): evaluated with the event, below
            for session in closed:
                self._closed(user, session, out)
        focus = features.update(user, ev, self._feature_spec, st.limits_hit, st.currencies)
        if self.trackers:
            lim = self._limits
            for tracker in self.trackers:
                tracker.observe(user, ev, lim, self.track_slack, st.limits_hit)
        if self.models is not None:
            self.models.on_event(user, ev)
        if self.lab is not None:
            self.lab.observe(user, ev, out, st.limits_hit)
        # ``_changed_by``, its table read inline (the call is made when a key is new), its
        # key (``_kind_key``) worked out inline too: small ints, no tuple to build and hash.
        # ``focus``: the event's category, "" for none, None for several (``features.update``).
        key = 8 if user.session_seq != seq else 0
        if focus != "":
            key += 6 if name in self._video_events else 4
        if name in self._cart_events:
            key += 1
        changed: frozenset[str] | None = self._kinds.get(key)
        if changed is None:
            changed = self._changed_by(ev, focus != "", user.session_seq != seq)
        if merged:  # every rule, every category: the profile was just made of two
            changed = focus = None
        elif closed:  # and what a close changes
            changed = changed | segments.AT_CLOSE
        # The segments first, so a trigger's `when` reads them with the event counted, as
        # it reads every other value; the event's candidates are decided first, as before.
        found: list[Candidate] = []
        self._segments(user, ev.ts, out, found, focus, changed, decide=False)
        # Keyed by name, and by kind for a page or screen view (triggers hear those as
        # 'Page Viewed' / 'Screen Viewed' too, as rules count them; a track event so named
        # does not).
        listeners = self._event_listeners.get(name if ev.type == "track" else (ev.type, name))
        if listeners is None:
            listeners = self._listeners(ev)
        if listeners:  # a second list only when a trigger hears the event
            cands: list[Candidate] = []
            for trig in listeners:
                if repeat and (not isinstance(trig, TimerTrigger) or name not in trig.cancel_on):
                    # A timer hears it only to cancel, as any order does (it emptied the
                    # cart as one does): the same order again never restarts a timer.
                    continue
                proposed = trig.receive(user, ev)
                if proposed:
                    cands.extend(proposed)
            if found:
                cands.extend(found)
            if cands:
                self._decide(user, cands, out)
        elif found:
            self._decide(user, found, out)
        self._schedule(user)

    def _listeners(self, item: Event | SegmentChange) -> tuple[Trigger, ...]:
        """The triggers that do not ignore ``item`` (kept per name, or segment and change)."""
        if type(item) is Event:
            table: dict[Any, tuple[Trigger, ...]] = self._event_listeners
            key: Any = item.name if item.type == "track" else (item.type, item.name)
            triggers = self._on_event
        else:
            assert isinstance(item, SegmentChange)
            table, key, triggers = (
                self._change_listeners,
                (item.segment, item.change),
                self._on_change,
            )
        found = tuple(t for t in triggers if not ignores(t, item))
        if len(table) >= _LISTENERS_KEPT:
            table.clear()
        table[key] = found
        return found

    def _changed_by(self, ev: Event, category: bool, new_session: bool) -> frozenset[str]:
        """What kinds of fact this event changed (see ``segments.NAME_CHANGES_ON``);
        ``category``: the event had one or more categories (``features.update``)."""
        name = ev.name
        video = category and name in self.cfg.features.video_complete_events
        cart = name in self._cart_events
        key = _kind_key(new_session, category, video, cart)
        found = self._kinds.get(key)
        if found is None:
            kinds = ["event"]
            if new_session:
                kinds.append("session_start")
            if category:
                kinds.append("affinity")
                if video:
                    kinds.append("video")
            if cart:
                kinds.append("cart")
            found = self._kinds[key] = frozenset(kinds)
        return found

    # --- time ------------------------------------------------------------

    def _advance(self, now: float, out: list[Output]) -> None:
        """Run deadlines and release held events up to stream time ``now``, in time order."""
        st = self.state
        heap, drun, held, run = st.heap, st.run, st.held, st.held_run
        models = self.models
        heappop = heapq.heappop
        lagging = st.lagging
        limit = self._lagging() if lagging else INF
        while True:
            # The earliest deadline (``deadlines.pop``): the front of the minute reached
            # (``drun``) or the top of the heap (markers are only there).
            if drun:
                top = drun[0]
                in_drun = not heap or top < heap[0]
                if not in_drun:
                    top = heap[0]
                due = top[0]
            elif heap:
                top, in_drun = heap[0], False
                due = top[0]
            else:
                due = INF
            # The earliest held item: the front of the run or the top of the heap.
            if run:
                first = run[0]
                in_run = not held or first < held[0]
                hold = first[0] if in_run else held[0][0]
            elif held:
                in_run = False
                hold = held[0][0]
            elif due < INF:
                in_run, hold = False, INF
            else:
                break
            if due <= hold:  # a deadline at the same time as an event fires first (a
                # segment re-check is filed just after its instant: ``_run_due``)
                if due > now:
                    break
                if top[1] == MARK:  # a later hour is reached: its deadlines join the queue
                    heappop(heap)
                    pop_marker(st, due)
                    continue
                if models is not None and due >= models.quiet_until:  # sync has work
                    produced = models.sync(due)
                    if produced:
                        self._model_learning(produced, out)
                _, uid = drun.popleft() if in_drun else heappop(heap)
                user = st.users.get(uid) or self._user(uid)
                if user is None or user.scheduled != due:
                    continue
                if due > limit and uid in lagging:  # its partition has not passed it yet
                    heapq.heappush(st.lag, (due, uid))
                    continue
                user.scheduled = INF
                before = len(out)
                self._run_due(user, due, out)
                if user.via and user.via != uid:
                    self._stamp(user, out, before)
                if self.mark_due and len(out) > before:
                    out.append(DueMark(due, len(out) - before))
            else:
                if hold > now:
                    break
                if models is not None and hold >= models.quiet_until:
                    produced = models.sync(hold)
                    if produced:
                        self._model_learning(produced, out)
                entry = run.popleft() if in_run else heappop(held)
                item = entry[3]
                # (``hold > limit``: its lagging partition has not passed it yet.)
                if type(item) is Event:  # the most frequent first
                    if lagging and self._lags(item):
                        if hold > limit:
                            heapq.heappush(st.lag_held, entry)
                            continue
                        went = self._arrive(item, out)
                        if went is not None:
                            lagging.add(went)  # the profile it went to (identity)
                    else:
                        self._arrive(item, out)
                elif type(item) is ControlRequest:
                    if hold > limit:
                        heapq.heappush(st.lag_held, entry)
                        continue
                    self._control(item, hold, out)
                elif type(item) is LinkNotice:
                    self._linked_elsewhere(item)
                elif type(item) is Rejected:
                    self._rejected_held -= 1
                    self._judge_rejected(item, out)
                else:
                    self._arrive(item, out)
        if models is not None and now < INF:
            self._model_learning(models.sync(now), out)

    def _lags(self, ev: Event) -> bool:
        """Whether ``ev`` waits with a lagging user (``_lagging``): its own id lags, or
        (identity) the profile one of its identifiers is linked to does. Applied at once,
        an event of that profile's other device would run its parked deadlines (a cart's
        reminder before the order its partition still holds)."""
        lagging = self.state.lagging
        if ev.user_id in lagging:
            return True
        ids = self.ids
        if ids is None:
            return False
        anon = ev.anonymous_id
        known = ev.user_id if anon is None or ev.user_id != anon else None
        names = ((known, KNOWN), (anon, ANON), (ev.previous_id, ANON))
        return any(i is not None and ids.canonical(i, kind) in lagging for i, kind in names)

    def _lagging(self, force: bool = False) -> float:
        """The time up to which the events and deadlines of ``lagging`` users may go: the
        slowest active partition's watermark (``StreamClock.floor``); INF once no active
        partition is behind stream time (or ``force``), and the users lag no more.

        Live, a partition that rejoins from idleness behind stream time delivers events
        older than what stream time has passed. What such an event arms (a cart's
        reminder, a session close) would come due at once, though the partition's next
        fetch can still cancel it (the order two seconds after the cart) or hold an
        event before it (an order that arrives after a later page, within the lateness).
        So the users of such events lag: their events, their deadlines, and control
        requests, wait, parked in ``lag`` and ``lag_held``, until that partition's
        watermark passes them, as stream time does in a replay (a watermark, as in
        Flink, is the minimum over partitions); or until it turns idle again
        (``idle_after``) or the input ends. Everyone else keeps to stream time, which
        never moves back.
        """
        st = self.state
        clock = st.clock
        floor = INF if force else clock.floor()
        if floor >= clock.time:
            st.lagging.clear()
            floor = INF
        lag, parked = st.lag, st.lag_held
        while lag and lag[0][0] <= floor:  # back to the heap: a minute reached is kept there
            heapq.heappush(st.heap, heapq.heappop(lag))
        while parked and parked[0][0] <= floor:
            heapq.heappush(st.held, heapq.heappop(parked))
        return floor

    def _drop_unowned(self, user: UserState, due: float) -> None:
        """Drop the timers still due once the timer triggers have fired at ``due``: no
        configured trigger owns them any more (a trigger or an experiment removed since
        the snapshot), and they would come due forever."""
        timers = user.timers
        if timers and min(timers.values()) <= due:
            for key in _due(timers, due):
                del timers[key]

    def _run_due(
        self,
        user: UserState,
        until: float,
        out: list[Output],
        evict: bool = True,
        follows: bool = False,
        merging: bool = False,
    ) -> None:
        """Fire, in event-time order, everything of ``user`` due at or before ``until``.

        ``evict``: a deadline of the user was popped (``_advance``); the user is evicted
        when idle long enough, and otherwise filed under its next deadline here, which
        the loop has just worked out (``_schedule``'s work, without doing it again).
        ``follows``: an event of the user at ``until`` is applied next (``_apply``).
        ``merging``: ``user`` is a half of a merge at ``until`` (``_merge``), whose full
        evaluation follows: a close there coinciding with a lapse is evaluated in it.
        """
        spec = self.cfg.sessions
        timeout, max_length = spec.timeout, spec.max_length
        for _ in range(10_000):
            # The earliest of the session's close, the timers, the segment re-check and the
            # eviction (an idle user with nothing pending is forgotten ``history_window``
            # after its last activity), written out without calls: this runs for every
            # deadline popped. Which one it is, on a tie, the branches below decide.
            # A segment re-check is filed just after its instant (``key``) and evaluated at
            # it: the events of that instant are applied first, and their evaluation makes
            # the re-check's. At the instant a window lapses as an event renews it, the
            # segment is then never left; a re-check filed at the instant would have it
            # exit and enter again there (an `on enter` trigger firing twice). Sessions'
            # closes, timers and evictions still fire before an event at their instant.
            recheck = user.segment_recheck
            due = key = recheck if recheck == INF else nextafter(recheck, INF)
            s = user.session
            close_at = closing = INF
            timers = user.timers
            timer_at = min(timers.values()) if timers else INF
            if s is not None:
                close_at = closing = s.last + timeout
                end = s.start + max_length
                if end < close_at:
                    close_at = closing = end
                # A close at the instant a rule's window lapses goes with the re-check, after
                # that instant's events: an event of the user there closes the session itself
                # (``sessions.observe``) and is evaluated with the close (``_apply``), so a
                # window it renews is never left. Evaluated at the close, before the event,
                # the segment would exit and enter again at that instant (an `on enter`
                # trigger firing twice). Not when a timer of the user is due then too: the
                # close fires before it, as always (its `when` reads the session closed). A
                # merge closes its halves first, and leaves the evaluation to what follows.
                if closing == recheck and (evict or follows) and timer_at != closing:
                    close_at = key
                if close_at < due:
                    due = close_at
            if timers:
                if timer_at < due:
                    due = timer_at
            elif evict and s is None and not self._finishing:
                evict_at = max(user.last_ts, user.last_seen, user.first_seen) + spec.history_window
                if evict_at < due:  # at a re-check's instant too (``key`` is just after it)
                    due = evict_at
            if due > until or due == INF:
                if evict:
                    self._refile(user, due)
                return
            cands: list[Candidate] = []
            if due == close_at:
                assert s is not None
                reason = "inactivity" if closing == s.last + spec.timeout else "max_length"
                done = sessions.close(user, closing, reason, spec, self.state.limits_hit)
                self._closed(user, done, out)
                if not (merging and closing == recheck == until):  # (``_merge`` evaluates)
                    self._segments(user, closing, out, cands, changed=segments.AT_CLOSE)
            elif due == timer_at:
                for trig in self.timers:
                    cands.extend(trig.fire(user, due))
                self._decide(user, cands, out)
                self._drop_unowned(user, due)
            elif due == key:
                self._segments(user, recheck, out, cands, changed=segments.AT_RECHECK)
            else:
                # An eviction fires before the events of its instant, as closes and timers
                # do (an event then finds the user gone, whatever the rules); a re-check at
                # that instant runs just before it, so its exits are the rules' own.
                if due == recheck:
                    self._segments(user, recheck, out, cands, changed=segments.AT_RECHECK)
                    continue
                self._evict(user, due, out)
                return
        raise RuntimeError(f"step 'profiles': deadlines of user {user.user_id!r} do not converge")

    def _evict(self, user: UserState, at: float, out: list[Output]) -> None:
        if self.emit_profiles and user.user_id in self._touched:
            # Changed since its last write (e.g. events held until a jump of stream time
            # past ``history_window``, which applies and evicts them at once): written now,
            # as ``_profiles`` would have, since it cannot read the user once evicted.
            del self._touched[user.user_id]
            st = self.state
            now = max(st.clock.latest(self._controls), st.last_event)
            hl = self.cfg.features.affinity_half_life
            fields = features.profile(user, now, hl, self.models is not None)
            out.append(ProfileUpdate(user.user_id, fields, self._members(user.user_id)))
        if self.models is not None:
            self._model_records(user, self.models.forget(user, at), out)
        idle = self.cfg.sessions.history_window
        for seg in sorted(user.segments):
            reason = {"rule": "eviction", "idle_seconds": idle}
            out.append(SegmentChange(user.user_id, seg, "exit", at, reason))
        user.segments.clear()
        del self.state.users[user.user_id]
        self.state.cool_filed.pop(user.user_id, None)
        if self.ids is not None:  # its links go with it (kept no longer than its state)
            self.ids.purge(user.user_id)
        self.state.evicted += 1

    def _refile(self, user: UserState, due: float) -> None:
        """``_schedule`` of a user whose next deadline ``due`` is known (``_run_due``)."""
        if (
            self.cold_after is not None
            and user.user_id not in self.state.cool_filed
            and not user.timers
            and user.session is None
        ):
            self._file_cool(user)
        if due < user.scheduled:
            user.scheduled = due
            st = self.state
            m = int(due // MINUTE)
            if m <= st.near_min:
                heapq.heappush(st.heap, (due, user.user_id))
            else:
                push_later(st, due, user.user_id, m)

    def _schedule(self, user: UserState) -> None:
        # ``_run_due``'s next deadline, the eviction included, inlined (per event).
        due = user.segment_recheck  # none pending (INF) for most users: no call then
        if due != INF:
            due = nextafter(due, INF)
        s = user.session
        timers = user.timers
        if s is not None:
            close = s.last + self._timeout
            end = s.start + self._max_length
            if end < close:
                close = end
            # At a lapse's instant the close goes with the re-check (``_run_due``), but for
            # a timer due then too.
            if close < due and (
                close != user.segment_recheck or (timers and min(timers.values()) == close)
            ):
                due = close
        if timers:
            for t in timers.values():
                if t < due:
                    due = t
        elif s is None and not self._finishing:
            idle = max(user.last_ts, user.last_seen, user.first_seen) + self._history_window
            if idle < due:
                due = idle
            # Only an idle user (this branch is ``_file_cool``'s own test) can be filed to
            # go cold: a busy one, nearly every user an event was applied to, costs no call.
            if self.cold_after is not None and user.user_id not in self.state.cool_filed:
                self._file_cool(user)
        if due < user.scheduled:
            user.scheduled = due
            st = self.state
            m = int(due // MINUTE)
            if m <= st.near_min:  # ``deadlines.push``, its common case
                heapq.heappush(st.heap, (due, user.user_id))
            else:
                push_later(st, due, user.user_id, m)

    # --- the cold tier ---------------------------------------------------------
    # A user with no open session and no timer, inactive for ``cold_after`` of stream
    # time, is kept as its codec bytes in ``ShardState.cold`` and decoded again the
    # first time anything looks it up by id (``_user``): its next event, its next
    # deadline, a merge, a control request. Each warm user that could go cold has one
    # entry in the ``cooling`` heap (``cool_filed`` says which); a popped entry whose
    # user was active since is filed again for later, so the cost is one heap push per
    # idle spell, never a scan of the users. A revived user is filed again only at the
    # next ``_cool``, if it is still idle then (it mostly is not: it was revived for an
    # event), so a revival costs no entry that is popped only to be dropped.

    def _user(self, uid: str) -> UserState | None:
        """The user ``uid`` (revived from the cold tier if it is there), or None."""
        user = self.state.users.get(uid)
        if user is None and uid in self.state.cold:
            user = self._revive(uid)
        return user

    def _peek(self, uid: str) -> UserState | None:
        """The user ``uid`` to read only: a cold one is decoded, not revived."""
        st = self.state
        user = st.users.get(uid)
        if user is None:
            data = st.cold.get(uid)
            if data is not None:
                user = decode_user(data)
        return user

    def _revive(self, uid: str) -> UserState:
        user = self.state.users[uid] = decode_user(self.state.cold.pop(uid))
        if self.cold_after is not None:
            self._revived.append(uid)
        return user

    def _file_cool(self, user: UserState) -> None:
        """File ``user`` in the cooling queue, at when it can go cold, unless it is filed."""
        if user.session is None and not user.timers and not self._finishing:
            filed = self.state.cool_filed
            uid = user.user_id
            if uid not in filed:
                assert self.cold_after is not None
                due = max(user.last_ts, user.last_seen, user.first_seen) + self.cold_after
                filed[uid] = due
                cool_push(self.state, due, uid)

    def _forget_cooling(self, gone: set[str]) -> None:
        """A deletion: no entry of the cooling queue names these ids any more."""
        st = self.state
        for uid in gone:
            st.cool_filed.pop(uid, None)
        cool_purge(st, gone)

    def _cool(self, now: float) -> None:
        """Move the users idle since ``cold_after`` before stream time ``now`` to the cold tier."""
        st = self.state
        filed, users, cold = st.cool_filed, st.users, st.cold
        if self._revived:
            revived, self._revived = self._revived, []
            if not self._finishing:
                for uid in revived:
                    user = users.get(uid)
                    if user is not None and uid not in filed:
                        self._file_cool(user)
        cooling, crun = st.cooling, st.cool_run
        if self._finishing:
            return
        heappop = heapq.heappop
        while True:  # the earliest entry: ``deadlines.pop``, inline
            if crun and (not cooling or crun[0] < cooling[0]):
                if crun[0][0] > now:
                    break
                due, uid = crun.popleft()
            elif cooling and cooling[0][0] <= now:
                due, uid = heappop(cooling)
            else:
                break
            if uid == MARK:  # a later minute is reached: its entries are the run
                cool_pop_marker(st, due)
                continue
            if filed.get(uid) != due:
                continue
            del filed[uid]
            user = users.get(uid)
            if user is None or user.session is not None or user.timers:
                continue  # gone, or busy again: filed anew when it is idle
            if self.cold_after is None:
                continue  # the tier was switched off since the entry was filed
            again = max(user.last_ts, user.last_seen, user.first_seen) + self.cold_after
            if again > now:  # active since it was filed
                filed[uid] = again
                cool_push(st, again, uid)
                continue
            cold[uid] = encode_user(user)
            del users[uid]

    # --- consequences ----------------------------------------------------

    def _closed(self, user: UserState, session: Session, out: list[Output]) -> None:
        produced: list[SegmentChange | Drift] = []
        if self.models is not None:
            produced = self.models.on_session(user, session)
        out.append(session)
        if self.emit_profiles:
            self._touched[user.user_id] = None
        self._model_records(user, produced, out)

    def _model_learning(self, produced: list[SegmentChange | Drift], out: list[Output]) -> None:
        """What the models' learning produced (drift detections): output as is."""
        out.extend(produced)

    def _model_records(
        self, user: UserState, produced: list[SegmentChange | Drift], out: list[Output]
    ) -> None:
        """Output what the models produced; cluster changes reach the triggers."""
        if not produced:
            return
        cands: list[Candidate] = []
        for rec in produced:
            out.append(rec)
            if type(rec) is SegmentChange:
                for trig in self.cfg.triggers:
                    cands.extend(trig.receive(user, rec))
        self._decide(user, cands, out)

    def _segments(
        self,
        user: UserState,
        at: float,
        out: list[Output],
        cands: list[Candidate],
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        decide: bool = True,
    ) -> None:
        changes = self.evaluator.evaluate(
            user, at, self._half_life, focus, changed, self._limits, self.state.limits_hit
        )
        if changes:
            if self.emit_profiles:  # a re-check's exit changes the live profile's segments too
                self._touched[user.user_id] = None
            for ch in changes:
                if ch.change == "enter":
                    diagnostics.segment_change(self.state.diag, ch)
                out.append(ch)
                listeners = self._change_listeners.get((ch.segment, ch.change))
                if listeners is None:
                    listeners = self._listeners(ch)
                for trig in listeners:
                    cands.extend(trig.receive(user, ch))
        if cands and decide:  # most evaluations propose nothing
            self._decide(user, cands, out)

    def _decide(self, user: UserState, cands: list[Candidate], out: list[Output]) -> None:
        if not cands:  # most evaluations propose nothing
            return
        for c in cands:
            diagnostics.candidate(self.state.diag, c)
        if any(c.blocked is not None for c in cands):  # a `when` that did not hold
            cands[:] = [c for c in cands if c.blocked is None]
        if self.lab is not None:  # experiments decide (and expose) every candidate
            self.lab.decide(user, cands, out)
        for c in cands:
            reason = self.cfg.caps.decide(user, c.action, c.at)
            cause = str(c.cause.get("segment") or c.cause.get("message_id") or "")
            action_id = stable_id(user.user_id, c.trigger, c.action, iso(c.at), cause)
            out.append(
                Action(
                    action_id,
                    user.user_id,
                    c.action,
                    c.at,
                    {"name": c.trigger, **c.cause},
                    c.payload,
                    "delivered" if reason is None else "suppressed",
                    reason,
                )
            )
        cands.clear()
