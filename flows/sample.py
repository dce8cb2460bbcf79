"""Which trigger and rule events a recorded stream never contains, for ``check-config --sample``.

A trigger whose ``start_on``/``cancel_on``/``events`` name an event that never
occurs in a representative sample cannot start, be cancelled or fire on it; a rule
whose ``count()``/``since()``/``sequence()``/``distinct()`` names such an event
never sees it: usually a typo (``Product Veiwed``) or a name the source spells
differently. Page and screen views match their own name and ``Page Viewed`` /
``Screen Viewed``.
"""

from __future__ import annotations

import orjson

from audienceflow.flows.input_files import LINE_CAP, cut_short, open_input, pass_rest
from audienceflow.operators.features import FeatureSpec, summed_kind
from audienceflow.operators.money import count_currency, merge_currencies, mixed_warning
from audienceflow.operators.settings import Settings
from audienceflow.operators.triggers import EventTrigger, TimerTrigger
from audienceflow.operators.validate import MAX_EVENT_BYTES, Taxonomy, Validator

_BOM = b"\xef\xbb\xbf"
_VIEWED = ("track", "page", "screen")  # the types whose named events the replay reads


def event_names(
    path: str,
    taxonomy: Taxonomy | None = None,
    currencies: dict[str, list[int]] | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[set[str], int]:
    """The event names (track ``event``, page/screen ``name``) in a JSONL file, and its lines.

    A track event's name as the replay reads it with ``taxonomy`` (``order_completed``
    and the retired ``Completed Order`` are ``Order Completed``: ``Validator.reads_as``).
    Lines that are not JSON objects are skipped: the replay dead-letters them. With
    ``currencies`` and ``spec``, the events whose amounts the replay sums
    (``features.summed_kind``: track events, and views named like one) are counted
    there by the currency they name.
    """
    reading = Validator(taxonomy) if taxonomy is not None else None
    seen: set[str] = set()
    lines = 0
    with open_input(path) as fh:
        readline = fh.readline
        while line := readline(LINE_CAP):
            lines += 1
            if cut_short(line):
                # Over a megabyte: an oversize event the replay dead-letters, never held.
                pass_rest(readline)
                continue
            if line.startswith(_BOM):  # as the replay reads a line (``Validator``)
                line = line[len(_BOM) :]
            if len(line.rstrip(b"\r\n")) > MAX_EVENT_BYTES:
                continue  # an ``oversize`` dead letter in the replay, never parsed there
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            kind = obj.get("type")
            name = obj.get("event") if kind == "track" else obj.get("name")
            if isinstance(name, str):
                name = reading.reads_as(name) if reading and kind == "track" else name
                seen.add(name)
                props = obj.get("properties")
                # A view matches by its own name, so one named like an order is summed too.
                if type(props) is dict and spec and currencies is not None and kind in _VIEWED:
                    got = summed_kind(name, props, spec)
                    if got is not None:
                        count_currency(currencies, props, got)
            if kind == "page":
                seen.add("Page Viewed")
            elif kind == "screen":
                seen.add("Screen Viewed")
    return seen, lines


def unseen_rule_events(settings: Settings, seen: set[str], sample: str, lines: int) -> list[str]:
    """One warning per event name a segment's or trigger's rule reads that ``seen`` lacks."""
    rules = [(f"segments.{s.name}.when", s.rule) for s in settings.segments]
    rules += [(f"triggers.{t.name}.when", t.when) for t in settings.triggers if t.when]
    out = []
    for where, rule in rules:
        names = {n for tracker in rule.trackers for step in tracker.steps for n in step}
        for name in sorted(names - seen):
            out.append(
                f"{where}: event {name!r} never occurs in {sample} ({lines} lines), so on it "
                f"the rule never counts it"
            )
    return out


def unseen_trigger_events(settings: Settings, seen: set[str], sample: str, lines: int) -> list[str]:
    """One warning per trigger event name that ``seen`` lacks."""
    out = []
    for trig in settings.triggers:
        keys: dict[str, frozenset[str]] = {}
        if isinstance(trig, TimerTrigger):
            keys = {"start_on": trig.start_on, "cancel_on": trig.cancel_on}
        elif isinstance(trig, EventTrigger):
            keys = {"events": trig.events}
        for key, names in keys.items():
            for name in sorted(names - seen):
                effect = "is never cancelled" if key == "cancel_on" else "never fires"
                out.append(
                    f"triggers.{trig.name}.{key}: event {name!r} never occurs in {sample} "
                    f"({lines} lines), so on it the trigger {effect}"
                )
    return out


def unseen_conversion_events(
    settings: Settings, seen: set[str], sample: str, lines: int
) -> list[str]:
    """One warning when no ``sessions.conversion_events`` name occurs in ``seen``: no
    session converts, so the intent model learns nothing (one warning per name that
    never occurs would be noise when the list names alternatives)."""
    names = settings.sessions.conversion_events
    if names & seen:
        return []
    listed = ", ".join(repr(n) for n in sorted(names))
    return [
        f"sessions.conversion_events: none of {listed} occurs in {sample} ({lines} lines), so "
        "no session converts on it and the intent model has nothing to learn (name the "
        "events that convert in your stream, such as a sign-up or a subscription)"
    ]


def mixed_currencies(
    settings: Settings, currencies: dict[str, list[int]], sample: str, lines: int
) -> list[str]:
    """One warning when, with ``money.currency`` unset, the sample's amounts name more
    than one currency: the replay would sum them as one (``money.mixed_warning``)."""
    if settings.features.money.currency is not None:
        return []
    warning = mixed_warning(merge_currencies([currencies]), ahead=True)
    return [] if warning is None else [f"money.currency: in {sample} ({lines} lines), {warning}"]
