"""Output contracts: every record a replay or the worker writes validates against its JSON
Schema, and a record that drifts from it (a renamed field, a wrong type) fails.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import servers
from helpers import read_jsonl
from jsonschema import Draft202012Validator
from workers import STREAM, Worker, kafka_outputs, redis_profiles, stream_lines, write_config

from audienceflow.flows import contracts
from audienceflow.flows.cli import main
from audienceflow.flows.kafka_io import HEADERS
from audienceflow.flows.replay import replay
from audienceflow.operators.records import SCHEMA_VERSION
from audienceflow.operators.settings import Settings

# Page-Hinkley with a low threshold fires on the bundled stream, so drift records exist;
# an experiment on the cart e-mail, so exposure and experiment records exist too.
DRIFTY = {
    "models": {"drift": {"detector": "page_hinkley", "threshold": 2}},
    "experiments": {
        "cart_timing": {
            "trigger": "cart_abandonment",
            "seed": "demo-cart-timing",
            "tuning": 200,
            "arms": {
                "after_15m": {"weight": 0.45},
                "after_1h": {"weight": 0.45, "after": "1h"},
                "holdout": {"weight": 0.1, "holdout": True},
            },
        }
    },
}


def outputs(out: Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for fname, name in contracts.FILES.items():
        path = out / fname
        found[name] = [orjson.loads(path.read_bytes())] if name == "summary" else read_jsonl(path)
    return found


def assert_conform(found: dict[str, list[dict[str, Any]]]) -> None:
    for name, records in found.items():
        bad = [(i, e) for i, rec in enumerate(records) for e in contracts.errors(name, rec)]
        assert not bad, f"{name}: {len(bad)} violations, e.g. {bad[:3]}"


# Requests for users of the bundled stream, so receipts exist (one per request and shard).
CONTROL = [
    {"type": "delete", "id": "u00240", "requestId": "r-del", "timestamp": "2026-03-02T12:00:00Z"},
    {"type": "suppress", "id": "u00160", "requestId": "r-sup", "timestamp": "2026-03-02T10:00:00Z"},
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("contracts")
    cfg = write_config(tmp / "drifty.yaml", **DRIFTY)
    control = tmp / "control.jsonl"
    control.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in CONTROL))
    replay([str(STREAM)], tmp / "out", Settings.load(cfg, environ={}), control=[str(control)])
    return outputs(tmp / "out")


def test_every_schema_is_a_valid_2020_12_schema_of_the_current_version() -> None:
    assert set(contracts.NAMES) == {
        "session", "segment_change", "action", "dead_letter", "drift", "profile", "summary",
        "exposure", "experiment", "identity", "receipt",
    }  # fmt: skip
    for name in contracts.NAMES:
        schema = contracts.schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["x-schema-version"] == SCHEMA_VERSION
        assert schema["$id"] == f"urn:audienceflow:schema:{name}:{SCHEMA_VERSION}"


def test_the_kafka_header_names_the_schemas_version() -> None:
    assert ("schema-version", SCHEMA_VERSION.encode()) in HEADERS
    assert SCHEMA_VERSION.count(".") == 1  # MAJOR.MINOR, see the README's compatibility rule


def test_every_record_of_a_replay_conforms_to_its_schema(
    demo: dict[str, list[dict[str, Any]]],
) -> None:
    # Every kind is present, so an empty file cannot pass for a conforming one.
    assert all(demo[name] for name in contracts.NAMES), {k: len(v) for k, v in demo.items()}
    assert any(a["status"] == "suppressed" for a in demo["action"])
    assert_conform(demo)


def test_records_without_models_conform_too(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "plain.yaml", models={"enabled": False})
    replay([str(STREAM)], tmp_path / "out", Settings.load(cfg, environ={}))
    found = outputs(tmp_path / "out")
    assert found["session"][0]["intent_score"] is None
    # Nor in a profile: null, not the untrained -1 and 0.0 a reader would take for data.
    assert found["profile"] and all(
        p["cluster"] is None and p["intent_score"] is None for p in found["profile"]
    )
    assert found["summary"][0]["models"] == {}
    assert_conform(found)


RENAMES = {
    "session": ("engaged_seconds", "engaged_secs"),
    "segment_change": ("change", "kind"),
    "action": ("action_id", "id"),
    "dead_letter": ("reason", "why"),
    "drift": ("signal", "metric"),
    "profile": ("segments", "segment"),
    "identity": ("canonical_id", "canonical"),
    "receipt": ("receipt_id", "id"),
}


@pytest.mark.parametrize("name", sorted(RENAMES))
def test_a_renamed_field_breaks_the_contract(
    demo: dict[str, list[dict[str, Any]]], name: str
) -> None:
    old, new = RENAMES[name]
    rec = copy.deepcopy(demo[name][0])
    assert contracts.errors(name, rec) == []
    rec[new] = rec.pop(old)
    found = contracts.errors(name, rec)
    assert any(f"'{old}' is a required property" in e for e in found), found
    assert any(f"'{new}' was unexpected" in e for e in found), found


def test_wrong_types_and_values_break_the_contract(demo: dict[str, list[dict[str, Any]]]) -> None:
    session = dict(demo["session"][0], start="2026-03-02T08:00:00+00:00")  # not ...000Z
    assert contracts.errors("session", session)
    action = next(a for a in demo["action"] if a["status"] == "delivered")
    assert contracts.errors("action", dict(action, status="sent"))
    assert contracts.errors("action", dict(action, status="suppressed"))  # no reason given
    assert contracts.errors("action", dict(action, suppressed_reason="cooldown"))  # delivered
    summary = copy.deepcopy(demo["summary"][0])
    summary["counts"]["reconciled"] = "yes"
    assert contracts.errors("summary", summary)
    change = dict(demo["segment_change"][0], change_id="not-a-hash")
    assert contracts.errors("segment_change", change)
    merge = demo["identity"][0]
    assert contracts.errors("identity", dict(merge, type="split"))
    assert contracts.errors("identity", dict(merge, identifiers=[]))
    receipt = demo["receipt"][0]
    assert contracts.errors("receipt", dict(receipt, status="partly"))
    assert contracts.errors("receipt", dict(receipt, identifiers=["u00240"]))  # not a hash
    assert contracts.errors("receipt", dict(receipt, purged={"users": -1}))
    assert contracts.errors("receipt", dict(receipt, seq=0))


def test_the_optional_identifier_field_of_version_1_1_is_accepted_and_typed(
    demo: dict[str, list[dict[str, Any]]],
) -> None:
    assert SCHEMA_VERSION == "1.1"
    for name in ("session", "segment_change", "action", "exposure"):
        rec = demo[name][0]
        assert contracts.errors(name, dict(rec, identifier="anon-1")) == [], name
        assert contracts.errors(name, dict(rec, identifier="")), name
        assert contracts.errors(name, dict(rec, identifier=7)), name
        assert contracts.errors(name, dict(rec, identifer="anon-1")), name  # a typo: closed


def test_the_demo_replay_has_receipts_of_both_requests_and_identity_merges(
    demo: dict[str, list[dict[str, Any]]],
) -> None:
    receipts = demo["receipt"]
    assert sorted({(r["request_id"], r["type"]) for r in receipts}) == [
        ("r-del", "delete"),
        ("r-sup", "suppress"),
    ]
    deleted = [r for r in receipts if r["request_id"] == "r-del" and r["status"] == "done"]
    assert len(deleted) == 1 and deleted[0]["purged"]["users"] == 1
    assert any(m["type"] == "merge" and "u00240" in m["identifiers"] for m in demo["identity"])


def test_fields_announced_for_later_minor_versions_are_accepted(
    demo: dict[str, list[dict[str, Any]]],
) -> None:
    action = dict(demo["action"][0], experiment="subject_line", arm="b", canonical_id="u1")
    action["payload"] = {**action["payload"], "recommendations": ["p1", "p2"]}
    assert contracts.errors("action", action) == []
    profile = dict(demo["profile"][0], canonical_id="u1", recommendations=[{"item": "p1"}])
    assert contracts.errors("profile", profile) == []
    summary = dict(demo["summary"][0], experiments={"subject_line": {}})
    assert contracts.errors("summary", summary) == []


def test_schemas_command_lists_and_prints_the_shipped_schemas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schemas"]) == 0
    listed = capsys.readouterr().out
    for name in contracts.NAMES:
        assert name in listed
    assert main(["schemas", "action"]) == 0
    assert json.loads(capsys.readouterr().out) == contracts.schema("action")
    assert main(["schemas", "nope"]) == 2
    assert "known: action" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_every_record_the_worker_publishes_conforms_to_its_schema(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    names = {"segment_changes": "segment_change", "actions": "action", "sessions": "session",
             "dead_letters": "dead_letter", "drift": "drift", "identities": "identity",
             "control_receipts": "receipt"}  # fmt: skip
    topics = {k: f"contracts.{k}" for k in names}
    servers.create_topics(kafka_broker, ["contracts.in", "contracts.control"], partitions=1)
    servers.produce_lines(kafka_broker, "contracts.in", stream_lines())
    servers.produce_lines(kafka_broker, "contracts.control", [orjson.dumps(c) for c in CONTROL])
    cfg = write_config(
        tmp_path / "w.yaml",
        time={"idle_after": "1h"},
        kafka={"brokers": kafka_broker, "input_topic": "contracts.in", "topics": topics,
               "control_topic": "contracts.control", "tail": False, "partitions": 1,
               "startup_timeout": "5s"},
        redis={"url": redis_server, "key_prefix": "contracts:profile:"},
        **DRIFTY,
    )  # fmt: skip
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(120) == 0, worker.log()
    published = kafka_outputs(kafka_broker, topics) | {
        name: servers.consume_all(kafka_broker, topics[name])
        for name in ("drift", "identities", "control_receipts")
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for topic, records in published.items():
        assert records, f"nothing on {topic}"
        for _, _, headers in records:
            assert dict(headers)["schema-version"].decode() == SCHEMA_VERSION
        found[names[topic]] = [orjson.loads(v or b"") for _, v, _ in records]
    found["profile"] = list(redis_profiles(redis_server, "contracts:profile:").values())
    assert found["profile"]
    assert_conform(found)


def test_module_docstring_examples_run() -> None:
    import doctest

    from audienceflow.flows import logs

    assert doctest.testmod(contracts).failed == 0
    assert doctest.testmod(logs).failed == 0
