"""The behavioral dataflow, wired step by step. Logic lives in ``operators/``.

input partitions (each: validate → privacy → lateness against its own watermark →
route to shards, + its watermark to every shard) → profiles (sessions, features,
models, segments, triggers) → outputs

Ingest runs inside each input partition (``flows/sources.py``, ``flows/kafka_io.py``)
because a partition's event time is state to snapshot with its offset.

The worker stamps its input: a Kafka partition sends an ``Arrival`` marker with
each batch to every shard the batch reached, and each shard answers with a
``BatchDone`` (arrival time, events processed) after the outputs of the batch's last
event (applied once stream time passes it), so the sink can measure end-to-end
latency. Records a deadline produced (a session close, a segment exit, a timer's
action) are followed by a ``records.DueMark`` with the event time they were due, so the
sink can measure how long after it they were published.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic

from audienceflow.flows import metrics
from audienceflow.flows.snapshots import SnapshotRefused, seal, unseal
from audienceflow.operators.engine import ShardEngine, ShardState, shard_of
from audienceflow.operators.records import Event, ProfileUpdate, Rejected, Watermark
from audienceflow.operators.routing import is_out, layout, shard_name
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_codec import decode_shard, encode_shard

log = logging.getLogger("audienceflow.redis")


@dataclass(frozen=True, slots=True)
class Arrival:
    """When a source batch was read (wall clock, epoch seconds), and when its first item
    entered the system upstream (e.g. its Kafka timestamp), if known."""

    at: float
    upstream: float | None = None


@dataclass(frozen=True, slots=True)
class BatchDone:
    """A shard applied every event of one or more stamped batches (their earliest arrival
    and upstream times; None for none), and ``processed`` events since the last one."""

    arrival: float | None
    upstream: float | None
    processed: int


@dataclass(frozen=True, slots=True)
class Republished:
    """Profiles a shard emitted again because the profile store lost its data (a chunk of
    ``ShardEngine.held_profiles``), written by the sink like ``ProfileUpdate`` records.
    ``request`` and ``shard`` (``RepublishRequests``) name the request and the shard;
    ``last``: the shard's last chunk for it (maybe empty), after which the sink tells
    ``RepublishRequests.finished``. ``name``: the shard's name once a watermark told it
    its key (``RepublishRequests.place``), else ``""``; ``origin``: its process's
    ``RepublishRequests.origin``."""

    updates: list[ProfileUpdate]
    request: int = 0
    shard: int = -1
    last: bool = False
    name: str = ""
    origin: str = ""


class RepublishRequests:
    """One per process: a profile store that finds its data lost asks for every profile
    again (``request``), and each shard of the process emits those it holds at its next
    activation (``ShardLogic``). A count, not a flag: every shard sees each request, with no
    one to clear it. ``within``: the store's TTL, in seconds of stream time.

    Each shard joins (``join``) when it is built; the sink reports a shard's last chunk
    written (``finished``), and ``resent(n)`` says whether every shard of the process has
    written all it holds for request ``n`` or a later one (``wait(n, timeout)`` waits for
    it): only then does a store mark Redis complete again (``flows/redis_store.py``), so
    a stop during the re-publication leaves Redis marked incomplete and the restarted
    process re-sends it all.

    ``shards``: how many shards the process builds (``placement.held_shards``), so that
    none is done while one is still to be built: on resume a worker thread may decode its
    snapshots while another thread's writer has asked and its shards written everything.

    ``names``: those shards' names, as the placement model (``placement.key_worker``)
    puts them on this process; what its writer keys vouch for. Bytewax is not asked where
    it put a shard: each shard tells its name once a watermark names its key (``place``),
    and the sink names the shard of each last chunk (``finished``). A shard of another
    process's found here, by either, makes the process ``misplaced`` for good: nothing is
    ``resent`` any more, so no writer key of the process says "done" for shards the
    process may not hold (``flows/redis_store.py``). A shard of the model's that never
    shows up here cannot be told from one slow to build: it holds ``resent`` back (never
    "done"), and the process that holds it finds it as one of another's.
    """

    def __init__(
        self, within: float, shards: int | None = None, names: frozenset[str] | None = None
    ) -> None:
        self.within = within
        self.names = names
        self.shards = len(names) if names is not None and shards is None else shards
        self.count = 0
        self.done: dict[int, int] = {}  # shard token -> latest request it has written in full
        self.placed: dict[int, str] = {}  # shard token -> its name, once a watermark said it
        self.origin = uuid.uuid4().hex  # on its shards' chunks: another process's are not ours
        self.strays: set[str] = set()  # shards of other processes found here (``misplaced``)
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)  # a shard's last chunk written

    @property
    def misplaced(self) -> bool:
        """A shard the placement model puts on another process was found on this one."""
        return bool(self.strays)

    def place(self, shard: int, name: str) -> None:
        """Shard ``shard`` (a token of ``join``) is the one named ``name``, built here."""
        with self._lock:
            self.placed[shard] = name
            if self.names is not None and name not in self.names:
                self._stray(name, "was built in this process")
            self._finished.notify_all()  # the last of the model's shards may be here now

    def request(self) -> int:
        """Ask for every profile again; the request's number."""
        with self._lock:
            self.count += 1
            return self.count

    def join(self) -> tuple[int, int]:
        """A new shard's token, and the request it has seen: one before the latest, if
        any (a shard built after a request takes part in it, however late: it may hold
        resumed users Redis lost; a new one holds none, and costs an empty chunk)."""
        with self._lock:
            token = len(self.done)
            seen = max(self.count - 1, 0)
            self.done[token] = seen
            return token, seen

    def finished(self, shard: int, request: int, name: str = "", origin: str = "") -> None:
        """The sink wrote the last chunk of ``shard`` (named ``name``, if it knew it; of
        the process whose ``origin`` it is) for ``request``. Another process's, or a name
        the token was not placed under (a shard of this process tells its name before it
        writes it on a chunk), is a shard of another process's, whose chunks came to this
        process's writer: its token and request numbers are not ours."""
        with self._lock:
            if (origin and origin != self.origin) or (name and self.placed.get(shard) != name):
                self._stray(name or "a shard", "wrote its profiles through this process's writer")
                return
            if request > self.done.get(shard, -1):
                self.done[shard] = request
                self._finished.notify_all()

    def resent(self, request: int) -> bool:
        """Every shard of the process has written all it holds since ``request``."""
        with self._lock:
            return self._resent(request)

    def wait(self, request: int, timeout: float) -> bool:
        """``resent(request)``, waiting at most ``timeout`` seconds for it (only a shard's
        last chunk written makes it so: a shard built makes it not)."""
        with self._finished:
            return self._finished.wait_for(lambda: self._resent(request), timeout)

    def _resent(self, request: int) -> bool:
        if self.strays:
            return False  # the placement model is wrong here: the masks vouch for nothing
        if self.shards is not None and len(self.done) < self.shards:
            return False  # a shard still to be built
        if self.names is not None and not self.names <= set(self.placed.values()):
            return False  # one of the model's shards not (yet) seen here
        return all(n >= request for n in self.done.values())

    def _stray(self, name: str, how: str) -> None:
        """Another process's shard (by the placement model) found here: said once each."""
        if name in self.strays:
            return
        self.strays.add(name)
        metrics.SHARDS_MISPLACED.inc()
        log.warning(
            "%s %s, but the placement model puts it on another process: the shard placement "
            "differs from the model (flows/placement.py), and this process's writer keys "
            "no longer vouch for its shards in Redis",
            name,
            how,
        )


# Profiles a shard re-emits per activation: a shard of 100,000 users is not one batch of
# 100,000 writes (nor one Redis pipeline), and its events go on between the chunks.
REPUBLISH_CHUNK = 1000
REPUBLISH_POLL_S = 1.0  # live with Redis, a quiet shard wakes this often to look for a request
# Stamps a shard keeps of batches it still holds events of (a partition held far behind,
# with small batches): beyond, a batch's stamp is dropped (its latency goes unobserved).
PENDING_MAX = 10_000
# A wake-up for the wall-clock fallback comes this much after the instant it computed: the
# subtraction in ``Clock.now`` may round a hair below it, and the item would wait a poll.
WAKE_MARGIN_S = 0.001


class ShardLogic(StatefulBatchLogic[Any, Any, Any]):
    """Bytewax adapter around ``ShardEngine``; the engine holds all the logic."""

    def __init__(
        self,
        engine: ShardEngine,
        replay: bool,
        copy_snapshots: bool,
        poll: float,
        settings: Settings,
        models_factory: Callable[[Settings, str], Any] | None,
        stopping: Callable[[], bool] | None = None,
        stamped: bool = False,
        stats_every: float | None = None,
        republish: RepublishRequests | None = None,
    ) -> None:
        self.engine = engine
        self.replay = replay
        self.copy_snapshots = copy_snapshots
        self.poll = poll
        self.settings = settings
        self.models_factory = models_factory
        self.stopping = stopping
        self.stamped = stamped
        self.stats_every = stats_every
        self.stats_due = 0.0
        self.stats_owed = False  # a report was skipped (too soon after the last): send it later
        self.reported = engine.state.processed  # processed events already in a BatchDone
        # Stamps of batches some of whose events the shard still holds (``_done``): a heap
        # of (latest event time of the batch here, order, arrival, upstream).
        self.pending: list[tuple[float, int, float, float | None]] = []
        self.pending_seq = 0
        self.latest = -math.inf  # of the events since the last stamp
        keys = settings.shard_keys or tuple(shard_name(i) for i in range(settings.shards))
        self.names = {key: shard_name(i) for i, key in enumerate(keys)}  # key → shard name
        self.republish = republish
        self.republish_token, self.republish_seen = (
            republish.join() if republish is not None else (-1, 0)
        )
        self.reemit: Iterator[ProfileUpdate] | None = None  # profiles still to emit again
        # The shard's name as its key says (a watermark's ``shard``), told to ``republish``
        # once (``_place``): where Bytewax put it, against where the placement model does.
        self.placed = "" if republish is not None and republish.names is not None else None

    def _name(self, values: list[Any]) -> None:
        # Bytewax builders are not told their key: learn it from the first event, or
        # from a watermark (sent to every shard) while none came. A shard left unnamed
        # wrote its receipts with shard "" (four shards' receipts of one request the
        # same receipt_id) and never reported its gauges on an input quiet from the start.
        st = self.engine.state
        for v in values:
            kind = type(v)
            if kind is Event:
                if not st.shard:
                    st.shard = shard_of(v.user_id, self.settings.shards, self.settings.partitioner)
                if self.models_factory is not None and st.models is None:
                    st.models = self.models_factory(self.settings, st.shard)
                    self.engine.models = st.models
                return
            if kind is Watermark and not st.shard:
                st.shard = self.names.get(v.shard, "")

    def _place(self, values: list[Any]) -> None:
        # Not from an event's user id (``_name``): only the key says where Bytewax put it.
        for v in values:
            if type(v) is Watermark and v.shard in self.names:
                self.placed = self.names[v.shard]
                assert self.republish is not None
                self.republish.place(self.republish_token, self.placed)
                return

    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        st = self.engine.state
        if not st.shard or (self.models_factory is not None and st.models is None):
            self._name(values)
        if self.placed == "":  # until a watermark named its key: one test an activation
            self._place(values)
        if not self.stamped:
            out = self.engine.on_items(values)
            self._republish(out)
            return out, False
        # A stamp follows its batch's events: it waits until the latest of them is applied.
        latest, marked = self.latest, False
        for v in values:
            kind = type(v)
            if kind is Event:
                if v.ts > latest:
                    latest = v.ts
            elif kind is Rejected:  # a late line's dead letter waits for stream time ``at``
                if v.at > latest:
                    latest = v.at
            elif kind is Arrival:
                marked = True
                if len(self.pending) < PENDING_MAX:
                    self.pending_seq += 1
                    heapq.heappush(self.pending, (latest, self.pending_seq, v.at, v.upstream))
                latest = -math.inf
        self.latest = latest
        if marked:
            values = [v for v in values if type(v) is not Arrival]
        out: list[Any] = self.engine.on_items(values)
        self._republish(out)
        self._done(out)
        return out, False

    def on_notify(self) -> tuple[list[Any], bool]:
        out: list[Any] = self.engine.on_time()
        self._republish(out)
        if self.stamped:
            self._done(out)  # held events released by time count now
        return out, False

    def on_eof(self) -> tuple[list[Any], bool]:
        # A stop requested from outside (SIGTERM) is not the end of the input:
        # finishing would close every session and fire every timer early.
        out: list[Any] = []
        if self.replay and not (self.stopping is not None and self.stopping()):
            out = self.engine.finish()  # ends with the shard's last report
        elif self.stats_every is not None and self.engine.state.shard:
            # The last report, whenever the periodic one was due: the closing log line
            # reads its held events from it (an event read since the last report, held
            # for stream time, was missing from 'held N', and the counts did not add up).
            out.append(self.engine.stats())
        if self.stamped:
            self._done(out)
        return out, False

    def _republish(self, out: list[Any]) -> None:
        """After a request (``RepublishRequests``), the next chunk of every profile this
        shard holds, after the work of the activation: what it applied is in them, and a
        user it deleted is not. A request during one starts it again from the first user."""
        requests = self.republish
        if requests is None:
            return
        if requests.count != self.republish_seen:
            self.republish_seen = requests.count
            self.reemit = self.engine.held_profiles(requests.within)
        if self.reemit is None:
            return
        chunk = list(itertools.islice(self.reemit, REPUBLISH_CHUNK))
        last = len(chunk) < REPUBLISH_CHUNK
        if last:
            self.reemit = None
        if chunk or last:  # the last one even empty: the sink reports the shard done
            name = self.placed or ""
            out.append(
                Republished(
                    chunk,
                    self.republish_seen,
                    self.republish_token,
                    last,
                    name,
                    requests.origin,
                )
            )

    def _done(self, out: list[Any]) -> None:
        """Account for the events processed since the last ``BatchDone``, with the stamps
        of the batches whose every event is now applied (or dead-lettered or filtered).

        So the sink's latency is each batch's up to the outputs of its last event. An
        event waits for stream time (the allowed lateness): stamped with the batch it came
        out with, the latency was of outputs written with a later batch, not of its own,
        and read low by up to the lateness (measured: 150 against 188 ms at 5k events/s
        with 100 ms lateness, beside the independent subscriber of ``bench/kafka.py``).
        """
        processed = self.engine.state.processed
        pending = self.pending
        arrival: float | None = None
        upstream: float | None = None
        if pending:
            applied = self.engine.held_from()  # every event before it is applied
            while pending and pending[0][0] < applied:
                _, _, at, up = heapq.heappop(pending)
                if arrival is None or at < arrival:
                    arrival = at
                if up is not None and (upstream is None or up < upstream):
                    upstream = up
        if arrival is not None or processed != self.reported:
            out.append(BatchDone(arrival, upstream, processed - self.reported))
            self.reported = processed
        self._stats(out)

    def _stats(self, out: list[Any]) -> None:
        """Every ``stats_every`` seconds of wall time, report the shard's counters."""
        if self.stats_every is None or not self.engine.state.shard:
            return
        now = time.monotonic()
        if now >= self.stats_due:
            stats = self.engine.stats()
            out.append(stats)
            # A shard named by a watermark reports before its time is known: that report
            # does not hold the next one (with the time) back for stats_every.
            known = stats.extra.get("stream_time", -math.inf) > -math.inf
            self.stats_due = now + self.stats_every if known else now
            self.stats_owed = False
        else:
            self.stats_owed = True

    def notify_at(self) -> datetime | None:
        # Live only: wake up to let quiet-input stream time fire due deadlines.
        if self.replay:
            return None
        requests = self.republish
        if requests is not None:
            if self.reemit is not None or requests.count != self.republish_seen:
                return datetime.now(UTC)  # the next chunk, or the first after a request
            # A quiet shard looks for a request at least this often.
            wake = datetime.now(UTC) + timedelta(seconds=REPUBLISH_POLL_S)
            at = self._notify_at()
            return wake if at is None or wake < at else at
        return self._notify_at()

    def _notify_at(self) -> datetime | None:
        if self.engine.next_due() is not None:
            return datetime.now(UTC) + timedelta(seconds=self._wait())
        if self.stats_owed:
            # The last work (often a jump of stream time that closed and evicted
            # everything) came too soon after a report: without this wake-up the users,
            # stream-time and held-events gauges would show its "before" until the next
            # event, however long the input stays quiet.
            wait = max(0.0, self.stats_due - time.monotonic())
            return datetime.now(UTC) + timedelta(seconds=wait)
        return None

    def _wait(self) -> float:
        """Seconds until the next wake-up while something is pending.

        Every partition idle, stream time follows the wall clock: the wake-up is when it
        reaches the earliest pending item, so the last events before a lull (those within
        the lateness of the last one, which no later event lets through) and a timer due
        meanwhile wait ``idle_after + allowed_lateness``, as documented, not up to a
        ``poll`` (half of ``idle_after``) more. When that time has passed already (it
        came due while the shard was working: stream time moved at an earlier reading of
        the wall), at once; but if stream time has reached the item and it is still
        held, at the next ``poll``, as otherwise: never a busy loop."""
        engine = self.engine
        at = engine.wall_due()
        wall = engine.wall
        if at is None or wall is None:
            return self.poll
        wait = at - wall()
        if wait <= 0.0:
            due = engine.next_due()
            reached = due is None or due <= engine.state.clock.time
            return self.poll if reached else WAKE_MARGIN_S
        return min(wait + WAKE_MARGIN_S, self.poll)

    def snapshot(self) -> Any:
        # Without recovery Bytewax never pickles snapshots, so the live state
        # can be handed over as is; with recovery it must be a frozen copy.
        if self.copy_snapshots:
            # Versioned envelope (operators/shard_codec.py), HMAC-tagged when a key is set.
            sealed = seal(encode_shard(self.engine.state))
            metrics.SNAPSHOT_TIME.set_to_current_time()
            return sealed
        return self.engine.state


def build_flow(
    settings: Settings,
    source: Source[Any],
    sink_for: Callable[[str, Stream[Any]], None],
    *,
    replay: bool,
    partitions: list[str],
    flow_id: str = "audienceflow",
    models_factory: Callable[[Settings, str], Any] | None = None,
    emit_profiles: bool = False,
    copy_snapshots: bool = False,
    stopping: Callable[[], bool] | None = None,
    stamped: bool = False,
    stats_every: float | None = None,
    suppressed: tuple[str, ...] = (),
    controls: tuple[str, ...] = (),
    republish: RepublishRequests | None = None,
) -> Dataflow:
    """Assemble the dataflow; ``sink_for(step_prefix, stream)`` attaches the outputs.

    ``source`` yields keyed items (its partitions ingest their own lines);
    ``partitions`` names all of its partitions, so that every shard waits for
    each of them. The output stream carries ``(key, record)`` pairs: the shard
    key for what the profiles step produced (a late or future event's dead letter among
    it: ``records.Rejected``), ``OUT`` (or an ``out_key``) for the other dead
    letters and filtered events. ``replay`` means stream time only, and the end of the
    input finishes the stream (unless ``stopping()`` says the end is a requested stop);
    otherwise the wall clock is the fallback when every partition is idle.
    ``stamped`` carries ``Arrival`` markers through (see the module docstring);
    ``stats_every`` (wall seconds) has each shard report its ``ShardStats``
    periodically. ``suppressed``: identifiers whose events are filtered from the start.
    ``controls``: the partitions of ``partitions`` that carry control requests: in a
    replay their time never takes stream time past the events' (``StreamClock.update``).
    ``republish``: the process's requests for every profile again (live, with Redis); its
    shards then emit ``Republished`` chunks.
    """
    wall = None if replay else time.time

    def builder(resume: Any) -> ShardLogic:
        state = resumed(resume, settings)
        engine = ShardEngine(
            settings,
            state,
            wall=wall,
            models=state.models,
            emit_profiles=emit_profiles,
            partitions=partitions,
            mark_due=stamped,
            suppressed=suppressed if resume is None else (),
            controls=controls,
        )
        if resume is not None:
            # So that events in + these = processed + dead-lettered + filtered + held.
            metrics.RESUMED_HELD.inc(engine.buffered())
        return ShardLogic(
            engine,
            replay,
            copy_snapshots,
            poll=max(settings.idle_after / 2, 1.0),
            settings=settings,
            models_factory=models_factory,
            stopping=stopping,
            stamped=stamped,
            stats_every=stats_every,
            republish=republish,
        )

    flow = Dataflow(flow_id)
    keyed = op.input("input", flow, source)  # validate → privacy → time → route, per partition
    split = op.branch("to_profiles", keyed, _not_out)
    results = op.stateful_batch("profiles", split.trues, builder)
    outputs = op.merge("outputs", results, split.falses)
    sink_for("out", outputs)
    return flow


def resumed(resume: Any, settings: Settings) -> ShardState:
    """The state a shard starts from: its snapshot (``bytes`` with recovery), else empty.

    A snapshot written under another layout (number of shards, or partitions with
    placement by partition, or hash) is refused: its users would be looked up on
    other shards, and their profiles silently started again from nothing.
    """
    expected = layout(settings.shards, settings.partitioner, settings.placement)
    state = decode_shard(unseal(resume)) if isinstance(resume, bytes) else resume
    if state is None:
        return ShardState(shard="", layout=expected)
    if state.layout and state.layout != expected:
        raise SnapshotRefused(
            f"recovery snapshot of {state.shard or 'a shard'} was written with "
            f"{state.layout}, this run has {expected}: its users would be looked up on "
            f"other shards. Resume with the state.shards, state.placement, state.partitioner "
            "and input partitions it was written with, or start from an empty recovery "
            "directory"
        )
    state.layout = expected
    state.clock.restarted()
    return state


def _not_out(kv: tuple[str, Any]) -> bool:
    return not is_out(kv[0])
