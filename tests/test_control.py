"""Data subjects' requests in a replay: deletion, suppression, receipts.

Times in minutes after 2026-03-02T08:00Z. u1 browses anonymously as a1, identifies at
5 and adds to the cart; the requests name one of the two identifiers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows.cli import main
from audienceflow.operators.control import check_receipts
from audienceflow.operators.records import Receipt, stable_id
from tests.helpers import at, write_stream
from tests.test_identity import CART, e, run

STREAM = [
    e(0, "Home", anon="a1"),
    e(5, etype="identify", user="u1", anon="a1"),
    e(6, "Product Added", user="u1", anon="a1", **CART),
    e(7, "Home", user="bob"),
    e(30, "Home", anon="a1"),  # after the request at 20 when there is one
    e(31, "Home", user="bob"),
    e(200, "Home", user="bob"),
]


def req(minutes: float, kind: str, ident: str, rid: str = "r1") -> dict[str, Any]:
    return {"type": kind, "id": ident, "requestId": rid, "timestamp": at(minutes)}


def replay_with(tmp: Path, requests: list[Any], **kw: Any) -> dict[str, Any]:
    ctl = write_stream(tmp / "control.jsonl", requests)
    return run(tmp, STREAM, control=[str(ctl)], **kw)


def everything(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((tmp / "out").iterdir()))


def names(r: dict[str, Any], *ids: str) -> list[tuple[str, Any]]:
    """Every output record naming one of ``ids`` (as user id, identifier or in a list)."""
    found = []
    for kind in ("sessions", "segment_changes", "actions", "profiles", "identities"):
        for rec in r[kind]:
            text = orjson.dumps(rec).decode()
            if any(f'"{i}"' in text or f'"{i}:' in text for i in ids):
                found.append((kind, rec))
    return found


def test_a_deletion_purges_the_profile_and_every_linked_identifier(tmp_path: Path) -> None:
    r = replay_with(tmp_path, [req(20, "delete", "a1")])  # names the anonymous id only
    (rc,) = r["control"]
    assert (rc["request_id"], rc["type"], rc["status"], rc["at"]) == (
        "r1",
        "delete",
        "done",
        at(20),
    )
    purged = rc["purged"]
    # one profile (u1 = a1 merged), its cart timer, its open session (6 + 30 min > 20),
    # both identifiers' links, and the dedup entries of its three events before 20
    assert purged["users"] == 1 and purged["timers"] == 1 and purged["open_sessions"] == 1
    assert purged["links"] == 2 and purged["dedup_entries"] == 3
    assert purged["profile_keys"] == 1
    # the receipt names the identifiers only as salted hashes
    assert len(rc["identifiers"]) == 2 and not {"a1", "u1"} & set(rc["identifiers"])
    # nothing about u1/a1 after 20: no session close, no abandonment e-mail at 21
    late = [x for x in names(r, "u1", "a1") if (x[1].get("at") or x[1].get("end") or "") >= at(20)]
    assert late == [(kind, rec) for kind, rec in late if rec.get("user_id") == "a1"]
    assert not [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    # a1 comes back at 30 (a deletion is not a suppression): a new, unlinked profile
    assert sorted(p["user_id"] for p in r["profiles"]) == ["a1", "bob"]
    (a1,) = [p for p in r["profiles"] if p["user_id"] == "a1"]
    assert (a1["first_seen"], a1["events"], a1["sessions"]) == (at(30), 1, 1)
    assert check_receipts(r["control"]) == []


def test_without_a_request_the_same_stream_keeps_u1_and_sends_the_cart_email(
    tmp_path: Path,
) -> None:
    r = replay_with(tmp_path, [])
    assert sorted(p["user_id"] for p in r["profiles"]) == ["bob", "u1"]
    (act,) = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert (act["user_id"], act["at"]) == ("u1", at(21))


def test_a_deletion_before_the_user_is_seen_finds_nothing(tmp_path: Path) -> None:
    r = replay_with(tmp_path, [req(-10, "delete", "u1")])
    (rc,) = r["control"]
    assert rc["status"] == "not_found"
    # the profile store is still told to drop the key (a profile may outlive the state)
    assert {k: v for k, v in rc["purged"].items() if v} == {"profile_keys": 1}
    assert "u1" in [p["user_id"] for p in r["profiles"]]


def test_a_second_deletion_is_idempotent(tmp_path: Path) -> None:
    r = replay_with(tmp_path, [req(20, "delete", "u1", "r1"), req(21, "delete", "u1", "r2")])
    first, second = r["control"]
    assert (first["status"], second["status"]) == ("done", "not_found")
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["chain"] != first["chain"]


@pytest.mark.timeout(60)
def test_two_requests_under_one_request_id_have_receipts_of_their_own(tmp_path: Path) -> None:
    """The receipt id was the request id's and the shard's: two requests under one request
    id (two systems numbering their tickets alike) got one receipt id, and a consumer
    de-duplicating on it, as the README says to, dropped an erasure's receipt."""
    r = replay_with(tmp_path, [req(20, "delete", "u1", "t-1"), req(21, "delete", "bob", "t-1")])
    first, second = r["control"]
    assert (first["request_id"], second["request_id"]) == ("t-1", "t-1")
    assert first["receipt_id"] != second["receipt_id"]


@pytest.mark.timeout(60)
def test_a_request_read_again_keeps_its_receipt_id_at_other_seq_numbers(tmp_path: Path) -> None:
    """A worker reading the control topic without state, after retention took its first
    request: the others are numbered anew but keep their ids (read where they were)."""
    ctl = tmp_path / "control.jsonl"
    (tmp_path / "first").mkdir()
    write_stream(ctl, [req(10, "delete", "zed", "t-0"), req(20, "delete", "u1", "t-1"),
                       req(21, "delete", "bob", "t-2")])  # fmt: skip
    first = run(tmp_path / "first", STREAM, control=[str(ctl)])["control"]
    (tmp_path / "again").mkdir()
    write_stream(ctl, ["", req(20, "delete", "u1", "t-1"), req(21, "delete", "bob", "t-2")])
    again = run(tmp_path / "again", STREAM, control=[str(ctl)])["control"]
    assert [x["seq"] for x in first] == [1, 2, 3]
    assert [x["seq"] for x in again] == [1, 2]
    assert [x["receipt_id"] for x in again] == [x["receipt_id"] for x in first[1:]]


@pytest.mark.timeout(60)
def test_the_same_request_sent_twice_gets_two_receipts_an_auditor_can_tell_apart(
    tmp_path: Path,
) -> None:
    """Both receipts had one id: a consumer de-duplicating on it, as the README says to,
    dropped the second, and ``verify-receipts`` then found receipt 2 missing."""
    again = req(20, "delete", "bob", "t-1")  # bob has no links: one identifier each time
    r = replay_with(tmp_path, [again, again])
    first, second = r["control"]
    assert (first["status"], second["status"]) == ("done", "not_found")
    assert first["identifiers"] == second["identifiers"]
    assert first["receipt_id"] != second["receipt_id"]
    kept = list({x["receipt_id"]: x for x in [first, second, first, second]}.values())
    assert kept == [first, second]
    assert check_receipts(kept) == []


@pytest.mark.timeout(60)
def test_receipts_do_not_depend_on_the_folder_or_spelling_of_the_control_files_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a request was read went into its receipt id as the path was given: the same
    replay with ``./control.jsonl``, an absolute path or a copy in another folder wrote
    other receipt ids and chains, so its audit trail could not be reproduced."""
    requests = [req(20, "delete", "u1", "t-1"), req(20, "delete", "u1", "t-1")]
    got = []
    for folder, spelled in (("one", "./control.jsonl"), ("two/deeper", None)):
        here = tmp_path / folder
        here.mkdir(parents=True)
        ctl = write_stream(here / "control.jsonl", requests)
        monkeypatch.chdir(here)
        got.append(run(here, STREAM, control=[spelled or str(ctl)])["control"])
    assert got[0] == got[1] and len(got[0]) == 2
    # The same request sent twice still keeps a receipt each.
    assert got[0][0]["receipt_id"] != got[0][1]["receipt_id"]


def test_delete_and_suppress_filters_every_later_event_of_any_linked_identifier(
    tmp_path: Path,
) -> None:
    r = replay_with(tmp_path, [req(20, "delete_and_suppress", "u1")])
    counts = r["summary"]["counts"]
    assert counts["filtered_by_reason"]["suppressed"] == 1  # a1's event at 30
    assert counts["reconciled"]
    assert [p["user_id"] for p in r["profiles"]] == ["bob"]
    assert names(r, "u1", "a1") == [x for x in names(r, "u1", "a1") if x[1].get("at", "") < at(20)]
    assert r["summary"]["control"]["suppressed_identifiers"] == 2


def test_unsuppress_lets_events_in_again(tmp_path: Path) -> None:
    r = replay_with(tmp_path, [req(1, "suppress", "a1", "r1"), req(29, "unsuppress", "a1", "r2")])
    # a1's events at 0 applied; at 5 and 6 (identify, add: they carry a1) filtered; 30 applied
    assert r["summary"]["counts"]["filtered_by_reason"]["suppressed"] == 2
    assert [c["status"] for c in r["control"]] == ["done", "done"]
    assert sorted(p["user_id"] for p in r["profiles"]) == ["a1", "bob"]


def test_a_suppressed_list_leaves_no_state_and_no_output_for_those_users(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, STREAM, suppressed=("u1", "a1"))
    assert r["summary"]["counts"]["filtered_by_reason"]["suppressed"] == 4
    assert r["summary"]["counts"]["reconciled"]
    assert b"u1" not in everything(tmp_path) and b"a1" not in everything(tmp_path)
    assert [p["user_id"] for p in r["profiles"]] == ["bob"]


def test_a_suppressed_list_names_pii_ids_as_the_events_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    events = [e(0, "Home", user="ann@example.com"), e(1, "Home", user="bob")]
    src = write_stream(tmp_path / "in.jsonl", events)
    lst = tmp_path / "suppressed.txt"
    lst.write_text("# erasure requests of March\nann@example.com\n")
    code = main(["replay", str(src), "--out", str(tmp_path / "out"), "--suppressed", str(lst)])
    assert code == 0
    profiles = (tmp_path / "out" / "profiles.jsonl").read_bytes()
    assert b"uid:" not in profiles and b'"bob"' in profiles


@pytest.mark.timeout(120)
def test_a_suppressed_list_saved_with_a_byte_order_mark_suppresses_its_first_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Notepad and Excel's "CSV UTF-8" start a file with one: read as part of the first
    # line, it left that person's events applied, with nothing said.
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    events = [e(0, "Home", user="bob"), e(1, "Home", user="cy"), e(2, "Home", user="di")]
    src = write_stream(tmp_path / "in.jsonl", events)
    lst = tmp_path / "suppressed.txt"
    lst.write_bytes(b"\xef\xbb\xbfbob\r\ncy\r\n")
    code = main(["replay", str(src), "--out", str(tmp_path / "out"), "--suppressed", str(lst)])
    assert code == 0
    lines = (tmp_path / "out" / "profiles.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["user_id"] for x in lines] == ["di"]


@pytest.mark.timeout(120)
def test_a_comment_after_a_suppressed_id_is_warned_of_by_line_number_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``bob  # left in 2024`` is one identifier (an id may hold '#'): bob's events went
    # through with nothing said. Said now, by line number, without the line (a person).
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    events = [e(0, "Home", user="bob"), e(1, "Home", user="cy"), e(2, "Home", user="di")]
    src = write_stream(tmp_path / "in.jsonl", events)
    lst = tmp_path / "suppressed.txt"
    lst.write_text("# March\ncy\nbob  # left in 2024\nid#7\n\tdi\t#x\n")
    code = main(["replay", str(src), "--out", str(tmp_path / "out"), "--suppressed", str(lst)])
    assert code == 0
    err = capsys.readouterr().err
    assert "line(s) 3, 5 hold" in " ".join(err.split()), err
    assert "bob" not in err and "left in" not in err
    lines = (tmp_path / "out" / "profiles.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(x)["user_id"] for x in lines) == ["bob", "di"]


def test_a_suppressed_list_without_trailing_comments_warns_of_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    src = write_stream(tmp_path / "in.jsonl", [e(0, "Home", user="bob")])
    lst = tmp_path / "suppressed.txt"
    lst.write_text("  # a comment, indented\nid#7\nann smith\n")
    code = main(["replay", str(src), "--out", str(tmp_path / "out"), "--suppressed", str(lst)])
    assert code == 0
    assert "warning" not in capsys.readouterr().err


def test_a_bad_control_line_is_dead_lettered_and_the_events_still_reconcile(
    tmp_path: Path,
) -> None:
    r = replay_with(tmp_path, ['{"type":"forget","id":"u1"}', req(20, "delete", "u1")])
    dead = [d for d in r["dead_letters"] if d["stage"] == "control"]
    assert [d["reason"] for d in dead] == ["bad_control"] and "'type'" in dead[0]["detail"]
    s = r["summary"]
    assert s["control"] == {
        "requests_in": 2,
        "dead_lettered": 1,
        "receipts": {"done": 1},
        "suppressed_identifiers": 0,
    }
    assert s["counts"]["reconciled"] and s["counts"]["events_in"] == len(STREAM)


@pytest.mark.parametrize(
    "line",
    [
        # orjson keeps the last copy, another reader the first: "u1" or "bob"?
        f'{{"type":"delete","id":"u1","id":"bob","requestId":"r1","timestamp":"{at(20)}"}}',
        f'{{"type":"unsuppress","type":"delete","id":"u1","requestId":"r1","timestamp":"{at(20)}"}}',
        # read as "ids" alone, it erased bob and left u1, with a receipt "done"
        f'{{"type":"delete","id":"u1","ids":["bob"],"requestId":"r1","timestamp":"{at(20)}"}}',
    ],
)
def test_a_request_that_names_a_field_twice_is_dead_lettered_not_half_applied(
    tmp_path: Path, line: str
) -> None:
    r = replay_with(tmp_path, [line])
    dead = [d for d in r["dead_letters"] if d["stage"] == "control"]
    assert [d["reason"] for d in dead] == ["bad_control"], dead
    assert r["control"] == []  # no receipt: nothing was erased on a guess
    assert {p["user_id"] for p in r["profiles"]} == {"u1", "bob"}


@pytest.mark.parametrize("drop", [0, 1])
def test_verify_receipts_finds_a_dropped_or_altered_receipt(
    tmp_path: Path, drop: int, capsys: pytest.CaptureFixture[str]
) -> None:
    r = replay_with(tmp_path, [req(20 + i, "suppress", "bob", f"r{i}") for i in range(3)])
    path = tmp_path / "out" / "control.jsonl"
    assert main(["verify-receipts", str(path)]) == 0
    receipts = r["control"]
    if drop:
        del receipts[1]
    else:
        receipts[1]["purged"]["users"] = 7
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in receipts))
    assert main(["verify-receipts", str(path)]) == 1
    assert "receipt 2" in capsys.readouterr().err + "".join(check_receipts(receipts))


def test_after_a_deletion_the_shard_state_holds_nothing_of_the_user() -> None:
    import pickle

    from audienceflow.models.hook import build_models
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import ControlRequest
    from audienceflow.operators.settings import Settings
    from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp

    # every model on, the recommender too: none may keep the user
    settings = Settings.load(environ={"AUDIENCEFLOW_MODELS__RECOMMENDATIONS__ENABLED": "true"})
    assert settings.models.recommendations.enabled
    validate = Validator(Taxonomy.default())
    lines = [
        e(0, "Home", anon="anon-5531"),
        e(5, etype="identify", user="user-7781", anon="anon-5531"),
        e(6, "Product Added", user="user-7781", anon="anon-5531", **CART),
        e(7, "Home", user="bob"),
        e(40, "Home", user="bob"),
    ]
    events = [validate(orjson.dumps(x), f"in:{i}") for i, x in enumerate(lines)]
    state = ShardState("shard-000")
    state.models = build_models(settings, "shard-000")
    engine = ShardEngine(settings, state, models=state.models, emit_profiles=True)
    from tests.helpers import Feeder

    feed = Feeder(settings)
    engine.on_items(feed.items(events[:4]))
    assert b"user-7781" in pickle.dumps(state)  # the test can see it when it is there
    request = ControlRequest("delete", ("anon-5531",), "r1", parse_timestamp(at(20)))
    out = engine.on_items([request, *feed.items(events[4:])])
    assert b"user-7781" not in pickle.dumps(state) and b"anon-5531" not in pickle.dumps(state)
    texts = [repr(r) for r in out if type(r).__name__ not in ("Erasure",)]
    assert not [t for t in texts if "user-7781" in t or "anon-5531" in t]


def test_deadlines_scheduled_after_a_deletion_fire_in_time_order(tmp_path: Path) -> None:
    """A deletion that purges deadlines, applied while stream time jumps far ahead (a
    1-day tick: one watermark for the whole stream), must not hide the deadlines other
    users schedule after it: b's session closes at 35 + 30 min, before d's first one
    (40 + 30), even though d's next event (at 120) is applied in the same pass. Kills
    replacing the deadline heap instead of filtering it in place (the pass would keep
    popping the old list, and b's close would wait for the next pass, after d's)."""
    stream = [
        e(0, "Home", user="c"),  # c's session close is due at 30: purged at 20
        e(35, "Home", user="b"),
        e(40, "Home", user="d"),
        e(120, "Home", user="d"),
        *(e(300 + k, "Home", user=f"x{k}") for k in range(4)),  # move the watermark past 120
    ]
    ctl = write_stream(tmp_path / "control.jsonl", [req(20, "delete", "c")])
    r = run(tmp_path, stream, "time:\n  tick: 1d\n", control=[str(ctl)])
    (rc,) = r["control"]
    assert rc["purged"]["deadlines"] == 1
    assert [(s["user_id"], s["start"]) for s in r["sessions"]] == [
        ("b", at(35)),
        ("d", at(40)),
        ("d", at(120)),
        *((f"x{k}", at(300 + k)) for k in range(4)),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("parts", [1, 3])
def test_receipts_and_outputs_do_not_depend_on_the_read_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int
) -> None:
    """The bundled stream with its requests, read 7 lines at a time and 1,000 at a time:
    watermarks come at very different times, and every file must be the same. Kills a
    receipt counting dedup entries that stream time may or may not have forgotten."""
    import functools

    from audienceflow.flows import replay as replay_module
    from audienceflow.flows.placement import split_stream
    from audienceflow.flows.sources import JsonlSource
    from audienceflow.operators.settings import Settings

    root = Path(__file__).resolve().parents[1]
    stream = root / "examples" / "stream.jsonl.gz"
    inputs = (
        [str(stream)]
        if parts == 1
        else [str(p) for p in split_stream(stream, parts, tmp_path / "parts")]
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (root / "examples" / "demo.yaml").read_text()
        + ("\nstate:\n  placement: partition\n" if parts > 1 else "")
    )
    outs = {}
    for batch in (7, 1000):
        monkeypatch.setattr(
            replay_module, "JsonlSource", functools.partial(JsonlSource, batch_size=batch)
        )
        out = tmp_path / f"out-{batch}"
        replay_module.replay(
            inputs,
            out,
            Settings.load(cfg, environ={}),
            control=[str(root / "examples" / "requests.jsonl")],
        )
        outs[batch] = {p.name: sorted(p.read_bytes().splitlines()) for p in out.iterdir()}
    assert outs[7].keys() == outs[1000].keys()
    for name in outs[7]:
        assert outs[7][name] == outs[1000][name], name


@pytest.mark.timeout(30)
def test_a_request_may_name_a_whole_number_id_as_an_event_may_give_it() -> None:
    from audienceflow.operators.control import parse
    from audienceflow.operators.privacy import Privacy
    from audienceflow.operators.records import DeadLetter

    privacy = Privacy((), salt="x")
    base = {"type": "delete", "requestId": "r1", "timestamp": at(1)}
    text = parse(orjson.dumps({**base, "ids": ["42", "a1"]}), "c:1", privacy)
    number = parse(orjson.dumps({**base, "ids": [42, "a1"]}), "c:2", privacy)
    assert not isinstance(number, DeadLetter) and not isinstance(text, DeadLetter)
    assert number.ids == text.ids
    for bad in (True, 4.2, None):
        out = parse(orjson.dumps({**base, "id": bad}), "c:3", privacy)
        assert isinstance(out, DeadLetter) and "whole numbers" in out.detail


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("field", "value"), [("requestId", "r" * 513), ("id", "u" * 513)])
def test_a_request_with_a_too_long_id_is_told_the_limit_not_that_it_is_empty(
    field: str, value: str
) -> None:
    from audienceflow.operators.control import parse
    from audienceflow.operators.privacy import Privacy
    from audienceflow.operators.records import DeadLetter

    req = {"type": "delete", "id": "u1", "requestId": "r1", "timestamp": at(1), field: value}
    out = parse(orjson.dumps(req), "c:1", Privacy((), salt="x"))
    assert isinstance(out, DeadLetter) and "at most 512 characters" in out.detail, out
    ok = parse(orjson.dumps({**req, field: value[:512]}), "c:1", Privacy((), salt="x"))
    assert not isinstance(ok, DeadLetter)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("field", "value"),
    [("requestId", "r1\x1b[2J"), ("requestId", "r1\n"), ("id", "u1\x00"), ("ids", ["u2", "u1\t"])],
)
def test_a_request_naming_a_control_character_is_dead_lettered_as_an_event_would_be(
    field: str, value: Any
) -> None:
    """A requestId holding a terminal's escape sequence or a newline went as is into
    every receipt (kept forever) and its Kafka key; an id holding a NUL, which no
    event's id may hold, got a receipt saying 'not_found'."""
    from audienceflow.operators.control import parse
    from audienceflow.operators.privacy import Privacy
    from audienceflow.operators.records import DeadLetter

    req: dict[str, Any] = {"type": "delete", "requestId": "r1", "timestamp": at(1)}
    if field != "ids":
        req["id"] = "u1"
    req[field] = value
    out = parse(orjson.dumps(req), "c:1", Privacy((), salt="x"))
    assert isinstance(out, DeadLetter), out
    assert out.reason == "bad_control" and "contains a control character" in out.detail
    name = "id" if field == "ids" else field
    assert f"{name!r} contains" in out.detail
    ok = {**req, field: "é u1 ☕" if field != "ids" else ["u2", "é u1"]}
    assert not isinstance(parse(orjson.dumps(ok), "c:1", Privacy((), salt="x")), DeadLetter)
    # Not printable, yet no control character: an event may have such an id (validate),
    # so its erasure must be possible.
    odd = {**req, field: "\u202eu1\u00a0" if field != "ids" else ["u2", "\u202eu1\u00a0"]}
    assert not isinstance(parse(orjson.dumps(odd), "c:1", Privacy((), salt="x")), DeadLetter)


def test_a_request_id_holding_an_e_mail_is_pseudonymised_in_the_receipt(tmp_path: Path) -> None:
    # Ticketing systems name a request after its requester; receipts are kept forever
    # (the audit trail) and keyed by request id, so such an id is written as its pseudonym.
    rid = "erasure ann.lee@example.com"
    r = replay_with(tmp_path, [req(20, "delete", "a1", rid=rid), req(21, "delete", "x", rid="r2")])
    (mine,) = [rc for rc in r["control"] if rc["request_id"] != "r2"]
    digest = hashlib.sha256(b"rid\0" + rid.encode()).hexdigest()[:32]  # no salt: the config's
    assert mine["request_id"] == f"rid:{digest}" and mine["status"] == "done"
    assert b"ann.lee" not in everything(tmp_path)
    assert check_receipts(r["control"]) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("shards", "named", "anon"),
    [(1, "u1", "a1"), (4, "u1", "a1"), (1, "a1", None), (4, "a1", None)],
)
def test_a_late_event_of_a_suppressed_person_is_filtered_not_dead_lettered_with_their_ids(
    tmp_path: Path, shards: int, named: str, anon: str | None
) -> None:
    """A retried upload stamped before the request comes after it, late: ingest, which
    holds no suppression list, dead-lettered it as ``late_event`` naming u1 and a1. It
    goes to the person's shard, which filters it as their on-time events are; anyone
    else's late event stays a dead letter. A request naming a1 reaches u1 on u1's shard
    (the link): a late event of u1 alone is filtered only there, so with 4 shards it
    must go to u1's shard, not any other."""
    others = [e(201 + i, "Home", user=f"c{i}") for i in range(5)]  # time moves past 200
    late = [
        e(6.5, "Product", user="u1", anon=anon),  # late, and suppressed
        e(7.5, "Product", user="bob"),  # late, not suppressed
    ]
    ctl = write_stream(tmp_path / "control.jsonl", [req(20, "delete_and_suppress", named)])
    config = f"state: {{shards: {shards}}}\n"
    r = run(tmp_path, [*STREAM, *others, *late], config, control=[str(ctl)])
    counts = r["summary"]["counts"]
    assert counts["reconciled"]
    assert counts["filtered_by_reason"]["suppressed"] == 2  # a1's at 30, and the late one
    assert [d["reason"] for d in r["dead_letters"]] == ["late_event"]
    assert "bob" in r["dead_letters"][0]["raw"]
    dead = orjson.dumps(r["dead_letters"]).decode()
    assert "u1" not in dead and "a1" not in dead


@pytest.mark.timeout(60)
def _two_partitions() -> tuple[Any, Any, Any, list[Any], Any]:
    """Input partitions p and q before one shard (each line moves its partition's time, no
    lateness): their ingests, the engine, what came out, and ``deliver(keyed)``."""
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.routing import OUT
    from audienceflow.operators.settings import Settings

    env = {
        "AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1",
        "AUDIENCEFLOW_TIME__TICK": "1s",
        "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",
    }
    cfg = Settings.load(environ=env)
    p, q = make_ingest(cfg, "p", None, False), make_ingest(cfg, "q", None, False)
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "q"])
    out: list[Any] = []

    def deliver(keyed: list[Any]) -> None:
        out.extend(v for k, v in keyed if k == OUT)
        out.extend(eng.on_items([v for k, v in keyed if k != OUT]))

    return p, q, eng, out, deliver


def _page(user: str, minutes: float, mid: str) -> Any:
    from audienceflow.operators.records import Event
    from audienceflow.operators.validate import parse_timestamp

    ts = parse_timestamp(at(minutes))
    return Event(mid, user, None, "page", "Home", ts, "", {}, position=f"x:{mid}")


@pytest.mark.parametrize("kind", ["delete", "delete_and_suppress"])
def test_a_deletion_takes_the_persons_held_rejected_events_out_of_state_before_its_receipt(
    kind: str,
) -> None:
    """A late event is held at its shard until stream time reaches its partition's
    watermark (``ShardEngine._rejected``), which may be after a deletion of its person:
    the shard then held u1's ids after the receipt, and wrote the dead letter after it.
    It goes now, before the receipt: filtered if the request suppresses, else the dead
    letter ingest used to write before the request."""
    from audienceflow.operators.records import ControlRequest, DeadLetter, Filtered, Receipt
    from audienceflow.operators.shard_codec import encode_shard
    from audienceflow.operators.validate import parse_timestamp

    p, q, eng, out, deliver = _two_partitions()

    deliver(q.feed_events([_page("u1", 0, "q0"), _page("bob", 5, "q1")]))
    deliver(p.feed_events([_page("carol", 100, "p0")]))  # p runs ahead of q
    deliver(p.feed_events([_page("u1", 6, "p-late")]))  # late on p: held to p's watermark
    deliver(q.feed_events([_page("bob", 15, "q2")]))  # stream time 15
    deliver([("x", ControlRequest(kind, ("u1",), "r1", parse_timestamp(at(10))))])
    (receipt,) = [r for r in out if type(r) is Receipt]
    assert b"u1" not in encode_shard(eng.state)
    before = out[: out.index(receipt)]
    judged = [r for r in before if type(r) in (DeadLetter, Filtered) and "p-late" in str(r)]
    assert [type(r) for r in judged] == [Filtered if kind != "delete" else DeadLetter]
    deliver(q.set_idle(True))
    deliver(p.set_idle(True))
    out.extend(eng.finish())
    after = out[out.index(receipt) + 1 :]
    assert not [r for r in after if type(r) in (DeadLetter, Filtered)]


@pytest.mark.timeout(60)
def test_a_deletion_after_a_resume_takes_the_held_rejected_events_of_its_snapshot() -> None:
    """The engine counts the rejected events held, and a deletion looks through the held
    items for its person's only while there is one (the walk per request made a batch
    of held requests quadratic): a resumed engine counts those of its snapshot, so the
    late event held in it still goes before the receipt."""
    from audienceflow.operators.engine import ShardEngine
    from audienceflow.operators.records import ControlRequest, DeadLetter, Receipt
    from audienceflow.operators.shard_codec import decode_shard, encode_shard
    from audienceflow.operators.validate import parse_timestamp

    p, q, eng, _out, deliver = _two_partitions()
    deliver(q.feed_events([_page("u1", 0, "q0"), _page("bob", 5, "q1")]))
    deliver(p.feed_events([_page("carol", 100, "p0")]))  # p runs ahead of q
    deliver(p.feed_events([_page("u1", 6, "p-late")]))  # late on p: held to p's watermark
    deliver(q.feed_events([_page("bob", 15, "q2")]))  # stream time 15
    back = ShardEngine(eng.cfg, decode_shard(encode_shard(eng.state)), partitions=["p", "q"])
    got = back.on_items([ControlRequest("delete", ("u1",), "r1", parse_timestamp(at(10)))])
    (receipt,) = [r for r in got if type(r) is Receipt]
    before = got[: got.index(receipt)]
    assert [r for r in before if type(r) is DeadLetter and "p-late" in str(r)]
    assert b"u1" not in encode_shard(back.state)


@pytest.mark.timeout(60)
def test_the_count_of_held_rejected_events_follows_them_out_by_a_deletion_and_by_time() -> None:
    """A deletion walks the held items for its person's rejected events only while the
    engine counts one held (``_rejected_held``). Each way one leaves must lower it: else
    a count left too high brings back the walk per request, and one too low (a leave
    counted twice) skips a held dead letter of the person deleted."""
    from audienceflow.operators.records import ControlRequest, DeadLetter, Rejected
    from audienceflow.operators.validate import parse_timestamp

    p, q, eng, out, deliver = _two_partitions()

    def held() -> int:
        st = eng.state
        return sum(type(e[3]) is Rejected for h in (st.held, st.held_run, st.lag_held) for e in h)

    deliver(q.feed_events([_page("u1", 0, "q0"), _page("bob", 5, "q1")]))
    deliver(p.feed_events([_page("carol", 100, "p0")]))  # p runs ahead of q
    deliver(p.feed_events([_page("u1", 6, "p-late"), _page("dave", 7, "p-dave")]))
    assert held() == 2 and eng._rejected_held == 2
    deliver(q.feed_events([_page("bob", 15, "q2")]))
    deliver([("x", ControlRequest("delete", ("u1",), "r1", parse_timestamp(at(10))))])
    dead = [str(r) for r in out if type(r) is DeadLetter]
    assert [d for d in dead if "p-late" in d] and not [d for d in dead if "p-dave" in d]
    assert held() == 1 and eng._rejected_held == 1
    deliver(q.feed_events([_page("bob", 150, "q3")]))  # stream time past p's watermark
    assert [r for r in out if type(r) is DeadLetter and "p-dave" in str(r)]  # by time
    assert held() == 0 and eng._rejected_held == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["suppress", "delete_and_suppress"])
def test_an_event_after_a_suppression_read_before_it_leaves_no_id_in_the_dedup_window(
    kind: str,
) -> None:
    """u1's event stamped a minute after the request is read before stream time reaches
    the request: its message id went into the dedup window with u1's id then, and the
    request purges the entries up to its own time only. The event was filtered as
    suppressed when its time came, and its entry kept u1's raw id in state, and in every
    snapshot, for the dedup window (an outside pass found it in a live worker's
    recovery files)."""
    from audienceflow.operators.records import ControlRequest, Filtered, Receipt
    from audienceflow.operators.shard_codec import encode_shard
    from audienceflow.operators.validate import parse_timestamp

    p, q, eng, out, deliver = _two_partitions()

    deliver(q.feed_events([_page("u1", 0, "q0"), _page("bob", 9, "q1")]))  # q at 9
    deliver(p.feed_events([_page("u1", 11, "p-after")]))  # stream time 9: held
    deliver([("x", ControlRequest(kind, ("u1",), "r1", parse_timestamp(at(10))))])  # held
    deliver(q.feed_events([_page("bob", 15, "q2")]))  # stream time 11: the request, then it
    assert [r for r in out if type(r) is Receipt]
    assert [r.reason for r in out if type(r) is Filtered and r.message_id == "p-after"] == [
        "suppressed"
    ]
    assert "p-after" not in eng.state.seen
    if kind == "delete_and_suppress":  # (a suppression alone keeps the profile as it was)
        assert b"u1" not in encode_shard(eng.state)


def test_a_receipt_of_a_request_held_without_its_source_keeps_the_earlier_id() -> None:
    """A request held in a snapshot of a version that did not keep where it was read
    (``position`` ""): its receipt keeps the id that version gave it, so a receipt it
    may have published already is de-duplicated against it."""
    old = Receipt("rid", "delete", "shard-0", "done", 0.0, ["h1", "h2"], {}, 1)
    assert old.body()["receipt_id"] == stable_id("rid", "shard-0", "delete", "h1", "h2")
    new = Receipt("rid", "delete", "shard-0", "done", 0.0, ["h1", "h2"], {}, 1, source="c:0:7")
    assert new.body()["receipt_id"] != old.body()["receipt_id"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"[1, 2]", "line 1: not a receipt"),
        (b'"x"', "line 1: not a receipt"),
        (b'{"shard": "shard-000", "seq": "abc"}', "line 1: not a receipt"),
        (b'{"shard": "shard-000", "seq": null}', "line 1: not a receipt"),
        # Numbered 0 or below: no chain checked it, and it passed as whole.
        (b'{"shard": "shard-000", "seq": -5}', "line 1: not a receipt"),
        (b'{"shard": "shard-000", "seq": 0}', "line 1: not a receipt"),
        # One forged number: one line saying so, not 10**18 of them.
        (b'{"shard": "shard-000", "seq": 1000000000000000000}', "receipts 1 to"),
    ],
)
def test_verify_receipts_reports_a_line_that_is_no_receipt_without_a_traceback_or_a_hang(
    tmp_path: Path, line: bytes, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "control.jsonl"
    path.write_bytes(line + b"\n")
    assert main(["verify-receipts", str(path)]) == 1
    assert needle in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_verify_receipts_counts_chains_of_any_shard_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audienceflow.operators.control import chain_next

    body = {"seq": 1, "shard": ["s"]}
    receipt = {**body, "chain": chain_next("", body)}
    path = tmp_path / "control.jsonl"
    path.write_bytes(orjson.dumps(receipt) + b"\n")
    assert main(["verify-receipts", str(path)]) == 0
    assert "1 shard chain(s)" in capsys.readouterr().out


# --- requests dated after the events ---------------------------------------------------

LAST = 200  # STREAM's last event (minutes)


def _outputs_but(r: dict[str, Any], *skip: str) -> dict[str, Any]:
    kinds = ("sessions", "segment_changes", "actions", "dead_letters", "profiles", "identities")
    return {k: r[k] for k in kinds if k not in skip}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("ident", "when"),
    [
        ("nobody", "9998-12-31T00:00:00Z"),  # a year typed wrong: the whole run aged to it
        ("u1", "9998-12-31T00:00:00Z"),
        ("a1", at(LAST + 60)),  # within ``max_future``: the events' end moved to it
        ("u1", at(LAST + 8 * 24 * 60)),  # past ``max_future``: still honoured
    ],
)
def test_a_request_dated_after_the_events_applies_at_the_end_and_ages_no_one(
    tmp_path: Path, ident: str, when: str
) -> None:
    """A control file is an input partition: at the end of a replay its time (the
    request's) was the latest of all, so stream time went to it before the final
    profiles: every user idle past ``state.history_window`` before it was evicted (a
    request dated 9998 emptied ``profiles.jsonl`` and wrote an eviction exit per
    segment), segments lapsed, and the profiles were made as of its time. Stream time is
    the events': the request applies at the end, in time order with the deadlines after
    the events, its receipt at its own time, and the person it deletes has no final
    profile; nothing else changes."""
    (tmp_path / "base").mkdir()
    (tmp_path / "req").mkdir()
    base = run(tmp_path / "base", STREAM)
    r = replay_with(tmp_path / "req", [{**req(0, "delete", ident), "timestamp": when}])
    (rc,) = r["control"]
    gone = {"u1", "a1"} if ident != "nobody" else set()
    assert rc["at"] == (when if "." in when else when.replace("Z", ".000Z"))
    assert rc["status"] == ("done" if gone else "not_found")
    assert rc["purged"]["users"] == len(gone) // 2
    assert _outputs_but(r, "profiles") == _outputs_but(base, "profiles")
    assert r["profiles"] == [p for p in base["profiles"] if p["user_id"] not in gone]
    assert len(r["profiles"]) == len(base["profiles"]) - (1 if gone else 0) >= 1


def _with_control(
    events_first: bool,
) -> tuple[list[Any], list[Any], Any]:
    """Events on partition p (u1 and bob), a deletion of u1 dated a day after them on the
    control partition c, p and c ending in either order: what came out before the end of
    the input, and after it (``finish``), and the engine."""
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.routing import OUT
    from audienceflow.operators.settings import Settings

    env = {"AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1", "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"}
    cfg = Settings.load(environ=env)
    p = make_ingest(cfg, "p", None, False)
    c = make_ingest(cfg, "c", None, False, control=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "c"], controls=["c"])
    out: list[Any] = []

    def deliver(keyed: list[Any]) -> None:
        out.extend(v for k, v in keyed if k == OUT)
        out.extend(eng.on_items([v for k, v in keyed if k != OUT]))

    line = orjson.dumps(req(LAST + 24 * 60, "delete", "u1"))
    deliver(p.feed_events([_page("u1", 0, "p0"), _page("bob", 10, "p1")]))
    ends = [lambda: deliver(c.feed([("c:1", line)]) + c.end()), lambda: deliver(p.end())]
    for end in ends[::-1] if events_first else ends:
        end()
    return out, eng.finish(), eng


@pytest.mark.timeout(60)
@pytest.mark.parametrize("events_first", [True, False])
def test_a_control_partition_ahead_of_the_events_holds_stream_time_at_theirs(
    events_first: bool,
) -> None:
    """Whichever partition ends first, stream time stops at the events' time; the request
    waits for the end of the input, then deletes u1 before the final profiles."""
    from audienceflow.operators.records import ProfileUpdate, Receipt
    from audienceflow.operators.validate import parse_timestamp

    before, after, eng = _with_control(events_first)
    assert eng.state.clock.time == parse_timestamp(at(10))  # p's last event, no lateness...
    assert not [x for x in before if type(x) is Receipt]  # ...so the request still waits
    (receipt,) = [x for x in after if type(x) is Receipt]
    assert receipt.at == parse_timestamp(at(LAST + 24 * 60)) and receipt.status == "done"
    profiles = [x for x in after if type(x) is ProfileUpdate]
    assert [x.user_id for x in profiles] == ["bob"]
    assert after.index(receipt) < after.index(profiles[0])
    # the same outputs whichever partition ended first
    other_before, other_after, _ = _with_control(not events_first)
    assert (repr(other_before), repr(other_after)) == (repr(before), repr(after))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["9998-12-31T00:00:00Z", at(LAST + 8 * 24 * 60)])
def test_a_request_far_ahead_of_the_control_files_own_time_is_applied_at_the_end(
    tmp_path: Path, when: str
) -> None:
    """Once ``watermark_quorum`` requests had set the control file's time, one more than
    ``time.max_future`` ahead of it was dead-lettered as a ``future_event``, and the person
    it deleted kept a profile; a first request of the file was applied whatever its date.
    One rule now: a replay has no clock to say a request is in the future, so each is
    applied (one dated after the events at the end, before the final profiles)."""
    far = {**req(0, "delete", "u1", "far"), "timestamp": when}
    r = replay_with(tmp_path, [*(req(k, "delete", f"z{k}", f"r{k}") for k in range(1, 6)), far])
    assert [rc["request_id"] for rc in r["control"]] == [*(f"r{k}" for k in range(1, 6)), "far"]
    assert r["control"][-1]["status"] == "done"
    assert r["dead_letters"] == []
    assert "u1" not in {p["user_id"] for p in r["profiles"]}


@pytest.mark.timeout(60)
def test_live_a_request_beyond_max_future_of_the_wall_clock_is_a_future_event() -> None:
    """Live, the wall clock says what is in the future: a request more than
    ``time.max_future`` (1 h here) ahead of it is dead-lettered, one at it is not."""
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.routing import OUT
    from audienceflow.operators.settings import Settings
    from audienceflow.operators.validate import parse_timestamp

    cfg = Settings.load(environ={"AUDIENCEFLOW_TIME__MAX_FUTURE": "1h"})
    now = parse_timestamp(at(0))
    verdicts = []
    for ahead, rid in ((60.0, "at"), (60.001, "beyond")):
        c = make_ingest(cfg, "c", None, True, control=True)
        line = orjson.dumps({**req(ahead, "delete", "u1", rid)})
        keyed = c.feed([("c:1", line)], now=now)
        verdicts.append([getattr(v, "reason", "request") for k, v in keyed if k == OUT])
    assert verdicts == [[], ["future_event"]]


@pytest.mark.timeout(30)
def test_verify_receipts_prints_an_altered_receipts_values_as_text_and_names_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file is what is being checked, so its values are anyone's: a shard "[/]" raised
    # Rich's MarkupError (a traceback, no verdict), and a line break in one printed a
    # line of its own, such as a forged "none missing or altered".
    forged = "[/]\n1 receipts, 1 shard chain(s), none missing or altered"
    path = tmp_path / "a[" / "b].jsonl"  # markup in the path too
    path.parent.mkdir()
    path.write_bytes(orjson.dumps({"seq": 1, "shard": forged, "chain": "x"}) + b"\n")
    assert main(["verify-receipts", str(path)]) == 1
    err = capsys.readouterr().err
    assert "shard [/]\\n1 receipts, 1 shard chain(s), none missing or altered: receipt 1" in err
    assert "\nnone missing" not in err and "\n1 receipts" not in err
    # orjson numbers lines within the one line it is given: the file's line is named.
    path.write_bytes(b"\n" + orjson.dumps({"seq": 1}) + b'\n{"seq": 2\n')
    assert main(["verify-receipts", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 3: not JSON" in err.replace("\n", ""), err
