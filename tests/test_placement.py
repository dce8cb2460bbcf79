"""``state.placement: partition`` and flows/placement.py.

- Where Bytewax puts partitions and keys, checked against a real multi-process
  cluster: the pinned shard keys and the scaling bench rely on it; if a Bytewax
  upgrade changed either rule, this fails instead of the placement silently
  becoming remote.
- A user's shard is the partition Kafka's partitioners (murmur2 of the Java
  client, crc32 of librdkafka) would write the user's key to: Kafka's own test
  vectors, and a real producer against a real broker.
- A replay placed by partition: events of a file stay on its shard, an event
  on the wrong file is still processed where its user is (and counted), and the
  outputs are those of a shared placement.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import pure_only

from audienceflow.flows import placement
from audienceflow.flows.replay import replay
from audienceflow.operators.config import ConfigError
from audienceflow.operators.routing import murmur2, out_key, shard_index
from audienceflow.operators.settings import Settings
from tests.helpers import ev, read_jsonl, write_stream

ROOT = Path(__file__).resolve().parents[1]

PARTS = ["zz-a", "aa-c", "mm-b", "bb-d", "cc-e"]  # not in sorted order
KEYS = [f"shard-{i:03d}" for i in range(16)] + ["u1", "anon-2", "é"]

PROBE = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from audienceflow.flows.placement import LocalRoute
from audienceflow.operators.routing import is_out, out_key

OUT = os.environ["PROBE_OUT"]
PARTS = os.environ["PROBE_PARTS"].split(",")
KEYS = os.environ["PROBE_KEYS"].split(",")
WORKERS = int(os.environ["PROBE_WORKERS"])


def log(line):
    with open(os.path.join(OUT, f"log-{os.getpid()}"), "a") as fh:
        fh.write(line + "\\n")


class Part(StatefulSourcePartition):
    def __init__(self, name):
        self.name = name
        self.done = False
        log(f"part {name}")

    def next_batch(self):
        if self.done:
            raise StopIteration
        self.done = True
        mine = [(out_key(self.name), self.name)]  # as its dead letters are keyed
        return mine + ([(k, self.name) for k in KEYS] if self.name == PARTS[0] else [])

    def snapshot(self):
        return None


class Source(FixedPartitionedSource):
    def list_parts(self):
        return PARTS

    def build_part(self, step_id, for_part, resume_state):
        return Part(for_part)


class Sink(StatelessSinkPartition):
    def write_batch(self, items):
        pass


class Workers(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        log(f"worker {worker_index}")
        return Sink()


class Written(StatefulSinkPartition):
    def write_batch(self, values):
        for key in values:
            log(f"sunk {key}")

    def snapshot(self):
        return None


class Local(FixedPartitionedSink):  # the worker sink's routing (flows/worker_sink.py)
    def __init__(self):
        self.route = LocalRoute(WORKERS, PARTS)

    def list_parts(self):
        return self.route.parts

    def part_fn(self, item_key):
        return self.route(item_key)

    def build_part(self, step_id, for_part, resume_state):
        return Written()


def first(state, value):
    return True, value


def seen(key_value):
    log(f"key {key_value[0]}")
    return key_value


flow = Dataflow("placement_probe")
keyed = op.input("in", flow, Source())
split = op.branch("split", keyed, lambda kv: not is_out(kv[0]))
once = op.stateful_map("once", split.trues, first)
op.output("out", op.map("log", once, seen), Workers())
every = op.merge("every", once, split.falses)
op.output("local", op.map("keys", every, lambda kv: (kv[0], kv[0])), Local())
"""


def _run(tmp_path: Path, workers: int) -> dict[str, dict[str, int]]:
    (tmp_path / "placement_probe.py").write_text(PROBE)
    out = tmp_path / f"out-{workers}"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PROBE_OUT": str(out),
        "PROBE_PARTS": ",".join(PARTS),
        "PROBE_KEYS": ",".join(KEYS),
        "PROBE_WORKERS": str(workers),
    }
    subprocess.run(
        [sys.executable, "-m", "bytewax.testing", "placement_probe:flow", "-p", str(workers)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    parts: dict[str, int] = {}
    keys: dict[str, int] = {}
    sunk: dict[str, int] = {}
    for log in out.glob("log-*"):
        lines = log.read_text(encoding="utf-8").splitlines()
        (index,) = [int(x.split()[1]) for x in lines if x.startswith("worker ")]
        for x in lines:
            kind, _, name = x.partition(" ")
            if kind == "part":
                parts[name] = index
            elif kind == "key":
                keys[name] = index
            elif kind == "sunk":
                sunk[name] = index
    return {"parts": parts, "keys": keys, "sunk": sunk}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [2, 3])
def test_partitions_and_keys_land_where_placement_says(tmp_path: Path, workers: int) -> None:
    got = _run(tmp_path, workers)
    assert got["parts"] == placement.partition_workers(PARTS, workers)
    assert got["keys"] == {k: placement.key_worker(k, workers) for k in KEYS}
    # Not a constant: the keys are spread over more than one worker.
    assert len(set(got["keys"].values())) > 1
    # The worker sink's routing (LocalRoute) writes each item on the worker that made
    # it: a shard's outputs where the shard is, what a partition dead-letters where the
    # partition is read. Nothing crosses processes to be written.
    assert got["sunk"] == {
        **got["keys"],
        **{out_key(p): got["parts"][p] for p in PARTS},
    }


def test_the_worker_sinks_partitions_do_not_depend_on_the_number_of_workers() -> None:
    """Bytewax's recovery panics on resume when it holds a snapshot of a sink partition no
    longer listed: a cluster resumed with fewer workers must list the same partitions."""
    routes = [placement.LocalRoute(w, PARTS) for w in (1, 2, 3, 8, 12)]
    assert all(r.parts == routes[0].parts for r in routes)
    assert routes[0].parts == sorted(routes[0].parts)  # the i-th is on worker i % workers
    for r in routes:  # every item goes to one of the first ``workers``: one per worker
        assert {r(k) for k in KEYS} <= set(range(r.workers))


def test_a_pinned_key_lives_with_the_partition_of_its_index() -> None:
    for i in range(16):
        key = placement.pinned_key(f"shard-{i:03d}", i)
        assert key.startswith(f"shard-{i:03d}")
        for workers in (1, 2, 3, 4, 5, 6, 7, 8, 12):
            assert placement.key_worker(key, workers) == i % workers
    # The plain names do not: shard-000..003 share one worker of two.
    assert len({placement.key_worker(f"shard-{i:03d}", 2) for i in range(4)}) == 1


# --- which shard: Kafka's partitioners ------------------------------------------------

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (signed 32-bit results).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


def test_murmur2_is_kafkas() -> None:
    for data, want in KAFKA_VECTORS.items():
        assert murmur2(data) == want, data
    # The Java client: (murmur2(key) & 0x7fffffff) % partitions.
    assert shard_index("foobar", 50, "murmur2") == 16
    # By hand from the vectors: 1357151166 % 2 = 0, 479470107 % 2 = 1.
    assert shard_index("foobar", 2, "murmur2") == 0
    assert shard_index("abc", 2, "murmur2") == 1


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("client", "ours"), [("murmur2_random", "murmur2"), (None, "crc32")])
def test_a_producer_keyed_by_user_writes_each_user_to_its_shards_partition(
    kafka_broker: str, client: str | None, ours: str
) -> None:
    """A real librdkafka producer, with the Java client's partitioner and with its own
    default, against a real broker: the partition of each key is our shard of it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"placement-{ours}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    conf = {"bootstrap.servers": kafka_broker}
    if client is not None:
        conf["partitioner"] = client
    producer = Producer(conf)
    users = [f"user-{i}" for i in range(40)] + ["anon-é", "21", "foobar"]
    landed: dict[str, int] = {}

    def done(err: object, msg: object) -> None:
        assert err is None, err
        landed[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for u in users:
        producer.produce(topic, key=u.encode(), value=b"{}", on_delivery=done)
    assert producer.flush(30) == 0
    assert landed == {u: shard_index(u, 6, ours) for u in users}
    assert len(set(landed.values())) > 1  # spread, not a constant


# --- where the shards live ------------------------------------------------------------


def test_each_partitions_shard_is_pinned_to_the_worker_reading_it() -> None:
    # Kafka partitions are named by their number: Bytewax sorts them as strings
    # ("10" before "2"), and a partition's worker follows that order.
    parts = [str(p) for p in range(12)] + ["audienceflow.control:0"]
    events = parts[:12]
    settings = placement.place(_settings("state:\n  placement: partition\n"), parts, events)
    assert settings.shards == 12
    assert len(set(settings.shard_keys)) == 12
    for workers in (1, 2, 3, 4, 5, 6, 8):
        on = placement.partition_workers(parts, workers)
        for i, name in enumerate(events):
            assert placement.key_worker(settings.shard_keys[i], workers) == on[name]
    # Shared placement is left alone.
    shared = _settings("state:\n  shards: 4\n")
    assert placement.place(shared, parts, events) is shared


def _settings(text: str) -> Settings:
    from tempfile import NamedTemporaryFile

    with NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    try:
        return Settings.load(fh.name, environ={})
    finally:
        os.unlink(fh.name)


def test_the_config_is_checked() -> None:
    s = _settings("state:\n  placement: partition\n")
    assert (s.placement, s.partitioner) == ("partition", "murmur2")
    assert _settings("state:\n  placement: partition\n  partitioner: crc32\n").partitioner == (
        "crc32"
    )
    # Shared placement routes by crc32 whatever the partitioner says.
    assert _settings("state:\n  shards: 2\n").partitioner == "crc32"
    with pytest.raises(ConfigError, match="number of input partitions"):
        _settings("state:\n  placement: partition\n  shards: 4\n")
    with pytest.raises(ConfigError, match="must be one of"):
        _settings("state:\n  placement: partition\n  partitioner: fnv\n")
    with pytest.raises(ConfigError, match="must be one of"):
        _settings("state:\n  placement: local\n")


# --- a replay placed by partition ------------------------------------------------------

# Shards by hand from KAFKA_VECTORS: "21" and "foobar" are partition 0 of 2, "abc" and
# "a-little-bit-longer-string" partition 1.
P0, P1 = ("21", "foobar"), ("abc", "a-little-bit-longer-string")


def _events(users: tuple[str, ...], offset: float) -> list[dict[str, object]]:
    out = []
    for k, u in enumerate(users):
        base = offset + 10 * k
        out += [
            ev(u, base, "Home"),
            ev(u, base + 1, "Product Viewed", product_id="p1", category="tech", price=10),
            ev(u, base + 2, "Product Added", product_id="p1", category="tech", price=10),
            ev(u, base + 3, "Home"),
        ]
    return out


def _outputs(out: Path) -> dict[str, list[bytes]]:
    names = ("sessions", "segment_changes", "actions", "dead_letters", "profiles")
    return {n: sorted((out / f"{n}.jsonl").read_bytes().splitlines()) for n in names}


@pytest.mark.timeout(120)
def test_a_replay_placed_by_partition_gives_the_shared_outputs_and_counts_misrouted_events(
    tmp_path: Path,
) -> None:
    a, b = _events(P0, 0), _events(P1, 5)
    stray = ev("abc", 200, "Home")  # user "abc" (partition 1) read from file 0
    f0 = write_stream(tmp_path / "f0.jsonl", [*a, stray])
    f1 = write_stream(tmp_path / "f1.jsonl", b)
    whole = write_stream(
        tmp_path / "all.jsonl", sorted([*a, *b, stray], key=lambda e: e["timestamp"])
    )
    common = "models:\n  enabled: false\n"
    placed = tmp_path / "placed.yaml"
    placed.write_text(common + "state:\n  placement: partition\n")
    shared = tmp_path / "shared.yaml"
    shared.write_text(common)
    s = replay([str(f0), str(f1)], tmp_path / "p", Settings.load(placed, environ={}))
    one = replay([str(whole)], tmp_path / "s", Settings.load(shared, environ={}))
    assert s["counts"]["reconciled"] and s["counts"]["processed"] == 17
    assert s["placement"] == {
        "mode": "partition",
        "events_routed_away": 1,
        "processed_by_shard": {"shard-000": 8, "shard-001": 9},
    }
    assert "placement" not in one
    assert _outputs(tmp_path / "p") == _outputs(tmp_path / "s")
    # The stray event is in abc's profile and its own session, made on shard 1.
    sessions = [x for x in read_jsonl(tmp_path / "p" / "sessions.jsonl") if x["user_id"] == "abc"]
    assert len(sessions) == 2


@pytest.mark.timeout(120)
def test_split_writes_what_a_keyed_producer_would_and_nothing_is_routed_away(
    tmp_path: Path,
) -> None:
    from audienceflow.flows.cli import main

    events = [*_events(P0, 0), *_events(P1, 5), ev("abc", 200, "Home")]
    events.append({"type": "page", "anonymousId": "foobar", "timestamp": "2026-03-02T09:00:00Z"})
    src = write_stream(tmp_path / "s.jsonl", [*events, "not json"])
    assert main(["split", str(src), "--parts", "2", "--out", str(tmp_path / "parts")]) == 0
    f0, f1 = sorted((tmp_path / "parts").glob("*.jsonl"))
    ids0 = {x.get("userId") or x.get("anonymousId") for x in _parsed(f0)}
    ids1 = {x.get("userId") or x.get("anonymousId") for x in _parsed(f1)}
    assert ids0 == set(P0) and ids1 == set(P1)  # by hand from Kafka's vectors
    lines = f0.read_bytes().count(b"\n") + f1.read_bytes().count(b"\n")
    assert lines == len(events) + 1  # the line that is not JSON too
    cfg = tmp_path / "placed.yaml"
    cfg.write_text("models:\n  enabled: false\nstate:\n  placement: partition\n")
    s = replay([str(f0), str(f1)], tmp_path / "out", Settings.load(cfg, environ={}))
    assert s["counts"]["reconciled"]
    assert s["placement"]["events_routed_away"] == 0
    assert s["counts"]["dead_lettered_by_reason"] == {"not_json": 1}
    assert main(["split", str(src), "--parts", "0", "--out", str(tmp_path / "x")]) == 2


def _parsed(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        out.append(obj)
    return out


@pytest.mark.timeout(60)
def test_split_runs_as_a_module_too(tmp_path: Path) -> None:
    """``python -m audienceflow.flows.cli split`` (the bench's fallback) finds its handler."""
    src = write_stream(tmp_path / "s.jsonl", _events(P0, 0))
    done = subprocess.run(
        [sys.executable, "-m", "audienceflow.flows.cli", "split", str(src), "--parts", "2",
         "--out", str(tmp_path / "p")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "p").glob("*.jsonl"))) == 2


@pytest.mark.timeout(60)
def test_split_of_a_damaged_input_exits_2_and_leaves_no_parts(tmp_path: Path) -> None:
    """A truncated gzip file: an error naming it (exit 2, no traceback), and no part
    files, since half a split would pass for a whole one."""
    import gzip

    whole = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in _events(P0, 0) * 40))
    src = tmp_path / "cut.jsonl.gz"
    src.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "p"
    done = subprocess.run(
        [sys.executable, "-m", "audienceflow.flows.cli", "split", str(src), "--parts", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "unreadable after line" in done.stderr and "Traceback" not in done.stderr
    assert not list(out.glob("*.jsonl"))
    # The same input whole splits (the error is the damage, not the shape).
    src.write_bytes(whole)
    assert len(placement.split_stream(src, 2, out)) == 2


@pytest.mark.timeout(60)
def test_split_into_more_parts_than_open_files_allowed_exits_2_and_leaves_no_parts(
    tmp_path: Path,
) -> None:
    """Every part is open at once: past the open-file limit the split stopped with a
    traceback and left the parts it had opened (19,995 of 100,000 at ``ulimit -n`` 20000)."""
    src = write_stream(tmp_path / "s.jsonl", _events(P0, 0))
    out = tmp_path / "p"
    script = (
        "import resource, sys\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "from audienceflow.flows.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "split", str(src), "--parts", "100", "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Too many open files" in done.stderr and "Traceback" not in done.stderr
    assert "ulimit -n" in done.stderr
    assert not list(out.glob("*.jsonl"))


@pytest.mark.timeout(60)
def test_split_into_a_path_that_is_a_file_exits_2_and_leaves_it_as_it_was(
    tmp_path: Path,
) -> None:
    src = write_stream(tmp_path / "s.jsonl", _events(P0, 0))
    out = tmp_path / "taken"
    out.write_bytes(b"mine\n")
    done = subprocess.run(
        [sys.executable, "-m", "audienceflow.flows.cli", "split", str(src), "--parts", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot write the 2 parts" in done.stderr and "Traceback" not in done.stderr
    assert out.read_bytes() == b"mine\n"


@pure_only  # deletes a field, which a native class refuses (old pickles: test_native)
def test_an_identity_graph_from_before_the_partitioner_routes_as_the_config_says() -> None:
    """A graph unpickled from a snapshot older than ``IdentityGraph.partitioner`` has no
    such slot; the engine gives it the configured one at the first event instead of
    failing on the first link to another shard."""
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import Rejected, Watermark
    from audienceflow.operators.routing import OUT
    from tests.helpers import keyed_items

    settings = _settings("state:\n  placement: partition\nmodels:\n  enabled: false\n")
    settings = placement.place(settings, ["a", "b"], ["a", "b"])
    anon = next(a for a in (f"anon-{i}" for i in range(50)) if shard_index(a, 2, "murmur2") == 0)
    raw = {**ev("abc", 0, "Home"), "anonymousId": anon}  # abc: shard 1, its anonymousId: 0
    items = keyed_items(settings, [("a:1", orjson.dumps(raw))], partition="a")
    mine = [v for k, v in items if k == settings.shard_keys[1]]
    engine = ShardEngine(settings, ShardState(shard="shard-001"))
    assert engine.ids is not None
    engine.ids.shards, engine.ids.shard = 2, 1  # as restored: already told its shard
    del engine.ids.partitioner  # as unpickled from an older snapshot
    engine.on_items([*mine, Watermark("a", float("inf"), True), Watermark("b", float("inf"), True)])
    assert engine.ids.partitioner == "murmur2"
    assert engine.ids.elsewhere == 1
    assert not [k for k, v in items if k == OUT or type(v) is Rejected]


@pytest.mark.timeout(60)
def test_split_prints_the_parts_of_a_folder_whose_name_reads_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audienceflow.flows.cli import main

    src = write_stream(tmp_path / "s.jsonl", _events(P0, 0))
    out = tmp_path / "p[" / "q]"  # "[/q]" raised Rich's MarkupError after the split
    assert main(["split", str(src), "--parts", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.replace("\n", "")
    assert f"{out}/s-0-of-2.jsonl{out}/s-1-of-2.jsonl" == printed
