"""Record formatting: the cached, fast ``iso`` equals ``datetime``'s formatting exactly;
records pickle as calls of their class, and older pickles of them still load."""

from __future__ import annotations

import ast
import copy
import copyreg
import dataclasses
import io
import math
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from audienceflow.operators import records, shard_codec
from audienceflow.operators.records import iso


def _datetime_iso(ts: float) -> str:
    """What ``iso`` computed before it was cached: the reference."""
    dt = datetime.fromtimestamp(round(ts, 3), UTC)
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"


# Whole milliseconds, half-milliseconds (where rounding decides) and the floats next to
# them, from 1970 to the year 9999.
_MS = st.integers(0, 253_402_300_799_000)
_TIMES = st.one_of(
    _MS.map(lambda ms: ms / 1000),
    _MS.map(lambda ms: ms / 1000 + 0.0005),
    st.tuples(_MS, st.sampled_from([-math.inf, math.inf])).map(
        lambda p: math.nextafter(p[0] / 1000 + 0.0005, p[1])
    ),
    st.floats(0.0, 253_402_300_799.0),
)


@given(_TIMES)
@example(0.0)
@example(0.9995)  # rounds up into the next second
@example(1_772_438_402.1975)
@example(253_402_300_799.999)
def test_iso_formats_every_time_exactly_as_datetime_does(ts: float) -> None:
    iso.cache_clear()
    records._DAY_PREFIXES.clear()
    assert iso(ts) == _datetime_iso(ts)
    assert iso(ts) == _datetime_iso(ts)  # and again, from the cache


@given(st.one_of(st.floats(-1e12, -1e-9), st.floats(2.5e11, 1e12), st.just(math.nan)))
def test_iso_outside_1970_to_9999_is_still_datetime_s_or_its_error(ts: float) -> None:
    try:
        expected = _datetime_iso(ts)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            iso(ts)
    else:
        assert iso(ts) == expected


def test_iso_keeps_its_caches_bounded() -> None:
    for i in range(3 * records._MAX_PREFIXES):
        iso(1_772_438_400.0 + i * 86400.5)  # a day and a half second apart: new days
    assert iso.cache_info().currsize <= 4096
    assert len(records._DAY_PREFIXES) <= records._MAX_PREFIXES


# Records cross workers and sit in snapshots' held queues: they pickle as calls of their
# class, so a pure worker and a compiled one (``make fast``, native classes) read each
# other's (``tests/test_native.py`` crosses the builds), and older pickles still load.
RECORDS = sorted(
    (c for c in vars(records).values() if isinstance(c, type) and dataclasses.is_dataclass(c)),
    key=lambda c: c.__name__,
)


def _annotations() -> dict[str, dict[str, str]]:
    """Each record class's field annotations as written in ``records.py``: a compiled
    build's ``dataclasses.fields`` do not keep them as written."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "operators" / "records.py").read_text())
    return {
        c.name: {
            a.target.id: ast.unparse(a.annotation)
            for a in c.body
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
        }
        for c in tree.body
        if isinstance(c, ast.ClassDef)
    }


_ANNOTATIONS = _annotations()


def sample(cls: type) -> Any:
    """An instance of the record class ``cls`` with a distinct, non-default value in
    every field (so a field left out of its pickle, or put in the wrong place, shows)."""
    values: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        kind = _ANNOTATIONS[cls.__name__][f.name].split(" | ")[0]
        if kind == "str":
            values[f.name] = f"{f.name}-{i}"
        elif kind == "float":
            values[f.name] = 1000.25 + i
        elif kind == "int":
            values[f.name] = 7 + i
        elif kind == "bool":
            values[f.name] = f.default is not True
        elif kind.startswith("dict"):
            values[f.name] = {f.name: i}
        elif kind.startswith("list"):
            values[f.name] = [f.name, str(i)]
        elif kind.startswith("tuple"):
            values[f.name] = (f.name, str(i))
        elif kind in _ANNOTATIONS:  # a record holding another (``Rejected.dead``)
            values[f.name] = sample(getattr(records, kind))
        else:
            raise AssertionError(f"{cls.__name__}.{f.name}: no sample for {f.type}")
    return cls(**values)


class _OldPickler(pickle.Pickler):
    """Pickles records as they pickled before ``__reduce__``: a slots class as
    ``object.__reduce_ex__`` does, ``(None, {slot: value})``; a frozen one as
    dataclasses' own ``__getstate__`` did, its field values in order. ``drop``: slots
    left out, as by a build before those fields."""

    drop: tuple[str, ...] = ()

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls not in RECORDS:
            return NotImplemented
        names = [f.name for f in dataclasses.fields(cls)]
        frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        state: Any = [getattr(obj, n) for n in names]
        if not frozen:
            slots = dict(zip(names, state, strict=True))
            state = (None, {k: v for k, v in slots.items() if k not in self.drop})
        return copyreg.__newobj__, (cls,), state


def old_pickle(obj: Any, drop: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    pickler = _OldPickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.drop = drop
    pickler.dump(obj)
    return buf.getvalue()


def test_every_record_pickles_as_a_call_of_its_class_with_all_its_fields() -> None:
    assert len(RECORDS) >= 18
    for cls in RECORDS:
        rec = sample(cls)
        func, args = rec.__reduce__()
        assert func is cls and args == tuple(
            getattr(rec, f.name) for f in dataclasses.fields(cls)
        ), cls.__name__
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            back = pickle.loads(pickle.dumps(rec, protocol=protocol))
            assert type(back) is cls and back == rec, cls.__name__
        assert copy.deepcopy(rec) == rec and copy.copy(rec) == rec


def test_records_pickled_before_reduce_still_load() -> None:
    # Snapshots hold them (held events): shard_codec reads them.
    for cls in RECORDS:
        rec = sample(cls)
        data = old_pickle([rec, (1.0, 2, 3, rec)])
        assert b"copyreg" in data or b"\x81" in data  # NEWOBJ: made without __init__
        back = shard_codec.load_objects(data)
        assert back[0] == rec and back[1][3] == rec, cls.__name__
        assert type(back[0]) is cls


def test_an_old_pickle_lacking_a_field_added_since_gets_its_default() -> None:
    ev = sample(records.Event)
    data = old_pickle([ev], drop=("previous_id", "traits"))
    fresh = shard_codec.load_objects(data)[0]
    assert fresh.previous_id is None and fresh.traits is None
    assert fresh.message_id == ev.message_id and fresh.properties == ev.properties


def test_every_record_with_a_written_init_has_a_blank_for_pickles_from_before_reduce() -> None:
    # The compiled build's native record runs its written ``__init__`` when made, so an
    # old pickle (made without arguments, then filled) needs shard_codec's blank of it.
    written = [c for c in RECORDS if not c.__dataclass_params__.init]  # type: ignore[attr-defined]
    assert {c.__name__ for c in written} >= {"Event", "Session", "SegmentChange", "Action"}
    for cls in written:
        assert type(shard_codec._BLANKS[cls.__name__]()) is cls
