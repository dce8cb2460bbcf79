"""The behavioral dataflow, wired step by step. Logic lives in ``operators/``.

input → validate → privacy → route to shards (+ stream-time ticks) →
profiles (sessions, features, models, segments, triggers) → outputs
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic

from audienceflow.operators.engine import ShardEngine, ShardState, shard_of
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import Event
from audienceflow.operators.routing import OUT, Ingest, Router
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Validator


class ShardLogic(StatefulBatchLogic[Any, Any, Any]):
    """Bytewax adapter around ``ShardEngine``; the engine holds all the logic."""

    def __init__(self, engine: ShardEngine, replay: bool, copy_snapshots: bool, poll: float,
                 settings: Settings, models_factory: Callable[[Settings, str], Any] | None) -> None:
        self.engine = engine
        self.replay = replay
        self.copy_snapshots = copy_snapshots
        self.poll = poll
        self.settings = settings
        self.models_factory = models_factory

    def _name(self, values: list[Any]) -> None:
        # Bytewax builders are not told their key: learn it from the first event.
        for v in values:
            if type(v) is Event:
                st = self.engine.state
                st.shard = shard_of(v.user_id, self.settings.shards)
                if self.models_factory is not None and st.models is None:
                    st.models = self.models_factory(self.settings, st.shard)
                    self.engine.models = st.models
                return

    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        if not self.engine.state.shard:
            self._name(values)
        return self.engine.on_items(values), False

    def on_notify(self) -> tuple[list[Any], bool]:
        return self.engine.on_time(), False

    def on_eof(self) -> tuple[list[Any], bool]:
        if self.replay:
            return self.engine.finish(), False
        return [], False

    def notify_at(self) -> datetime | None:
        # Live only: wake up to let quiet-input stream time fire due deadlines.
        if self.replay or self.engine.next_due() is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.poll)

    def snapshot(self) -> Any:
        # Without recovery Bytewax never pickles snapshots, so the live state
        # can be handed over as is; with recovery it must be a frozen copy.
        if self.copy_snapshots:
            return pickle.dumps(self.engine.state, protocol=pickle.HIGHEST_PROTOCOL)
        return self.engine.state


def build_flow(
    settings: Settings,
    source: Source[Any],
    sink_for: Callable[[str, Stream[Any]], None],
    *,
    replay: bool,
    flow_id: str = "audienceflow",
    models_factory: Callable[[Settings, str], Any] | None = None,
    emit_profiles: bool = False,
    copy_snapshots: bool = False,
) -> Dataflow:
    """Assemble the dataflow; ``sink_for(step_prefix, stream)`` attaches the outputs.

    The output stream carries ``(key, record)`` pairs: the shard key for what
    the profiles step produced, ``OUT`` for dead letters and filtered events.
    """
    ingest = Ingest(
        Validator(settings.taxonomy, settings.consent_path),
        Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt),
        Router(settings.shards, settings.tick),
    )
    wall = None if replay else time.time

    def builder(resume: Any) -> ShardLogic:
        state = pickle.loads(resume) if isinstance(resume, bytes) else resume
        engine = ShardEngine(settings, state or ShardState(shard=""), wall=wall,
                             emit_profiles=emit_profiles)
        if state is not None and state.models is not None:
            engine.models = state.models
        return ShardLogic(engine, replay, copy_snapshots, poll=max(settings.quiet_after / 2, 1.0),
                          settings=settings, models_factory=models_factory)

    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    keyed = op.flat_map("ingest", raw, ingest)  # validate → privacy → route
    split = op.branch("to_profiles", keyed, _not_out)
    results = op.stateful_batch("profiles", split.trues, builder)
    outputs = op.merge("outputs", results, split.falses)
    sink_for("out", outputs)
    return flow


def _not_out(kv: tuple[str, Any]) -> bool:
    return kv[0] != OUT
