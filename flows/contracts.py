"""Output contracts: the JSON Schema (draft 2020-12) of every output record.

The schemas ship inside the package (``flows/schemas/*.json``); ``audienceflow
schemas NAME`` prints one. Each carries ``x-schema-version``, the version the worker
sends in the ``schema-version`` header of every Kafka message
(``operators.records.SCHEMA_VERSION``), and an ``$id`` of the form
``urn:audienceflow:schema:NAME:VERSION``.

>>> sorted(NAMES)[:3]
['action', 'dead_letter', 'drift']
>>> errors("dead_letter", {"reason": "not_json"})[0]
"$: 'detail' is a required property"
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

# Output file of a replay -> the schema its records follow.
FILES = {
    "sessions.jsonl": "session",
    "segment_changes.jsonl": "segment_change",
    "actions.jsonl": "action",
    "dead_letters.jsonl": "dead_letter",
    "drift.jsonl": "drift",
    "profiles.jsonl": "profile",
    "exposures.jsonl": "exposure",
    "experiments.jsonl": "experiment",
    "identities.jsonl": "identity",
    "control.jsonl": "receipt",
    "summary.json": "summary",
}
NAMES = tuple(sorted(set(FILES.values())))


def text(name: str) -> str:
    """The schema file's text, as shipped."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    return (resources.files("audienceflow.flows") / "schemas" / f"{name}.json").read_text()


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema ``name`` as a dict."""
    loaded: dict[str, Any] = json.loads(text(name))
    return loaded


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for ``name`` (each schema stands alone: no references between them)."""
    return Draft202012Validator(schema(name))


def errors(name: str, record: Any) -> list[str]:
    """Every way ``record`` breaks schema ``name``, as ``$.path: message`` (empty: valid)."""
    v = validator(name)
    if v.is_valid(record):
        return []
    found = sorted(v.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {e.message}" for e in found]
