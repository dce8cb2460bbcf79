"""The typed settings built from the merged configuration, checked entirely at load.

``Settings.load(path, environ)`` is the only way configuration enters the
program: defaults, then the file, then ``AUDIENCEFLOW_SECTION__KEY`` variables,
read once by ``operators.config.Reader``. Every section is typed and checked
here, so ``audienceflow check-config`` rejects what ``run`` or ``replay`` would.
Every rejected value is reported as ``FILE:LINE: key.path: reason; got VALUE``
(``$VARIABLE: key.path: ...`` for the environment); an unknown key anywhere is
an error that suggests the closest known one.

>>> s = Settings.load(environ={})
>>> s.sessions.timeout, s.idle_after, s.kafka.topics.actions
(1800.0, 10.0, 'audienceflow.actions')
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from audienceflow.operators import experiments
from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.config import (
    DEFAULT_CONFIG,
    ENV_PREFIX,
    ConfigError,
    Located,
    Reader,
    load_located,
    suggest,
    text_problem,
)
from audienceflow.operators.experiments import Experiments
from audienceflow.operators.features import FeatureSpec
from audienceflow.operators.identity import IdentitySpec
from audienceflow.operators.money import CURRENCY_CODE, Money
from audienceflow.operators.routing import PARTITIONERS
from audienceflow.operators.rules import Rule, RuleError, compile_rule
from audienceflow.operators.sections import (
    KafkaSettings,
    MetricsSettings,
    ModelSettings,
    RecoverySettings,
    RedisSettings,
    read_kafka,
    read_metrics,
    read_models,
    read_recovery,
    read_redis,
)
from audienceflow.operators.segments import SegmentRule
from audienceflow.operators.sessions import SessionSpec, conversion_funnel
from audienceflow.operators.state import GROUP, Limits
from audienceflow.operators.tracking import PAGE_EVENT, SCREEN_EVENT
from audienceflow.operators.triggers import (
    EventTrigger,
    SegmentTrigger,
    TimerTrigger,
    Trigger,
    parse_attach,
)
from audienceflow.operators.validate import V1_NAMES, Taxonomy, Validator

SALT_ENV = "AUDIENCEFLOW_PII_SALT"
MAX_SHARDS: Final = 4096  # ``state.shards`` at most

# Per-user bounds: Limits field -> state key (rules work).
_LIMIT_KEYS = (
    ("categories", "max_categories_per_user"),
    ("category_segments", "max_segments_per_category_rule"),
    ("window_events", "max_window_events"),
    ("distinct_values", "max_distinct_values"),
    ("traits", "max_traits"),
    ("cart_lines", "max_cart_lines"),
    ("session_products", "max_session_products"),
    ("recent_orders", "max_recent_orders"),
)
# The keys of every fixed section; segments, triggers and taxonomy are keyed by the user's names.
KEYS: dict[str, tuple[str, ...]] = {
    "time": (
        "allowed_lateness",
        "max_future",
        "tick",
        "idle_after",
        "align_within",
        "max_lead",
        "max_ahead_per_user",
        "max_ahead_total",
        "watermark_quorum",
        "watermark_window",
    ),
    "sessions": ("timeout", "max_length", "engaged_gap_cap", "conversion_events"),
    "state": (
        "shards",
        "placement",
        "partitioner",
        "dedup_window",
        "history_window",
        "history_max_sessions",
        "cold_after",
        *(k for _, k in _LIMIT_KEYS),
    ),
    "privacy": (
        "consent_path",
        "pii_fields",
        "pii_traits",
        "pii_group_traits",
        "pii_mode",
        "salt_env",
        "salt",
    ),
    "features": ("affinity_half_life",),
    "money": ("currency", "rates"),
    "caps": ("per_action_per_day", "per_user_per_day", "cooldown"),
    "identity": (
        "enabled",
        "max_user_ids",
        "max_anonymous_ids",
        "anonymous_ids_window",
        "blocked_values",
        "blocked_patterns",
    ),
}
SECTIONS = frozenset(
    {
        *KEYS,
        "taxonomy",
        "segments",
        "triggers",
        "models",
        "kafka",
        "redis",
        "recovery",
        "metrics",
        "experiments",
    }
)
RENAMED = {"time": {"quiet_after": "time.idle_after"}}
_SEGMENT_KEYS = ("when", "per", "description")
_TRIGGER_KEYS = {
    "timer": ("start_on", "cancel_on", "after"),
    "segment": ("segment", "on"),
    "event": ("events",),
}
_TRIGGER_COMMON = ("type", "action", "when", "payload", "attach", "n")


@dataclass(frozen=True)
class Settings:
    """Everything the engine and the flows need, typed and checked."""

    sessions: SessionSpec
    features: FeatureSpec
    lateness: float
    max_future: float
    tick: float
    idle_after: float
    align_within: float
    max_lead: float
    max_ahead_per_user: int
    max_ahead_total: int
    watermark_quorum: int
    watermark_window: int
    shards: int
    dedup_window: float
    taxonomy: Taxonomy
    consent_path: str
    pii_fields: tuple[str, ...]
    pii_mode: str
    pii_salt: str
    segments: list[SegmentRule]
    triggers: list[Trigger]
    caps: FrequencyCaps
    models: ModelSettings
    kafka: KafkaSettings
    redis: RedisSettings
    recovery: RecoverySettings
    metrics: MetricsSettings
    experiments: Experiments = field(default_factory=Experiments)
    identity: IdentitySpec = field(default_factory=IdentitySpec)
    # Idle users (no session, no timer) move to the shard's cold tier after this much
    # stream time without activity; None: never (``state.cold_after``: null or 0).
    cold_after: float | None = None
    # ``shared``: ``shards`` shards, a user's is crc32(id) mod shards. ``partition``: one
    # shard per input partition, a user's is the partition ``partitioner`` would key it to.
    placement: str = "shared"
    partitioner: str = "crc32"  # the hash routing uses (crc32 always with shared placement)
    # Set by the flows (``flows/placement.py``), not by a config: the dataflow key of each
    # shard, when it is not the shard's name.
    shard_keys: tuple[str, ...] = ()
    salt_env: str = SALT_ENV
    warnings: tuple[str, ...] = ()
    # Identify traits that name or locate a person: never kept, like a trait of
    # ``pii_fields``, which also names properties (where ``name`` is a page's).
    pii_traits: tuple[str, ...] = ()
    # The same of an account's (a group call's) traits, read as ``group.NAME``: its
    # ``name`` is a company's, not a person's, so the two lists are apart.
    pii_group_traits: tuple[str, ...] = ()

    @property
    def rules(self) -> list[Rule]:
        """Every rule: the segments', the triggers' and the experiment arms' ``when``."""
        rules = [s.rule for s in self.segments]
        return rules + [rule for _, rule in _action_rules(self.triggers, self.experiments)]

    @property
    def rule_traits(self) -> frozenset[str]:
        """The identify traits some segment, trigger or experiment-arm rule reads: the only
        ones kept (by the privacy step, so held events and snapshots hold no other)."""
        return frozenset(k for r in self.rules for k in r.traits if not k.startswith(GROUP))

    @property
    def rule_group_traits(self) -> frozenset[str]:
        """The account traits (a group call's) some rule reads as ``group.NAME``: their
        names, the only ones kept, as ``rule_traits``."""
        cut = len(GROUP)
        return frozenset(k[cut:] for r in self.rules for k in r.traits if k.startswith(GROUP))

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: dict[str, str] | None = None
    ) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return build(load_located(path, env), env)


def build(loc: Located, environ: dict[str, str]) -> Settings:
    """Check the merged config and build the typed settings."""
    r = Reader(loc)
    r.only((), loc.data, SECTIONS, what="section")
    for name, keys in KEYS.items():
        r.mapping(name, known=keys, renamed=RENAMED.get(name))
    half_life = r.duration("features", "affinity_half_life", minimum=1.0)
    taxonomy = _taxonomy(r)
    reading = Validator(taxonomy)  # event names as ingest reads them (warnings below)
    mode = r.choice("privacy", "pii_mode", allowed=("hash", "drop"))
    salt_env = r.text("privacy", "salt_env")
    salt = r.get("privacy", "salt")
    if salt is not None and not isinstance(salt, str):
        raise r.error(("privacy", "salt"), "must be a string (quote it) or null")
    quorum = r.integer("time", "watermark_quorum", minimum=1)
    window = r.integer("time", "watermark_window", minimum=quorum)
    segments = _segments(r)
    triggers = _triggers(r, half_life, {s.name for s in segments})
    caps = _caps(r, triggers)
    money = _money(r)
    conversions = frozenset(r.strings("sessions", "conversion_events", what="event names"))
    if not conversions:
        raise r.error(
            ("sessions", "conversion_events"),
            "must name at least one event (the default is [Order Completed]); a session "
            "with one of them is converted, which the intent model learns",
        )
    # Arms may wrap triggers; a goal without events counts the conversion events.
    lab = experiments.parse(loc, triggers, caps, money, _limits(r), conversions)
    pii_fields = r.strings("privacy", "pii_fields", what="field names")
    pii_traits = r.strings("privacy", "pii_traits", what="trait names")
    pii_group_traits = r.strings("privacy", "pii_group_traits", what="trait names")
    actions = _action_rules(triggers, lab)
    _no_pii_traits(r, segments, actions, pii_fields, pii_traits, pii_group_traits)
    for path, rule in actions:
        _segment_reads(r, path, rule, segments)
    # Each shard holds an engine and its model replicas (~160 KB before any user): 100,000
    # shards took 16 GB for 3,000 lines. 4,096 is several per worker of any cluster.
    shards = r.integer("state", "shards", minimum=1, maximum=MAX_SHARDS)
    placement = r.choice("state", "placement", allowed=("shared", "partition"))
    if placement == "partition" and shards != 1:
        raise r.error(
            ("state", "shards"),
            "is the number of input partitions with placement: partition (one shard each); "
            "remove it, or use placement: shared",
        )
    limits = _limits(r)
    models = read_models(r)
    return Settings(
        sessions=SessionSpec(
            # At most a year, as a timer's ``after``: a session closes at its last event
            # plus the timeout, a time every output names, so it must stay writable from any
            # valid event time (up to the end of 9998); 400d crashed the sink at the close.
            timeout=r.duration("sessions", "timeout", minimum=1.0, maximum=365 * 86400.0),
            max_length=r.duration("sessions", "max_length", minimum=1.0),
            engaged_gap_cap=r.duration("sessions", "engaged_gap_cap"),
            conversion_events=conversions,
            funnel_events=conversion_funnel(conversions),
            history_max=r.integer("state", "history_max_sessions", minimum=1),
            history_window=r.duration("state", "history_window", minimum=1.0),
            money=money,
            max_products=limits.session_products,
            max_categories=limits.categories,
            max_recent_orders=limits.recent_orders,
        ),
        features=FeatureSpec(affinity_half_life=half_life, limits=limits, money=money),
        lateness=r.duration("time", "allowed_lateness"),
        max_future=r.duration("time", "max_future", minimum=1.0),
        # At most one watermark per batch of lines whatever the tick (operators/routing.py),
        # so a small tick costs no flood of them in a backlog.
        tick=r.duration("time", "tick", minimum=0.01),
        idle_after=r.duration("time", "idle_after"),
        align_within=r.duration("time", "align_within"),
        max_lead=r.duration("time", "max_lead"),
        max_ahead_per_user=r.integer("time", "max_ahead_per_user", minimum=1),
        max_ahead_total=r.integer("time", "max_ahead_total", minimum=1),
        watermark_quorum=quorum,
        watermark_window=window,
        shards=shards,
        placement=placement,
        partitioner=r.choice("state", "partitioner", allowed=PARTITIONERS)
        if placement == "partition"
        else "crc32",
        dedup_window=r.duration("state", "dedup_window"),
        taxonomy=taxonomy,
        consent_path=r.text("privacy", "consent_path"),
        pii_fields=pii_fields,
        pii_traits=pii_traits,
        pii_group_traits=pii_group_traits,
        pii_mode=mode,
        pii_salt=environ.get(salt_env) or salt or "",
        segments=segments,
        triggers=list(lab.triggers),
        caps=caps,
        models=models,
        kafka=read_kafka(r),
        redis=read_redis(r),
        recovery=read_recovery(r),
        metrics=read_metrics(r),
        experiments=lab,
        identity=_identity(r),
        cold_after=_cold_after(r),
        salt_env=salt_env,
        warnings=(
            *_unknown_events(r, reading),
            *_rule_events(r, reading, segments, actions),
            *_rule_notes(r, segments, actions),
            *_lapse_notes(r, segments, actions),
            *_unfilled_attachments(r, lab.triggers, models),
            *_single_underscore(environ),
        ),
    )


def _no_pii_traits(
    r: Reader,
    segments: list[SegmentRule],
    actions: list[tuple[tuple[str, ...], Rule]],
    pii_fields: tuple[str, ...],
    pii_traits: tuple[str, ...] = (),
    pii_group_traits: tuple[str, ...] = (),
) -> None:
    """A trait named in ``privacy.pii_fields`` is never kept (features.identify), so a rule
    reading it could never hold: rejected like a categorical value that never occurs.
    One of ``pii_traits`` (of an account's, ``group.NAME``: ``pii_group_traits``) would be
    written into outputs as the rule's explanation.
    ``actions``: the triggers' and arms' ``when`` (``_action_rules``)."""
    pii = {f.lower() for f in pii_fields}
    personal = {f.lower() for f in pii_traits} - pii
    personal_group = {f.lower() for f in pii_group_traits} - pii
    rules: list[tuple[tuple[str, ...], Rule]] = [
        (("segments", s.name, "when"), s.rule) for s in segments
    ]
    for path, rule in [*rules, *actions]:
        for key in sorted(rule.traits):
            # ``group.NAME`` (an account's trait) is held as ``GROUP`` + NAME, as written.
            account = key.startswith(GROUP)
            trait = key[len(GROUP) :] if account else key
            written = key if account else f"traits.{key}"
            listed = "pii_group_traits" if account else "pii_traits"
            # An account's trait reaches a person through its contact (an email, a phone).
            whom = "can name or reach a person" if account else "names or locates a person"
            if trait.lower() in pii:
                raise r.error(
                    path,
                    f"{written} is named in privacy.pii_fields: such a trait is never "
                    "kept (not even hashed), so no rule can read it",
                )
            if trait.lower() in (personal_group if account else personal):
                raise r.error(
                    path,
                    f"{written} is named in privacy.{listed}: it {whom}, and a rule's "
                    "explanation writes the values it read into outputs; remove it from "
                    f"privacy.{listed} to allow it",
                )
        for prop in sorted(rule.properties):
            if any(key.lower() in pii for key in prop):
                raise r.error(
                    path,
                    f"properties.{'.'.join(prop)} is named in privacy.pii_fields: it is "
                    "hashed or dropped before any rule sees it, so a rule cannot compare it",
                )


def _action_rules(
    triggers: list[Trigger], lab: experiments.Experiments
) -> list[tuple[tuple[str, ...], Rule]]:
    """The ``when`` of every trigger and experiment arm, with its key path."""
    rules: list[tuple[tuple[str, ...], Rule]] = [
        (("triggers", t.name, "when"), t.when) for t in triggers if t.when is not None
    ]
    rules += [
        (("experiments", exp.name, "arms", arm.name, "when"), arm.trigger.when)
        for exp in lab.items
        for arm in exp.arms
        if arm.trigger is not None and arm.trigger.when is not None
    ]
    return rules


def _money(r: Reader) -> Money:
    """The ``money:`` section: the stream's currency (an ISO 4217 code, or null: not read)
    and fixed ``rates`` into it (units of ``currency`` per unit of each other code)."""
    code = r.string("money", "currency", optional=True)
    rates = r.mapping("money", "rates")
    if code is not None:
        code = code.strip().upper()
        if not CURRENCY_CODE.fullmatch(code):
            raise r.error(("money", "currency"), "must be a three-letter ISO 4217 code or null")
    elif rates:
        raise r.error(("money", "rates"), "needs money.currency: the currency they convert to")
    out: dict[str, float] = {}
    for key, rate in rates.items():
        other = key.strip().upper() if isinstance(key, str) else ""
        if not CURRENCY_CODE.fullmatch(other):
            raise r.error(("money", "rates", str(key)), "must be keyed by three-letter ISO codes")
        if other == code or other in out:
            what = "is money.currency itself" if other == code else f"names {other} twice"
            raise r.error(("money", "rates", str(key)), what)
        if not (type(rate) is int or type(rate) is float) or not 0 < rate < math.inf:
            raise r.error(("money", "rates", str(key)), "must be a positive number", rate)
        out[other] = float(rate)
    return Money(code, out)


def _cold_after(r: Reader) -> float | None:
    """``state.cold_after``: a duration, or None (null or 0) for no cold tier."""
    if r.get("state", "cold_after") is None:
        return None
    return r.duration("state", "cold_after") or None


def _identity(r: Reader) -> IdentitySpec:
    """The ``identity:`` section: merging rules and the values that never link."""
    patterns = r.strings("identity", "blocked_patterns", what="regular expressions")
    for pat in patterns:
        try:
            re.compile(pat)
        except re.error as exc:
            why = f"{pat!r} is not a regular expression: {exc}"
            raise r.error(("identity", "blocked_patterns"), why) from None
    blocked = r.strings("identity", "blocked_values", what="values")
    return IdentitySpec(
        enabled=r.boolean("identity", "enabled"),
        max_user_ids=r.integer("identity", "max_user_ids", minimum=1),
        anonymous_ids=r.integer("identity", "max_anonymous_ids", minimum=1),
        anonymous_window=r.duration("identity", "anonymous_ids_window", minimum=1.0),
        blocked=tuple(sorted({v.strip().lower() for v in blocked})),
        blocked_patterns=patterns,
    )


def _taxonomy(r: Reader) -> Taxonomy:
    extra = r.mapping("taxonomy")
    for name, cat in extra.items():
        if not isinstance(cat, str) or not cat:
            raise r.error(("taxonomy", name), "must map an event name to a category name")
    return Taxonomy({**Taxonomy.default().by_name, **extra})


def _limits(r: Reader) -> Limits:
    """Per-user bounds (``state.max_*``), defaults from ``Limits``."""
    given = {}
    for f, k in _LIMIT_KEYS:
        if r.get("state", k) is not None:
            given[f] = r.integer("state", k, minimum=1)
    return Limits(**given)


def _rule(
    r: Reader, path: tuple[str, ...], name: str, per: str | None = None, scope: str = "any"
) -> Any:
    try:
        return compile_rule(name, r.get(*path), per, scope, _limits(r))
    except RuleError as exc:
        raise r.error(path, str(exc)) from None


def _segments(r: Reader) -> list[SegmentRule]:
    out = []
    for name, spec in r.mapping("segments").items():
        path = ("segments", name)
        if not isinstance(spec, dict) or "when" not in spec:
            raise r.error(path, "a segment needs a 'when' rule, e.g. when: sessions(24h) > 3")
        r.only(path, spec, _SEGMENT_KEYS)
        per = spec.get("per")
        if per not in (None, "category"):
            raise r.error((*path, "per"), "only 'category' is supported")
        if ":" in name:
            raise r.error(path, "segment names cannot contain ':'", name)
        out.append(SegmentRule(name, _rule(r, (*path, "when"), name, per), per))
    reads = {s.name: _segment_reads(r, ("segments", s.name, "when"), s.rule, out) for s in out}
    return _dependency_order(r, out, reads)


def _segment_reads(
    r: Reader, path: tuple[str, ...], rule: Rule, segments: list[SegmentRule]
) -> set[str]:
    """Every ``in_segment`` of ``rule`` (at ``path``) names a segment, as it is held; the
    segments it reads (clusters aside)."""
    known = {s.name for s in segments}
    # A segment's own name is no answer: it cannot read itself.
    others = known - {path[1]} if path[0] == "segments" else known
    bases: set[str] = set()
    # From the parsed rule: a pattern over its text missed ``in_segment ('x')`` and
    # ``in_segment(('x'))``, which Python reads as the same call (an unknown name, a
    # segment reading itself, passed).
    for ref in rule.segments:
        base = ref.split(":")[0]
        if base not in known and base != "cluster":
            raise r.error(
                path,
                f"in_segment({ref!r}) names no segment{suggest(base, others)}; "
                f"known: {', '.join(sorted(others))}",
            )
        # A per-category segment (and a cluster) is only ever held as 'name:value',
        # a plain one only as 'name': the other spelling would never be true.
        per = base == "cluster" or any(s.per for s in segments if s.name == base)
        if per != (":" in ref):
            shape = f"'{base}:<value>'" if per else f"'{base}' (it has no per-value names)"
            raise r.error(
                path, f"in_segment({ref!r}) is never true: that segment is held as {shape}"
            )
        if base != "cluster":
            bases.add(base)
    return bases


def _dependency_order(
    r: Reader, rules: list[SegmentRule], reads: dict[str, set[str]]
) -> list[SegmentRule]:
    """``rules`` in config order, except that a segment comes after every segment its
    ``in_segment`` reads (``reads``: by name): one evaluation decides those first, so it
    reads their new truth, not the previous one. A segment reading itself, or a cycle,
    has no truth to read and is rejected."""
    placed: list[SegmentRule] = []
    done: set[str] = set()
    left = list(rules)
    while left:
        ready = next((rule for rule in left if reads[rule.name] <= done), None)
        if ready is None:
            raise r.error(("segments", left[0].name, "when"), _cycle(left[0].name, reads, done))
        placed.append(ready)
        done.add(ready.name)
        left.remove(ready)
    return placed


def _cycle(start: str, reads: dict[str, set[str]], done: set[str]) -> str:
    """The reason for the cycle of ``in_segment`` reads that ``start`` waits on (every
    segment not ``done`` waits on another not done, so the walk comes back)."""
    path = [start]
    while True:
        step = min(sorted(reads[path[-1]] - done), key=lambda n: n not in path)
        if step in path:
            loop = [*path[path.index(step) :], step]
            if len(loop) == 2:
                return f"in_segment({step!r}) reads the segment itself: it has no truth to read"
            return "segments read each other through in_segment in a cycle: " + " -> ".join(loop)
        path.append(step)


def _triggers(r: Reader, half_life: float, segments: set[str]) -> list[Trigger]:
    out: list[Trigger] = []
    for name, spec in r.mapping("triggers").items():
        path = ("triggers", name)
        if not isinstance(spec, dict):
            raise r.error(path, "a trigger must be a mapping with a 'type'")
        kind = spec.get("type")
        if kind not in _TRIGGER_KEYS:
            hint = suggest(kind, _TRIGGER_KEYS) if isinstance(kind, str) else ""
            raise r.error((*path, "type"), f"must be timer, segment or event{hint}")
        r.only(
            path, spec, (*_TRIGGER_COMMON, *_TRIGGER_KEYS[kind]), what=f"key of a {kind} trigger"
        )
        action = spec.get("action", name)
        if not isinstance(action, str) or not action:
            raise r.error((*path, "action"), "must be a non-empty action name")
        why = text_problem(action, name=True)  # an action is named in outputs and metrics
        if why:
            raise r.error((*path, "action"), f"an action name {why}")
        payload = r.mapping(*path, "payload")
        common: dict[str, Any] = {
            "name": name,
            "action": action,
            "when": (
                _rule(r, (*path, "when"), name, None, "event" if kind == "event" else "any")
                if spec.get("when") is not None
                else None
            ),
            "payload": payload,
            "half_life": half_life,
        }
        try:  # attach: cart (timers) and/or recommendations, with n of them
            attach, common["recommendations"] = parse_attach(spec.get("attach"), str(kind))
        except ValueError as exc:
            raise r.error((*path, "attach"), str(exc)) from None
        if "n" in spec:
            common["n"] = r.integer(*path, "n", minimum=1)
        if kind == "timer":
            if not spec.get("start_on"):
                raise r.error((*path, "start_on"), "a timer needs the events that start it")
            trig: Trigger = TimerTrigger(
                **common,
                start_on=frozenset(r.strings(*path, "start_on", what="event names")),
                cancel_on=frozenset(r.strings(*path, "cancel_on", what="event names")),
                # At most a year: a deadline from any valid event time (up to the end of
                # 9998) stays inside the calendar, so it can be written as a time.
                after=r.duration(*path, "after", minimum=1.0, maximum=365 * 86400.0),
                attach=attach,
            )
        elif kind == "segment":
            on = spec.get("on", "enter")
            if on not in ("enter", "exit"):
                raise r.error((*path, "on"), "must be 'enter' or 'exit'")
            segment = spec.get("segment")
            if not isinstance(segment, str) or not segment:
                raise r.error((*path, "segment"), "must name a segment")
            base = segment.split(":")[0]
            if base not in segments and not base.startswith("cluster"):
                if r.loc.where((*path, "segment")).startswith(f"{DEFAULT_CONFIG}:"):
                    removal = _removed_segments(r, segments)
                    if removal is not None:  # the user's null, not this default, is wrong
                        raise removal
                raise r.error(
                    (*path, "segment"),
                    f"unknown segment{suggest(base, segments)}; "
                    f"known: {', '.join(sorted(segments))}",
                )
            trig = SegmentTrigger(**common, segment=segment, on=on)
        else:
            if not spec.get("events"):
                raise r.error((*path, "events"), "an event trigger needs the events it fires on")
            trig = EventTrigger(**common, events=frozenset(r.strings(*path, "events")))
        out.append(trig)
    return out


def _removed_segments(r: Reader, segments: set[str]) -> ConfigError | None:
    """The error of a user's ``null`` that removed segments a default trigger needs
    (``segments: null``, or one segment's), located at that ``null``, naming what it took
    away; None when no such removal explains a trigger's unknown segment."""
    needs: dict[str, dict[str, list[str]]] = {}  # removal's place -> segment -> triggers
    for name, spec in r.mapping("triggers").items():
        path = ("triggers", name, "segment")
        seg = spec.get("segment") if isinstance(spec, dict) else None
        if not isinstance(seg, str) or not r.loc.where(path).startswith(f"{DEFAULT_CONFIG}:"):
            continue
        base = seg.split(":")[0]
        if base in segments:
            continue
        for gone in (("segments", base), ("segments",)):
            if gone in r.loc.removed:
                needs.setdefault(".".join(gone), {}).setdefault(base, []).append(name)
                break
    if not needs:
        return None
    key, taken = next(iter(needs.items()))
    where = r.loc.removed[tuple(key.split("."))]
    segs = ", ".join(map(repr, taken))
    trigs = sorted({t for ts in taken.values() for t in ts})
    many = len(trigs) > 1
    return ConfigError(
        f"{where}: {key}: null removes segment{'s' if len(taken) > 1 else ''} {segs}, which "
        f"default trigger{'s' if many else ''} {', '.join(map(repr, trigs))} "
        f"need{'' if many else 's'}; keep {'them' if len(taken) > 1 else 'it'} or remove "
        f"the trigger{'s' if many else ''} too (triggers: "
        f"{{{', '.join(f'{t}: null' for t in trigs)}}})"
    )


def _caps(r: Reader, triggers: list[Trigger]) -> FrequencyCaps:
    actions = {t.action for t in triggers}
    limits = _per_action(r, ("caps", "per_action_per_day"), actions, lambda p: r.integer(*p))
    cool = _per_action(r, ("caps", "cooldown"), actions, lambda p: r.duration(*p))
    return FrequencyCaps(
        {k: int(v) for k, v in limits.items()}, r.integer("caps", "per_user_per_day"), cool
    )


def _per_action(
    r: Reader, path: tuple[str, ...], actions: set[str], read: Callable[[tuple[str, ...]], Any]
) -> dict[str, Any]:
    """A cap per action name (or ``default``); a single value is the default.

    A cap written for an action no trigger proposes is an error; one that comes
    from the bundled defaults is dropped, so removing a default trigger is enough.
    """
    val = r.get(*path)
    if val is None:
        return {}
    if not isinstance(val, dict):
        return {"default": read(path)}
    out = {}
    for key in val:
        if key != "default" and key not in actions:
            if r.loc.where((*path, key)).startswith(f"{DEFAULT_CONFIG}:"):
                continue
            raise r.error(
                (*path, key),
                f"no trigger proposes this action{suggest(key, actions)}; "
                f"actions: {', '.join(sorted(actions)) or 'none'} (or 'default')",
            )
        out[key] = read((*path, key))
    return out


def _unknown_events(r: Reader, reading: Validator) -> list[str]:
    """Warnings for trigger and experiment goal event names the taxonomy does not know
    (likely typos: an event read under another name never matches them). ``reading``:
    names as ingest reads them (its taxonomy's)."""
    out = []
    known = reading.taxonomy.by_name
    lists: list[tuple[str, ...]] = []
    for name, spec in r.mapping("triggers").items():
        lists += [
            ("triggers", name, key) for key in ("start_on", "cancel_on", "events") if key in spec
        ]
    experiments = r.get("experiments")
    if isinstance(experiments, dict):  # checked whole by experiments.parse
        for name, spec in experiments.items():
            goal = spec.get("goal") if isinstance(spec, dict) else None
            if isinstance(goal, dict) and isinstance(goal.get("events"), list):
                lists.append(("experiments", str(name), "goal", "events"))
    if r.get("sessions", "conversion_events") is not None:
        lists.append(("sessions", "conversion_events"))
    for path in lists:
        names = r.strings(*path) if path[0] in ("triggers", "sessions") else r.get(*path)
        for ev in names:
            if not isinstance(ev, str):
                continue  # experiments.parse says what is wrong
            renamed = _renamed(r, path, ev, reading)
            if renamed is not None:
                out.append(renamed)
            elif ev not in known and not (
                path[0] == "triggers" and ev in (PAGE_EVENT, SCREEN_EVENT)
            ):  # a trigger hears every page or screen view under these (as rules do)
                out.append(
                    f"{r.loc.where(path)}: {'.'.join(path)}: event {ev!r} is not in the "
                    f"taxonomy{suggest(ev, known)}; add it under taxonomy: if it is "
                    f"real; got {ev!r}"
                )
    return out


def _renamed(r: Reader, path: tuple[str, ...], ev: str, reading: Validator) -> str | None:
    """A warning when events named ``ev`` are read under another name (so naming ``ev``
    never matches them): a retired v1 name, or a taxonomy name spelt otherwise."""
    read = reading.reads_as(ev)
    if read == ev:
        return None
    why = (
        "is Segment's retired v1 name"
        if V1_NAMES.get(ev) == read
        else f"is the taxonomy's {read!r} but for case, spaces or underscores"
    )
    return (
        f"{r.loc.where(path)}: {'.'.join(path)}: event {ev!r} {why}, and events so named "
        f"are read as {read!r} (a page or screen so named keeps its name): name that "
        f"instead; got {ev!r}"
    )


def _rule_events(
    r: Reader,
    reading: Validator,
    segments: list[SegmentRule],
    actions: list[tuple[tuple[str, ...], Rule]],
) -> list[str]:
    """Warnings for event names in rules (``count``, ``since``, ``sequence``) that never
    match: a name events are read under another name (``_renamed``), or one that is not in
    the taxonomy but close to a name that is (``'Product Veiwed'``: likely a typo; any
    other name may be a page's or screen's, or an event of the sender's own)."""
    known = reading.taxonomy.by_name
    rules = [(("segments", s.name, "when"), s.rule) for s in segments] + actions
    out = []
    for path, rule in rules:
        names = {n for tracker in rule.trackers for step in tracker.steps for n in step}
        for ev in sorted(names):
            renamed = _renamed(r, path, ev, reading)
            if renamed is not None:
                out.append(renamed)
                continue
            if ev in known:
                continue
            close = difflib.get_close_matches(ev, list(known), n=1, cutoff=0.8)
            if close:
                out.append(
                    f"{r.loc.where(path)}: {'.'.join(path)}: event {ev!r} is not in the "
                    f"taxonomy (did you mean {close[0]!r}?): the rule never counts events "
                    f"named {close[0]!r}; add {ev!r} under taxonomy: if it is real; got {ev!r}"
                )
    return out


def _rule_notes(
    r: Reader, segments: list[SegmentRule], actions: list[tuple[tuple[str, ...], Rule]]
) -> list[str]:
    """Warnings the rule compiler noted: parts of a rule that load but never match (a
    locale spelt otherwise than ingest writes it)."""
    rules = [(("segments", s.name, "when"), s.rule) for s in segments] + actions
    return [
        f"{r.loc.where(path)}: {'.'.join(path)}: {note}"
        for path, rule in rules
        for note in rule.notes
    ]


def _lapse_notes(
    r: Reader, segments: list[SegmentRule], actions: list[tuple[tuple[str, ...], Rule]]
) -> list[str]:
    """Warnings for lapse tests (``since(...) > D``, ``not active_within(D)``) with ``D``
    at or past ``state.history_window``: a user with no activity for that long and nothing
    pending is evicted (forgotten) first, so a lapsed user never reaches ``D``."""
    window = r.duration("state", "history_window", minimum=1.0)
    rules = [(("segments", s.name, "when"), s.rule) for s in segments] + actions
    out = []
    for path, rule in rules:
        for text, seconds, inactive in rule.lapses:
            if seconds < window:
                continue
            who = (
                "a user inactive that long"
                if inactive
                else "a user who lapsed (only one active otherwise since, or who never did it)"
            )
            out.append(
                f"{r.loc.where(path)}: {'.'.join(path)}: {text} waits at least "
                f"{_days(seconds)}, but a user with no activity for state.history_window "
                f"({_days(window)}) and no pending timer is evicted before that: it never "
                f"holds for {who}; raise state.history_window above {_days(seconds)} or "
                f"test a shorter lapse; got {text!r}"
            )
    return out


def _days(seconds: float) -> str:
    """A duration as a config writes it: ``60d``, ``36h``, ``90m`` or ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _unfilled_attachments(r: Reader, triggers: Any, models: ModelSettings) -> list[str]:
    """Warnings for triggers attaching recommendations that never come: the recommender
    is off (the payload's list is always empty), or ``n`` asks for more than a user keeps
    (``models.recommendations.n``: at most that many are sent)."""
    out = []
    reco = models.recommendations
    for trig in triggers:
        if not trig.recommendations:
            continue
        path = ("triggers", trig.name, "attach")
        if not (models.enabled and reco.enabled):
            off = "models.enabled" if not models.enabled else "models.recommendations.enabled"
            out.append(
                f"{r.loc.where(path)}: {'.'.join(path)}: attaches recommendations, but the "
                f"recommender is off ({off}: false): every payload's list is empty; got "
                f"{r.get(*path)!r}"
            )
        elif trig.n > reco.n:
            path = ("triggers", trig.name, "n")
            out.append(
                f"{r.loc.where(path)}: {'.'.join(path)}: asks for more recommendations than "
                f"a user keeps (models.recommendations.n: {reco.n}): at most {reco.n} are "
                f"sent; got {trig.n}"
            )
    return out


def _single_underscore(environ: dict[str, str]) -> list[str]:
    """Warnings for ``AUDIENCEFLOW_KAFKA_BROKERS``-like variables, which override nothing."""
    out = []
    for name in sorted(environ):
        rest = name[len(ENV_PREFIX) :].lower()
        if not name.startswith(ENV_PREFIX) or "__" in rest:
            continue
        section = next((s for s in sorted(SECTIONS) if rest.startswith(f"{s}_")), None)
        if section is not None:
            fixed = f"{ENV_PREFIX}{section.upper()}__{rest[len(section) + 1 :].upper()}"
            out.append(
                f"${name}: overrides no setting: sections and keys are separated by two "
                f"underscores (did you mean ${fixed}?)"
            )
    return out


__all__ = ["ConfigError", "Settings", "build"]
