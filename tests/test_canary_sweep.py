"""A canary sweep: every byte audienceflow writes, searched for every personal value.

The corpus (``tests/canaries.py``) gives every personal-looking field of every call type
a unique token (e-mails, phones, IPs, names, streets, user agents, device ids, ids that
are e-mails or phones, keys that are e-mails, URLs with ``?email=``...), plus malformed
lines that become dead letters. With the default config each sink is run and everything
it wrote is searched for each token in every form (lower case, URL-encoded once or twice, JSON
escaped, digits only): a replay's files, report and console; an engine's snapshot with
users in the cold tier, before and after a deletion; and (integration) a live worker's
topics, Redis, metrics, JSON logs at DEBUG and recovery files. Ids configured to pass do
so only in their documented forms (``uid:``/``sha256:`` salted hashes).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import signal
import urllib.request
from pathlib import Path

import canaries
import orjson
import pytest
import servers
import workers

from audienceflow.flows.cli import main
from audienceflow.flows.partitions import make_ingest
from audienceflow.operators.codec import decode_user
from audienceflow.operators.control import parse
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import ControlRequest
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_codec import encode_shard

SALT = "canary-salt"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
CLOCKS = {f"clock-{s}" for s in range(4)}  # the users moving time on (canaries.build)
# Person 1: ids an e-mail and phones (pseudonymised); 4: clean ids (kept); 8: a refused link.
P1, P4, P8 = "CANARY-u1", "CANARY-u4", "CANARY-u8"


def ids_of(c: canaries.Corpus) -> dict[str, set[str]]:
    """Each person's identifiers as sent (``userId``, ``anonymousId``, ``previousId``)."""
    out: dict[str, set[str]] = {}
    for line in c.lines:
        try:
            call = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        for key in ("userId", "anonymousId", "previousId") if isinstance(call, dict) else ():
            ident = call.get(key)
            if not isinstance(ident, str):
                continue
            who = c.secret.get(ident) or ("CANARY-u" + ident[-1] if "-canary-" in ident else None)
            if who is not None:
                out.setdefault(who, set()).add(ident)
    return out


def forms_of(c: canaries.Corpus, who: str) -> set[str]:
    """What may name ``who`` anywhere: its canaries, its ids and their pseudonyms."""
    ids = ids_of(c)[who]
    return {*c.of(who), *ids, *(canaries.pseudonym(SALT, i) for i in ids)}


def requests(c: canaries.Corpus) -> list[bytes]:
    """Deletions of person 1 (named by its e-mail user id, its request id naming an
    e-mail address too; idle by then, so cold) and of person 4 a minute after its last
    call (its session open, its cart timer pending), a suppression of person 2, and a
    broken request."""
    p1 = min(i for i in ids_of(c)[P1] if "@" in i)
    at = canaries.at(c.end + 5)
    first = {"type": "delete", "id": p1, "requestId": f"req {c.email(P1)}", "timestamp": at}
    p2 = min(i for i in ids_of(c)["CANARY-u2"] if "+" in i)  # suppressed by its phone
    sup = {"type": "suppress", "id": p2, "requestId": "req-sup", "timestamp": at}
    p4 = canaries.control(c, "CANARY-u6", "user-canary-4", c.last[P4] + 1)
    return [orjson.dumps(first), orjson.dumps(sup), *p4]


def leaks(c: canaries.Corpus, blobs: dict[str, bytes]) -> dict[str, list[str]]:
    found = {name: canaries.find(c.secret, blob) for name, blob in blobs.items()}
    return {name: hits for name, hits in found.items() if hits}


def test_the_search_finds_every_canary_the_input_holds() -> None:
    # The sweep is not blind: each token sent as is in the input is found there, and a
    # token is not found inside a longer one (CANARY-name-1 in CANARY-name-12).
    c = canaries.build()
    blob = b"\n".join(c.lines)
    sent = {t for t in c.secret if t.encode() in blob}
    sent = {t for t in sent if re.search(re.escape(t.encode()) + rb"(?![0-9a-f])", blob)}
    assert len(sent) > 2000
    assert sent <= set(canaries.find(c.secret, blob))
    assert canaries.find({"CANARY-name-1": "x"}, b"CANARY-name-12 canary-name-1%40") == [
        "CANARY-name-1"
    ]
    assert canaries.find({"+44 20 7946 1001": "x"}, b"tel=442079461001") == ["+44 20 7946 1001"]


def test_a_replay_writes_no_canary_to_any_file_report_or_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = canaries.build()
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(c.lines) + b"\n")
    ctl = tmp_path / "control.jsonl"
    ctl.write_bytes(b"\n".join(requests(c)) + b"\n")
    out = tmp_path / "out"
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", SALT)
    assert main(["replay", str(src), "--control", str(ctl), "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    console = capsys.readouterr()
    blobs = {p.name: p.read_bytes() for p in out.iterdir()}
    blobs |= {"stdout": console.out.encode(), "stderr": console.err.encode()}
    assert "report.html" in blobs and "summary.json" in blobs
    assert leaks(c, blobs) == {}

    # Every line reached the step it was meant to exercise (the sweep is not vacuous).
    counts = orjson.loads(blobs["summary.json"])["counts"]
    assert counts["reconciled"] and counts["filtered_by_reason"] == {"consent_withheld": 1}
    assert set(counts["dead_lettered_by_reason"]) >= {
        "not_json", "oversize", "oversize_field", "bad_encoding", "too_deep", "duplicate_key",
        "not_object", "unknown_type", "missing_group_id", "wrong_field_type", "bad_timestamp",
        "no_identity", "missing_event_name", "bad_alias", "late_event", "future_event",
    }  # fmt: skip
    dead = [orjson.loads(x) for x in blobs["dead_letters.jsonl"].splitlines()]
    assert any(d["reason"] == "bad_control" for d in dead)
    # Ids pass only as documented: an e-mail, phone or IP id as its pseudonym, a clean one
    # as given. Person 1 and 4 were deleted: no profile of theirs is left.
    ids = ids_of(c)
    pseudonyms = {canaries.pseudonym(SALT, i): who for who, v in ids.items() for i in v}
    users = {
        orjson.loads(x)["user_id"]
        for name in ("sessions.jsonl", "segment_changes.jsonl", "actions.jsonl")
        for x in blobs[name].splitlines()
    }
    assert users - {*CLOCKS, "user-canary-4", "anon-canary-3"} <= set(pseudonyms)
    assert {pseudonyms[u] for u in users if u in pseudonyms} == {P1, "CANARY-u2", "CANARY-u3", P8}
    identities = [orjson.loads(x) for x in blobs["identities.jsonl"].splitlines()]
    refused = [i for i in identities if i["type"] == "rejected_merge"]
    assert refused and {pseudonyms.get(x) for r in refused for x in r["identifiers"]} == {P8}
    # No output made after a deletion names the person (README, Deletion).
    p4_gone = canaries.at(c.last[P4] + 1)
    named = [
        rec
        for name in ("sessions", "segment_changes", "actions", "identities")
        for rec in map(orjson.loads, blobs[f"{name}.jsonl"].splitlines())
        if (rec.get("at") or rec.get("end")) >= p4_gone
        and forms_of(c, P4) & {rec.get("user_id"), rec.get("identifier"), rec.get("canonical_id")}
    ]
    assert named == []
    profiles = {orjson.loads(x)["user_id"] for x in blobs["profiles.jsonl"].splitlines()}
    assert not profiles & forms_of(c, P1) and not profiles & forms_of(c, P4)
    pseudonymous = profiles - {*CLOCKS, "user-canary-9"}
    assert pseudonymous and pseudonymous <= set(pseudonyms)


def matching_hashes(ident: str, salt: str) -> set[str]:
    """The receipt hashes that name ``ident``, as README (Deletion and suppression) says
    a consumer works them out: of the id, and of its pseudonym."""
    key = salt.encode()[:64]
    pseudonym = "uid:" + hashlib.sha256(salt.encode() + b"uid\0" + ident.encode()).hexdigest()[:32]
    return {
        hashlib.blake2b(x.encode(), key=key, digest_size=16).hexdigest() for x in (ident, pseudonym)
    }


def test_a_consumer_matches_a_receipt_to_its_own_ids_as_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = canaries.build()
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(c.lines) + b"\n")
    ctl = tmp_path / "control.jsonl"
    reqs = requests(c)
    ctl.write_bytes(b"\n".join(reqs) + b"\n")
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", SALT)
    assert main(["replay", str(src), "--control", str(ctl), "--out", str(tmp_path / "o")]) == 0
    receipts = {
        r["request_id"]: r
        for r in map(orjson.loads, (tmp_path / "o" / "control.jsonl").read_bytes().splitlines())
    }
    p1 = canaries.pseudonym(SALT, orjson.loads(reqs[0])["requestId"], "rid")
    for rid, who in ((p1, P1), ("req-canary", P4)):
        assert receipts[rid]["status"] == "done"
        mine = set().union(*(matching_hashes(i, SALT) for i in ids_of(c)[who]))
        assert set(receipts[rid]["identifiers"]) <= mine, rid


GROUP_RULES = """segments:
  account:
    when: "group.plan != null or group.website != null"
"""


def _engine_fed(c: canaries.Corpus, config: Path | None) -> tuple[ShardEngine, Privacy]:
    """An engine fed the corpus through the ingest the flows build (a replay's, a worker's)."""
    cfg = Settings.load(config, environ={"AUDIENCEFLOW_PII_SALT": SALT})
    ingest = make_ingest(cfg, "p", None, live=False)
    privacy = ingest.privacy
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    raws = [(f"p:{n}", line) for n, line in enumerate(c.lines)]
    eng.on_items([v for k, v in ingest.feed(raws) if k != OUT])
    return eng, privacy


@pytest.mark.parametrize("config", [None, DEMO, "group"], ids=["defaults", "demo", "group"])
def test_a_snapshot_with_users_in_the_cold_tier_holds_no_canary_and_none_of_the_deleted(
    config: Path | str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The demo's config adds the recommender (users' recent and bought items) and an
    # experiment (exposures) to what a user's state and the shard hold; "group" rules
    # reading account traits, which keeps them in users' state.
    monkeypatch.chdir(DEMO.parents[1])  # its truth file is named from the checkout
    if config == "group":
        config = tmp_path / "group.yaml"
        config.write_text(GROUP_RULES)
    c = canaries.build()
    eng, privacy = _engine_fed(c, config)
    st = eng.state
    p1 = {canaries.pseudonym(SALT, i) for i in ids_of(c)[P1]}
    assert p1 & set(st.cold) and "user-canary-4" in st.cold  # idle for over an hour: cold
    # The last events are held back, in the snapshot too: person 9's identify among them.
    held = [e for *_, e in (st.held or st.held_run or [])]
    assert any(getattr(e, "user_id", None) == "user-canary-9" for e in held)
    assert any(getattr(e, "type", None) == "group" for e in held)
    before = encode_shard(st) + pickle.dumps(st)
    assert leaks(c, {"snapshot": before}) == {}
    assert all(p.encode() in before for p in p1)  # pseudonyms are what it holds
    if config is not None and config.name == "group.yaml":  # account traits were kept
        users = [*st.users.values(), *map(decode_user, st.cold.values())]
        kept = [u.traits for u in users if u.traits and "group.plan" in u.traits]
        assert kept and all(t["group.plan"] == "<email>" for t in kept)

    reqs = [parse(r, f"ctl:{n}", privacy) for n, r in enumerate(requests(c)[:3])]
    assert all(isinstance(r, ControlRequest) for r in reqs)
    eng.on_items(reqs)
    after = encode_shard(st) + pickle.dumps(st)
    assert len(st.suppressed) == 3 and leaks(c, {"snapshot": after}) == {}  # hashes only
    for who in (P1, P4):
        assert [f for f in forms_of(c, who) if f.encode() in after] == [], who
    # The others are still there: only the deleted are gone.
    assert any(canaries.pseudonym(SALT, i).encode() in after for i in ids_of(c)["CANARY-u2"])


# --- the live worker ------------------------------------------------------------------

TOPICS = {
    "segment_changes": "cs.changes",
    "actions": "cs.actions",
    "sessions": "cs.sessions",
    "dead_letters": "cs.dead",
    "identities": "cs.identities",
    "control_receipts": "cs.receipts",
}


def _redis_dump(url: str) -> bytes:
    import redis

    client = redis.Redis.from_url(url)
    try:
        rows = []
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            value: object
            if kind == b"hash":
                value = client.hgetall(key)
            elif kind == b"set":  # a profile's identifiers (the erasure's index)
                value = sorted(client.smembers(key))
            else:
                value = client.get(key)
            rows.append(repr((key, value)).encode())
        return b"\n".join(sorted(rows))
    finally:
        client.close()


def _topic_dump(bootstrap: str, topic: str) -> bytes:
    recs = servers.consume_all(bootstrap, topic, timeout=10)
    return b"\n".join(
        (k or b"") + b"\t" + (v or b"") + b"\t" + repr(h).encode() for k, v, h in recs
    )


def _user_key(line: bytes) -> bytes | None:
    """The raw ``userId`` (else ``anonymousId``) a producer keys a message by."""
    try:
        call = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    ident = (call.get("userId") or call.get("anonymousId")) if isinstance(call, dict) else None
    return ident.encode() if isinstance(ident, str) else None


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_a_live_worker_writes_no_canary_to_topics_redis_metrics_logs_or_snapshots(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    c = canaries.build()
    servers.create_topics(kafka_broker, ["cs.in", "cs.control"], partitions=1)
    servers.produce_lines(kafka_broker, "cs.in", c.lines, key_fn=_user_key)  # as producers key
    servers.produce_lines(kafka_broker, "cs.control", requests(c))
    port = servers.free_port()
    prefix = "cs:profile:"
    cfg = workers.write_config(
        tmp_path / "w.yaml",
        time={"idle_after": "1h"},  # stream time stays event time: users stay, go cold
        kafka={
            "brokers": kafka_broker,
            "input_topic": "cs.in",
            "control_topic": "cs.control",
            "topics": TOPICS,
            "partitions": 1,
            "startup_timeout": "5s",
        },
        redis={"url": redis_server, "key_prefix": prefix},
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": "1s", "partitions": 1},
        metrics={"port": port},
        privacy={"salt": SALT},
    )
    args = ("--log-level", "DEBUG", "--log-format", "json", "--progress", "1")
    worker = workers.Worker(cfg, tmp_path / "worker.log", *args)
    try:
        n = len(c.lines)
        workers.poll(
            lambda: (workers.metric(port, "audienceflow_events_in_total") or 0) >= n,
            60,
            "every line read",
            worker.log,
        )
        workers.poll(
            lambda: len(servers.consume_all(kafka_broker, TOPICS["control_receipts"])) >= 3,
            60,
            "the three receipts",
            worker.log,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics_text = resp.read()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        worker.stop()

    blobs = {name: _topic_dump(kafka_broker, t) for name, t in TOPICS.items()}
    redis_dump = _redis_dump(redis_server)
    snapshots = b"".join(p.read_bytes() for p in sorted((tmp_path / "recovery").iterdir()))
    blobs |= {"redis": redis_dump, "metrics": metrics_text, "log": worker.log().encode()}
    blobs["recovery"] = snapshots
    assert leaks(c, blobs) == {}
    # Not vacuous: the dead letters, the profiles and the snapshot were written.
    assert blobs["dead_letters"].count(b"\n") >= 20 and b"bad_control" in blobs["dead_letters"]
    others = {canaries.pseudonym(SALT, i) for i in ids_of(c)["CANARY-u2"]}
    assert all(p.encode() in redis_dump for p in others)
    assert any(p.encode() in snapshots for p in others)
    # A deletion leaves nothing of the person in Redis or in the recovery files.
    for who in (P1, P4):
        assert [f for f in forms_of(c, who) if f.encode() in redis_dump] == [], who
        assert [f for f in forms_of(c, who) if f.encode() in snapshots] == [], who
