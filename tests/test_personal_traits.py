"""Identify traits that name or locate a person never reach a rule, so never an output.

A rule's explanation (a segment change's ``reason.values``, an action's ``condition``)
writes the values of the traits it read. Segment's identify spec reserves ``name`` (the
full name), ``address``, ``birthday`` and ``avatar`` beside ``firstName``/``lastName``,
which ``privacy.pii_fields`` already covers; ``name`` cannot go into ``pii_fields``, which
also applies to properties, where ``name`` is a page's, screen's or product's.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from audienceflow.flows.testing import run
from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.timeout(60)

IDENTIFY = {
    "type": "identify",
    "userId": "u1",
    "messageId": "m1",
    "timestamp": "2026-11-02T08:00:00Z",
    "traits": {"name": "Jane Doe", "birthday": "1990-01-02", "plan": "trial"},
}


@pytest.mark.parametrize("trait", ["name", "address", "birthday", "avatar", "Name"])
def test_a_rule_reading_a_personal_identify_trait_is_rejected_at_load(
    trait: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'segments:\n  profile_complete:\n    when: "traits.{trait} != null"\n')
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert (
        str(err.value)
        .replace(f"{tmp_path}/", "")
        .startswith(
            f"c.yaml:3: segments.profile_complete.when: traits.{trait} is named in "
            "privacy.pii_traits:"
        )
    )


def test_a_trigger_when_reading_the_full_name_is_rejected_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "triggers:\n  hi:\n    type: event\n    events: [Signed In]\n"
        "    when: \"traits.name == 'Jane Doe'\"\n"
    )
    with pytest.raises(ConfigError, match=r"triggers\.hi\.when: traits\.name is named in"):
        Settings.load(cfg, environ={})


def test_the_full_name_never_reaches_a_segment_change_by_default() -> None:
    # Before: `traits.name != null` loaded, and its entry's reason.values held the name.
    config = {"segments": {"on_trial": {"when": "traits.plan == 'trial'"}}}
    result = run([IDENTIFY], config, environ={"AUDIENCEFLOW_PII_SALT": "x"})
    assert result.entered("on_trial") == ["u1"]
    assert "Jane Doe" not in repr(result.segment_changes)
    with pytest.raises(ConfigError):
        run([IDENTIFY], {"segments": {"named": {"when": "traits.name != null"}}})


def test_clearing_pii_traits_lets_a_rule_read_them_as_configured() -> None:
    config = {
        "privacy": {"pii_traits": []},
        "segments": {"named": {"when": "traits.name != null"}},
    }
    result = run([IDENTIFY], config, environ={"AUDIENCEFLOW_PII_SALT": "x"})
    assert result.entered("named") == ["u1"]


def test_pii_traits_do_not_touch_properties_named_so() -> None:
    # A page's or product's `name` property is no person's name.
    settings = Settings.load(environ={})
    assert "name" in settings.pii_traits
    assert "name" not in {f.lower() for f in settings.pii_fields}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("etype", ["identify", "group", "alias"])
def test_a_top_level_name_on_a_call_the_spec_names_not_is_never_kept_nor_written(
    tmp_path: Path, etype: str
) -> None:
    # The Spec names no identify, group or alias call: a sender putting the person's or
    # the company's name at the top level had it written into a future_event dead letter.
    from audienceflow.flows.replay import replay
    from audienceflow.operators.validate import Taxonomy, Validator

    call = {"type": etype, "userId": "u1", "name": "Jane Doe", "messageId": "b",
            "timestamp": "2036-03-02T08:00:00Z", "traits": {"plan": "x"}}  # fmt: skip
    if etype == "group":
        call["groupId"] = "g1"
    if etype == "alias":
        call["previousId"] = "a1"
    ev = Validator(Taxonomy.default())(orjson.dumps(call), "s:1")
    assert getattr(ev, "name", None) == ""
    page = {"type": "page", "userId": "u1", "name": "Home", "messageId": "a",
            "timestamp": "2026-03-02T08:00:00Z"}  # fmt: skip
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(page) + b"\n" + orjson.dumps(call) + b"\n")
    replay([str(src)], tmp_path / "out", Settings.load(None, environ={}))
    dead = (tmp_path / "out" / "dead_letters.jsonl").read_text()
    assert "future_event" in dead and "Jane" not in dead
