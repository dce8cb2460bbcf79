"""Shard snapshots in the versioned envelope: what is written loads back equal and runs on alike."""

from __future__ import annotations

import copyreg
import dataclasses
import gzip
import io
import pickle
from pathlib import Path
from typing import Any

import msgpack
import pytest

from audienceflow.flows.snapshots import seal, unseal
from audienceflow.models.hook import build_models
from audienceflow.operators import codec, deadlines, shard_codec
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from tests.helpers import keyed_items

ROOT = Path(__file__).resolve().parents[1]


def _engine(settings: Settings, state: ShardState | None = None) -> ShardEngine:
    if state is None:
        models = build_models(settings, "shard-000") if settings.models.enabled else None
        state = ShardState("shard-000", models=models)
    return ShardEngine(settings, state, models=state.models, partitions=["in:0"])


def _feed(engine: ShardEngine, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(items), 200):
        out.extend(engine.on_items(items[i : i + 200]))
    return out


@pytest.fixture(scope="module")
def bundled() -> tuple[Settings, list[Any]]:
    """The bundled stream's items as its one input partition delivers them, in batches of
    100 lines (demo config)."""
    settings = Settings.load(ROOT / "examples" / "demo.yaml", environ={})
    lines = gzip.decompress((ROOT / "examples" / "stream.jsonl.gz").read_bytes()).splitlines()
    keyed = keyed_items(settings, [(str(i), raw) for i, raw in enumerate(lines)], batch=100)
    return settings, [v for k, v in keyed if k != OUT]


def test_every_field_of_the_shard_state_has_a_place_in_the_envelope() -> None:
    placed = shard_codec.PLAIN + shard_codec.PICKLED + shard_codec.USERS + shard_codec.REBUILT
    assert sorted(placed) == sorted(f.name for f in dataclasses.fields(ShardState))
    assert len(set(placed)) == len(placed)


@pytest.mark.timeout(120)
def test_a_snapshot_mid_stream_loads_back_equal_and_runs_on_to_the_same_outputs(
    bundled: tuple[Settings, list[Any]],
) -> None:
    settings, items = bundled
    # Cut mid-stream just before a watermark arrives: events held, nothing released yet.
    half = next(
        i for i in range(len(items) // 2, len(items)) if type(items[i]).__name__ == "Watermark"
    )
    engine = _engine(settings)
    _feed(engine, items[:half])
    st = engine.state
    # A state with everything: warm and cold users (state.cold_after 1h), deadlines, ...
    assert st.users and st.cold and st.heap and st.cooling and st.seen and st.diag
    assert st.held_run  # held events in time order, in the queue (a snapshot: in ``held``)
    every = [*st.users.values(), *map(codec.decode_user, st.cold.values())]
    assert any(u.session is not None for u in every)
    assert any(u.experiments for u in every)
    assert any(u.model.get("reco") is not None for u in every)

    blob = seal(shard_codec.encode_shard(st), b"k" * 32)
    back = shard_codec.decode_shard(unseal(blob, b"k" * 32))

    assert back.users == st.users and list(back.users) == list(st.users)
    assert back.cold == st.cold
    for name in shard_codec.PLAIN:
        assert type(getattr(back, name)) is type(getattr(st, name)), name
        if name not in ("heap", "cooling"):  # the queues are laid out again: the same entries
            assert getattr(back, name) == getattr(st, name), name
    assert st.far  # deadlines in later hours' buckets, and in the snapshot's heap
    assert sorted(deadlines.entries(back)) == sorted(deadlines.entries(st))
    assert st.cool_far  # likewise the cooling queue's later minutes
    assert sorted(deadlines.cool_entries(back)) == sorted(deadlines.cool_entries(st))
    # As builds before the buckets read them: each queue one heap, every entry, no marker.
    body = msgpack.unpackb(shard_codec.encode_shard(st)[5:], raw=False)
    for name, queue in (("heap", deadlines.entries(st)), ("cooling", deadlines.cool_entries(st))):
        filed = [tuple(e) for e in body[name]]
        assert sorted(filed) == sorted(queue) and all(uid for _, uid in filed), name
        assert all(filed[(i - 1) // 2] <= filed[i] for i in range(1, len(filed))), name
    assert (
        back.heap and type(back.heap[0]) is tuple and type(next(iter(back.seen.values()))) is tuple
    )
    assert (back.clock, back.lab, back.ids) == (st.clock, st.lab, st.ids)
    assert not back.held_run and back.held == shard_codec.held_entries(st)  # one heap of all
    assert sorted(e[:3] for e in back.held) == sorted(e[:3] for e in (*st.held, *st.held_run))
    assert back.models.report() == st.models.report()  # River has no ==: see the outputs below

    restored = _engine(settings, back)
    a = _feed(engine, items[half:]) + engine.finish()
    b = _feed(restored, items[half:]) + restored.finish()
    assert len(a) > 1000
    assert [repr(r) for r in a] == [repr(r) for r in b]


def test_users_in_the_envelope_are_codec_bytes_not_pickles() -> None:
    st = ShardState("shard-001")
    st.users["u1"] = codec.decode_user(codec.encode_user(_user("u1")))
    data = shard_codec.encode_shard(st)
    body = msgpack.unpackb(data[5:])
    assert body["users"] == {"u1": codec.encode_user(st.users["u1"])}
    assert b"UserState" not in data  # no class is named for a user


def _user(uid: str) -> Any:
    from audienceflow.operators.state import UserState

    u = UserState(uid, first_seen=1.0)
    u.segments["vip"] = 2.0
    return u


def test_an_unknown_envelope_version_or_format_is_a_clear_error() -> None:
    data = bytearray(shard_codec.encode_shard(ShardState("shard-001")))
    data[4] = shard_codec.VERSION + 1
    unknown = shard_codec.VERSION + 1
    with pytest.raises(ValueError, match=rf"format version {unknown} is not known to this build"):
        shard_codec.decode_shard(bytes(data))
    with pytest.raises(ValueError, match="not an audienceflow shard snapshot"):
        shard_codec.decode_shard(b"{}")


def test_users_an_older_build_cannot_decode_are_in_an_envelope_it_refuses_at_resume() -> None:
    # User codec 5 (a history session's converted flag) is unknown to the builds before
    # it, which read envelope version 1 only: in a version 1 envelope their resume
    # decoded the warm users and failed on the first (with no hint what to do), or, every
    # user cold, resumed and failed later, on the first cold user an event revived. The
    # envelope's version goes up with the user codec's, so such a build refuses the
    # snapshot before reading anything ("resume with the build that wrote it").
    st = ShardState("shard-001")
    st.cold["u1"] = codec.encode_user(_user("u1"))
    data = shard_codec.encode_shard(st)
    assert data[4] > 1 and shard_codec.USER_CODEC[data[4]] == codec.VERSION
    assert max(shard_codec.USER_CODEC) == shard_codec.VERSION
    # A version 1 envelope (users of codec 4 or before) still loads, cold users too.
    old = bytearray(data)
    old[4] = 1
    back = shard_codec.decode_shard(bytes(old))
    assert codec.decode_user(back.cold["u1"]) == _user("u1")


class _BeforeTheColdTier(pickle.Pickler):
    """Pickles a ``ShardState`` as a build that had no cold tier did: its fields but
    ``cold``. Through pickle's own hook, not the instance's ``__dict__``, which the
    compiled build's native class has none of (``make fast``)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not ShardState:
            return NotImplemented
        fields = obj.__getstate__()
        del fields["cold"]
        return copyreg.__newobj__, (ShardState,), fields


def test_a_pickled_shard_from_before_the_envelope_still_loads() -> None:
    old = ShardState("shard-001", processed=7)
    old.users["u1"] = _user("u1")
    buf = io.BytesIO()
    _BeforeTheColdTier(buf).dump(old)
    assert b"cold" not in buf.getvalue()
    back = shard_codec.decode_shard(buf.getvalue())
    assert back.processed == 7 and back.users["u1"] == _user("u1") and back.cold == {}


def test_a_pickled_shard_whose_open_session_predates_orders_counts_its_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pickle from before the envelope holds the slots of each OpenSession as its build
    # had them: one without ``orders`` resumes as one order per converted session (as
    # codec reads version 1), not as a missing attribute or a lost order.
    from audienceflow.operators import features, sessions
    from audienceflow.operators.state import OpenSession, UserState

    old = ShardState("shard-001")
    old.users["u1"] = UserState(
        "u1", 0.0, session=OpenSession("u1:s", 0.0, 0.0, converted=True, order_value=5.0)
    )
    getstate = OpenSession.__getstate__

    def before_orders(s: OpenSession) -> Any:
        none, slots = getstate(s)
        return none, {k: v for k, v in slots.items() if k != "orders"}

    with monkeypatch.context() as m:
        m.setattr(OpenSession, "__getstate__", before_orders)
        data = pickle.dumps(old)
    u = shard_codec.decode_shard(data).users["u1"]
    assert features.profile(u, 0.0, 3600.0)["orders"] == 1
    spec = sessions.SessionSpec(timeout=1800.0, max_length=3600.0, engaged_gap_cap=600.0)
    sessions.close(u, 1800.0, "inactivity", spec)
    assert (u.total_orders, u.total_revenue) == (1, 5.0)
