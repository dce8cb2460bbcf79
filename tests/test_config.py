"""The one typed config: every section checked at load, one error format, typos caught.

Errors read ``FILE:LINE: key.path: reason; got VALUE`` (``$VARIABLE: ...`` for an
environment override); an unknown key anywhere suggests the closest known one.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import yaml

from audienceflow.flows.cli import main
from audienceflow.flows.testing import Clock, event, run
from audienceflow.models.vectors import USER_LABELS, user_vector
from audienceflow.operators.config import ConfigError
from audienceflow.operators.sections import USER_FEATURES
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rejected(cfg: Path | None = None, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.load(cfg, environ=env)
    return str(info.value)


# --- typos: one per section, from a file and from the environment ----------------

_EXP = "experiments:\n  t:\n    trigger: cart_abandonment\n"
_ARMS = "    arms:\n      a: {weight: 0.5}\n      b: {weight: 0.5}\n"

TYPOS = [
    # (yaml text, line, key path, suggestion)
    ("sesions:\n  timeout: 1h\n", 1, "sesions", "sessions"),
    ("time:\n  tik: 1m\n", 2, "time.tik", "tick"),
    ("sessions:\n  timout: 45m\n", 2, "sessions.timout", "timeout"),
    ("state:\n  shard: 2\n", 2, "state.shard", "shards"),
    ("privacy:\n  pii_feilds: [email]\n", 2, "privacy.pii_feilds", "pii_fields"),
    ("features:\n  affinity_halflife: 3d\n", 2, "features.affinity_halflife", "affinity_half_life"),
    (
        "segments:\n  vip:\n    when: sessions(24h) > 3\n    descripton: big spenders\n",
        4,
        "segments.vip.descripton",
        "description",
    ),
    (
        "triggers:\n  cart_abandonment:\n    cancel_onn: [Order Completed]\n",
        3,
        "triggers.cart_abandonment.cancel_onn",
        "cancel_on",
    ),
    ("caps:\n  per_user_per_dya: 4\n", 2, "caps.per_user_per_dya", "per_user_per_day"),
    ("models:\n  enabeld: false\n", 2, "models.enabeld", "enabled"),
    (
        "models:\n  clustering:\n    algoritm: kmeans\n",
        3,
        "models.clustering.algoritm",
        "algorithm",
    ),
    ("models:\n  drift:\n    detecter: adwin\n", 3, "models.drift.detecter", "detector"),
    ("kafka:\n  broker: h:9092\n", 2, "kafka.broker", "brokers"),
    ("kafka:\n  topics:\n    action: a.b\n", 3, "kafka.topics.action", "actions"),
    ("redis:\n  uri: redis://h:6379/0\n", 2, "redis.uri", "url"),
    (
        "recovery:\n  snapshot_intervall: 10s\n",
        2,
        "recovery.snapshot_intervall",
        "snapshot_interval",
    ),
    ("metrics:\n  prot: 9464\n", 2, "metrics.prot", "port"),
    # experiments: each of their mappings, the key's own line
    (
        _EXP + "    tuneing: 3\n" + _ARMS,
        4,
        "experiments.t.tuneing",
        "tuning",
    ),
    (
        _EXP + "    arms:\n      a: {weight: 0.5}\n      b:\n        wieght: 0.5\n",
        7,
        "experiments.t.arms.b.wieght",
        "weight",
    ),
    (
        _EXP + "    goal:\n      evnts: [x]\n" + _ARMS,
        5,
        "experiments.t.goal.evnts",
        "events",
    ),
    (
        _EXP + "    bandit:\n      flor: 0.1\n" + _ARMS,
        5,
        "experiments.t.bandit.flor",
        "floor",
    ),
    (
        "experiments:\n  global_control:\n    shar: 0.1\n",
        3,
        "experiments.global_control.shar",
        "share",
    ),
    (
        _EXP + "    arms:\n      a: {weight: 0.5}\n      b:\n        weight: 0.5\n"
        "        caps: {per_dya: 2}\n",
        8,
        "experiments.t.arms.b.caps.per_dya",
        "per_day",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "hint"), TYPOS, ids=[t[2] for t in TYPOS])
def test_an_unknown_key_in_any_section_names_file_line_and_the_closest_key(
    tmp_path: Path, text: str, line: int, key: str, hint: str
) -> None:
    cfg = write(tmp_path / "c.yaml", text)
    message = rejected(cfg)
    assert message.startswith(f"{cfg}:{line}: {key}: unknown "), message
    assert f"(did you mean {hint!r}?)" in message
    assert "; got " in message


def test_a_taxonomy_entry_must_map_to_a_category_name(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "taxonomy:\n  Quiz Taken: [engagement]\n")
    assert rejected(cfg) == (
        f"{cfg}:2: taxonomy.Quiz Taken: must map an event name to a category name; "
        "got ['engagement']"
    )


ENV_TYPOS = [
    ("AUDIENCEFLOW_KAFKA__BROKRS", "kafka.brokrs", "brokers"),
    ("AUDIENCEFLOW_KAFKA__TOPICS__ACTONS", "kafka.topics.actons", "actions"),
    ("AUDIENCEFLOW_SESSIONS__TIMOUT", "sessions.timout", "timeout"),
    ("AUDIENCEFLOW_TIME__IDLE_AFTR", "time.idle_aftr", "idle_after"),
    ("AUDIENCEFLOW_STATE__SHARD", "state.shard", "shards"),
    ("AUDIENCEFLOW_PRIVACY__PII_FEILDS", "privacy.pii_feilds", "pii_fields"),
    (
        "AUDIENCEFLOW_FEATURES__AFFINITY_HALFLIFE",
        "features.affinity_halflife",
        "affinity_half_life",
    ),
    ("AUDIENCEFLOW_CAPS__PER_USER_PER_DYA", "caps.per_user_per_dya", "per_user_per_day"),
    ("AUDIENCEFLOW_MODELS__CLUSTERING__SEEED", "models.clustering.seeed", "seed"),
    ("AUDIENCEFLOW_MODELS__INTENT__MODLE", "models.intent.modle", "model"),
    ("AUDIENCEFLOW_REDIS__URI", "redis.uri", "url"),
    ("AUDIENCEFLOW_RECOVERY__DIRR", "recovery.dirr", "dir"),
    ("AUDIENCEFLOW_METRICS__HOTS", "metrics.hots", "host"),
    ("AUDIENCEFLOW_KAFAK__BROKERS", "kafak", "kafka"),  # an unknown section: blame the variable
]


@pytest.mark.parametrize(("var", "key", "hint"), ENV_TYPOS, ids=[t[0] for t in ENV_TYPOS])
def test_an_unknown_key_from_the_environment_names_the_variable(
    var: str, key: str, hint: str
) -> None:
    message = rejected(**{var: "1"})
    assert message.startswith(f"${var}: {key}: unknown "), message
    assert f"(did you mean {hint!r}?)" in message


# --- the error format ------------------------------------------------------------------


def test_an_error_reads_file_line_key_reason_and_value(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "sessions:\n  timeout: 45m\n  max_length: soon\n")
    assert rejected(cfg) == (
        f"{cfg}:3: sessions.max_length: expected a non-negative duration such as "
        "'30s', '15m', '24h' or '7d'; got 'soon'"
    )


_ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # Nine short lines of aliases stand for 387 million values: check-config ran for
        # minutes building them, where it should refuse the file.
        (_ALIAS_BOMB, "more than 100000 values"),
        ("a: &a [*a]\n", "nested more than 64 levels deep"),  # an alias inside its anchor
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deep"),  # was a RecursionError
    ],
)
def test_a_file_that_expands_without_bound_is_a_config_error(
    tmp_path: Path, text: str, said: str
) -> None:
    cfg = write(tmp_path / "c.yaml", text)
    message = rejected(cfg)
    assert message.startswith(f"{cfg}") and said in message, message


_SEG = "    when: count('Product Viewed', 1h) >= 1\n"
_TRIG = "    type: event\n    events: [Signed Up]\n"


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        # Tags the safe loader builds nothing for stopped check-config with a traceback
        # (PyYAML's ConstructorError), where it should name the file and line.
        ('sessions:\n  timeout: !!python/object:os.system "echo"\n', 2, "remove the tag"),
        ("sessions:\n  timeout: !minutes 30\n", 2, "remove the tag"),
        ("sessions: !!python/name:os.system\n", 1, "remove the tag"),
        # A tag on a key, a mapping or a list was ignored (the key read as its text).
        ("sessions:\n  !!python/object:os.system timeout: 30m\n", 2, "a key may not carry a tag"),
        ("segments:\n  !!binary YWI=:\n" + _SEG, 2, "a key may not carry a tag"),
        ("sessions: !foo\n  timeout: 30m\n", 1, "a tag is not read here (!foo)"),
        ("triggers:\n  t:\n    events: !foo [Signed Up]\n    type: event\n", 3, "(!foo)"),
        ("triggers:\n  t:\n    events: !!set {Signed Up}\n    type: event\n", 3, "a tag is not"),
        # A list as a key was shown as PyYAML's node objects.
        ("? [a, b]\n: 1\n", 1, "a key must be a name, not a list or mapping"),
        # A NUL in a segment's name stopped check-config with "embedded null character";
        # a newline or an escape sequence passed, to be written into outputs and logs.
        ('segments:\n  "a\\x00b":\n' + _SEG, 2, "may not hold a control character (U+0000)"),
        ('segments:\n  "a\\nb":\n' + _SEG, 2, "may not hold a control character (U+000A)"),
        ('segments:\n  "\\e[31mred":\n' + _SEG, 2, "control character (U+001B)"),
        ('triggers:\n  "t\\u2028":\n' + _TRIG, 2, "control character (U+2028)"),
        ('segments:\n  "":\n' + _SEG, 2, "may not be empty"),
        ('triggers:\n  t:\n    action: "a\\tb"\n' + _TRIG, 3, "an action name may not hold"),
        # A lone surrogate passed check-config and stopped the replay at its first
        # output (UnicodeEncodeError).
        ('segments:\n  "s\\ud800":\n' + _SEG, 2, "a lone surrogate, U+D800"),
        ('triggers:\n  t:\n    action: "a\\udfff"\n' + _TRIG, 3, "a lone surrogate, U+DFFF"),
    ],
)
def test_a_tag_a_key_or_a_name_yaml_escapes_cannot_write_safely_is_a_config_error(
    tmp_path: Path, text: str, line: int, said: str
) -> None:
    cfg = write(tmp_path / "c.yaml", text)
    message = rejected(cfg)
    assert message.startswith(f"{cfg}:{line}: ") and said in message, message


def test_a_redis_ttl_redis_would_refuse_is_a_config_error() -> None:
    """Redis refuses an expiry past ~9e15 s ('invalid expire time'): check-config took
    '999999999999d' and the worker stopped at its first profile write, at every restart."""
    message = rejected(AUDIENCEFLOW_REDIS__TTL="999999999999d")
    assert message.startswith("$AUDIENCEFLOW_REDIS__TTL: redis.ttl: must be at most 36500d")
    assert Settings.load(environ={"AUDIENCEFLOW_REDIS__TTL": "36500d"}).redis.ttl == 36500 * 86400


def test_an_error_under_a_null_names_the_null_not_the_default_it_removed(tmp_path: Path) -> None:
    """``models.clustering: null`` leaves ``models.clustering.algorithm`` unset: the
    error named the bundled default file's line of that key, which the user never wrote."""
    cfg = write(tmp_path / "c.yaml", "models:\n  clustering: null\n")
    assert rejected(cfg).startswith(f"{cfg}:2: models.clustering.algorithm: must be one of")
    message = rejected(AUDIENCEFLOW_MODELS__CLUSTERING="null")
    assert message.startswith("$AUDIENCEFLOW_MODELS__CLUSTERING: models.clustering.algorithm:")


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        # DEL and the C1 controls (U+0085, a line break to some readers) are controls too.
        ('segments:\n  "a\\x7fb":\n' + _SEG, 2, "control character (U+007F)"),
        ('segments:\n  "a\\x85b":\n' + _SEG, 2, "control character (U+0085)"),
        # A lone surrogate in any text, not only in a name.
        ('triggers:\n  t:\n    payload: {m: "x\\ud800"}\n' + _TRIG, 3, "a lone surrogate"),
    ],
)
def test_a_control_in_a_name_or_a_lone_surrogate_in_any_text_is_a_config_error(
    tmp_path: Path, text: str, line: int, said: str
) -> None:
    cfg = write(tmp_path / "c.yaml", text)
    message = rejected(cfg)
    assert message.startswith(f"{cfg}:{line}: ") and said in message, message


def test_a_text_that_is_no_name_may_hold_line_breaks_in_any_script(tmp_path: Path) -> None:
    """Only names are refused a control character: a payload's text may run over lines."""
    cfg = write(
        tmp_path / "c.yaml",
        'triggers:\n  t:\n    payload: {m: "Grüße\\n\\tbye", n: "plain\\nascii"}\n' + _TRIG,
    )
    (t,) = [t for t in Settings.load(cfg).triggers if t.name == "t"]
    assert t.payload == {"m": "Grüße\n\tbye", "n": "plain\nascii"}


def test_the_environments_mappings_are_checked_key_and_value() -> None:
    var = "AUDIENCEFLOW_TRIGGERS__CART_ABANDONMENT__PAYLOAD"
    assert "a key may not hold a control character (U+0000)" in rejected(**{var: '{"a\\0": 1}'})
    assert "a lone surrogate, U+D800" in rejected(**{var: '{m: [ok, "x\\ud800"]}'})


def test_a_lone_surrogate_from_the_environment_is_a_config_error_naming_the_variable() -> None:
    message = rejected(AUDIENCEFLOW_TRIGGERS__CART_ABANDONMENT__ACTION='"x\\ud800"')
    assert message.startswith(
        "$AUDIENCEFLOW_TRIGGERS__CART_ABANDONMENT__ACTION: triggers.cart_abandonment.action: "
        "a text is not valid Unicode text (a lone surrogate, U+D800)"
    ), message


def test_a_name_may_hold_any_printable_text() -> None:
    s = Settings.load(
        environ={"AUDIENCEFLOW_SEGMENTS__FAN_DE_CAFÉ_☕": '{when: "sessions(24h) >= 1"}'}
    )
    assert "fan_de_café_☕" in {seg.name for seg in s.segments}


def test_an_env_error_reads_variable_key_reason_and_value() -> None:
    assert rejected(AUDIENCEFLOW_KAFKA__BROKERS="42") == (
        "$AUDIENCEFLOW_KAFKA__BROKERS: kafka.brokers: must be 'host:port', or a list or "
        "comma-separated string of them; got 42"
    )


def test_an_env_value_that_is_not_yaml_is_a_clear_error_naming_the_variable() -> None:
    message = rejected(AUDIENCEFLOW_KAFKA__BROKERS="[")
    assert message.startswith("$AUDIENCEFLOW_KAFKA__BROKERS: kafka.brokers: not a valid YAML value")
    assert message.endswith("; got '['")


def test_an_env_override_of_one_key_does_not_take_the_blame_for_its_section(
    tmp_path: Path,
) -> None:
    cfg = write(tmp_path / "c.yaml", "triggers:\n  nudge:\n    type: timer\n    after: 5m\n")
    message = rejected(cfg, AUDIENCEFLOW_TRIGGERS__NUDGE__ACTION="remind")
    assert message.startswith(f"{cfg}:2: triggers.nudge.start_on: a timer needs"), message


def test_env_values_are_parsed_as_yaml() -> None:
    s = Settings.load(
        environ={
            "AUDIENCEFLOW_KAFKA__BROKERS": "[a:1, b:2]",
            "AUDIENCEFLOW_KAFKA__TAIL": "false",
            "AUDIENCEFLOW_STATE__SHARDS": "3",
        }
    )
    assert (s.kafka.brokers, s.kafka.tail, s.shards) == ("a:1,b:2", False, 3)


@pytest.mark.parametrize("written", ["1e-2", "1.0e-2", ".1e-1", "10e-3", "1E-2"])
def test_a_number_in_exponent_form_is_a_number_as_in_yaml_1_2(tmp_path: Path, written: str) -> None:
    # PyYAML (YAML 1.1) reads 1e-2 and 1.0e-2 as text, and they were refused as "must be
    # a number"; YAML 1.2's core schema, like JSON, reads them as floats.
    cfg = write(tmp_path / "c.yaml", f"models:\n  intent:\n    learning_rate: {written}\n")
    from_file = Settings.load(cfg, environ={})
    from_env = Settings.load(environ={"AUDIENCEFLOW_MODELS__INTENT__LEARNING_RATE": written})
    assert from_file.models.learning_rate == from_env.models.learning_rate == 0.01


def test_text_written_as_a_plain_exponent_is_refused_with_the_way_to_quote_it(
    tmp_path: Path,
) -> None:
    # A topic named 2e5 written plain is now the number 200000.0: refused, saying to quote it.
    message = rejected(write(tmp_path / "c.yaml", "kafka:\n  topics:\n    actions: 2e5\n"))
    assert "kafka.topics.actions: must be a Kafka topic name" in message
    assert message.endswith("quote it to give text)"), message
    quoted = write(tmp_path / "q.yaml", "kafka:\n  topics:\n    actions: '2e5'\n")
    assert Settings.load(quoted, environ={}).kafka.topics.actions == "2e5"
    # A number refused as a number gets no such hint.
    assert not rejected(AUDIENCEFLOW_MODELS__CLUSTERING__K="1e3").endswith("give text)")
    # Nor an unknown key whose value is a number, nor a mapping of numbers refused for
    # a key in it: the error is about a key, and 0.5 is meant as a number.
    for text in (
        "models:\n  intent:\n    learning_rat: 0.01\n",
        "experiments:\n  t:\n    trigger: cart_abandonment\n    arms:\n"
        "      a: {weight: 0.5}\n      b: {wieght: 0.5}\n",
    ):
        message = rejected(write(tmp_path / "k.yaml", text))
        assert "unknown key" in message and "give text" not in message, message


def test_a_quoted_number_in_exponent_form_stays_text(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "models:\n  intent:\n    learning_rate: '1e-2'\n")
    assert "learning_rate: must be a number > 0; got '1e-2'" in rejected(cfg)


def test_a_variable_with_one_underscore_after_its_section_is_a_warning() -> None:
    s = Settings.load(
        environ={"AUDIENCEFLOW_KAFKA_BROKERS": "h:9092", "AUDIENCEFLOW_PII_SALT": "x"}
    )
    assert s.warnings == (
        "$AUDIENCEFLOW_KAFKA_BROKERS: overrides no setting: sections and keys are separated by "
        "two underscores (did you mean $AUDIENCEFLOW_KAFKA__BROKERS?)",
    )
    assert s.kafka.brokers == "127.0.0.1:9092"


def test_an_empty_key_in_a_variable_name_is_rejected() -> None:
    assert rejected(AUDIENCEFLOW_KAFKA____BROKERS="h:1").startswith(
        "$AUDIENCEFLOW_KAFKA____BROKERS: kafka..brokers: an empty key"
    )


def test_the_redis_password_is_not_shown_in_an_error() -> None:
    message = rejected(AUDIENCEFLOW_REDIS__URL="http://user:hunter2@h:6379")
    assert "hunter2" not in message
    assert message.endswith("got 'http://user:***@h:6379'")


# --- values checked at load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA__BROKERS": "localhost"}, "kafka.brokers: must be 'host:port'"),
        ({"KAFKA__BATCH_SIZE": "0"}, "kafka.batch_size: must be a whole number >= 1"),
        ({"KAFKA__TAIL": "sometimes"}, "kafka.tail: must be true or false"),
        ({"KAFKA__INPUT_TOPIC": "a/b"}, "kafka.input_topic: must be a Kafka topic name"),
        ({"KAFKA__TOPICS__ACTIONS": "two words"}, "kafka.topics.actions: must be a Kafka topic"),
        ({"KAFKA__ADD_CONFIG": "acks"}, "kafka.add_config: must be a mapping"),
        ({"KAFKA__PARTITION_CHECK": "500ms"}, "kafka.partition_check: must be 0s (never) or"),
        ({"KAFKA__PARTITION_CHECK": "2d"}, "kafka.partition_check: must be at most 1d"),
        (
            {"KAFKA__ADD_CONFIG": "{fetch.wait.max.ms: 10ms}"},
            "kafka.add_config.fetch.wait.max.ms: must be a whole number of milliseconds",
        ),
        (
            {"KAFKA__ADD_CONFIG": "{fetch.wait.max.ms: -1}"},
            "kafka.add_config.fetch.wait.max.ms: must be a whole number of milliseconds",
        ),
        (
            {"KAFKA__ADD_CONFIG": "{fetch.wait.max.ms: '\u00b2'}"},
            "kafka.add_config.fetch.wait.max.ms: must be a whole number of milliseconds",
        ),
        # The worker's own reading: aborted transactions' records are not events, and a
        # resume offset gone by retention re-reads what is left (neither silently skips).
        (
            {"KAFKA__ADD_CONFIG": "{isolation.level: read_uncommitted}"},
            "kafka.add_config.isolation.level: must be read_committed (the worker's own)",
        ),
        (
            {"KAFKA__ADD_CONFIG": "{auto.offset.reset: latest}"},
            "kafka.add_config.auto.offset.reset: must be earliest (the worker's own)",
        ),
        ({"REDIS__URL": "http://h:6379"}, "redis.url: must be a redis://"),
        ({"REDIS__TTL": "forever"}, "redis.ttl: expected a non-negative duration"),
        ({"REDIS__KEY_PREFIX": "''"}, "redis.key_prefix: must be a non-empty string"),
        # Without a final ':' a user id '~ids:u1' names u1's id set as its profile hash.
        ({"REDIS__KEY_PREFIX": "shop_"}, "redis.key_prefix: must end with ':'"),
        ({"RECOVERY__SNAPSHOT_INTERVAL": "0s"}, "recovery.snapshot_interval: must be at least"),
        ({"RECOVERY__PARTITIONS": "0"}, "recovery.partitions: must be a whole number >= 1"),
        ({"METRICS__PORT": "65536"}, "metrics.port: must be a whole number >= 1 and <= 65535"),
        ({"METRICS__HOST": "'a b'"}, "metrics.host: must be a host name or IP address"),
        ({"MODELS__CLUSTERING__K": "1"}, "models.clustering.k: must be a whole number >= 2; got 1"),
        ({"MODELS__CLUSTERING__ALGORITHM": "birch"}, "models.clustering.algorithm: must be one"),
        ({"MODELS__CLUSTERING__HALFLIFE": "0"}, "models.clustering.halflife: must be a number > 0"),
        ({"MODELS__CLUSTERING__WEIGHTS": "{shoe_size: 2}"}, "models.clustering.weights.shoe_size"),
        ({"MODELS__CLUSTERING__DBSTREAM": "{fading: 2}"}, "models.clustering.dbstream.fading"),
        ({"MODELS__INTENT__MODEL": "svm"}, "models.intent.model: must be one of logistic, tree"),
        ({"MODELS__INTENT__QUICK_VIEW_GAP": "soon"}, "models.intent.quick_view_gap: expected a"),
        ({"MODELS__DRIFT__DELTA": "-1"}, "models.drift.delta: must be a number > 0"),
        ({"MODELS__EVALUATION__TRUTH": "3"}, "models.evaluation.truth: must be a non-empty"),
        ({"MODELS__ENABLED": "yes please"}, "models.enabled: must be true or false"),
        ({"MODELS__EPOCH": "0.5s"}, "models.epoch: must be at least 1s"),
        ({"TIME__WATERMARK_QUORUM": "0"}, "time.watermark_quorum: must be a whole number >= 1"),
        # 100,000 shards (each with its engine and model replicas) took 16 GB for 3,000 lines.
        ({"STATE__SHARDS": "4097"}, "state.shards: must be a whole number >= 1 and <= 4096"),
        ({"TIME__WATERMARK_WINDOW": "3"}, "time.watermark_window: must be a whole number >= 4"),
        ({"TIME__ALIGN_WITHIN": "soon"}, "time.align_within: expected a non-negative"),
        ({"PRIVACY__SALT": "123"}, "privacy.salt: must be a string"),
        ({"PRIVACY__PII_MODE": "hsah"}, "privacy.pii_mode: must be one of hash, drop"),
    ],
)
def test_a_bad_value_in_any_section_is_rejected_at_load(env: dict[str, str], message: str) -> None:
    var = f"AUDIENCEFLOW_{next(iter(env))}"
    got = rejected(**{f"AUDIENCEFLOW_{k}": v for k, v in env.items()})
    assert got.startswith(f"${var}: {message}"), got


@pytest.mark.parametrize("wait", ["0", "10", "'10'", "900"])
def test_a_fetch_wait_in_whole_milliseconds_loads_as_librdkafka_reads_it(wait: str) -> None:
    env = {"AUDIENCEFLOW_KAFKA__ADD_CONFIG": f"{{fetch.wait.max.ms: {wait}}}"}
    got = Settings.load(None, environ=env).kafka.add_config["fetch.wait.max.ms"]
    assert str(got) == wait.strip("'")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auto.offset.reset", "earliest"),
        ("auto.offset.reset", "smallest"),  # librdkafka's older names for earliest
        ("auto.offset.reset", "beginning"),
        ("auto.offset.reset", "Earliest"),
        ("isolation.level", "read_committed"),
    ],
)
def test_the_workers_own_kafka_settings_load_in_any_spelling_librdkafka_reads_as_them(
    key: str, value: str
) -> None:
    # Configs written for older clients say auto.offset.reset: smallest, which librdkafka
    # reads as earliest: refusing it broke a config that asks for what the worker does.
    env = {"AUDIENCEFLOW_KAFKA__ADD_CONFIG": f"{{{key}: {value}}}"}
    assert Settings.load(None, environ=env).kafka.add_config[key] == value


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"MODELS__CLUSTERING__K": "2"}, True),
        ({"TIME__WATERMARK_WINDOW": "4"}, True),  # == quorum
        ({"TIME__WATERMARK_QUORUM": "5", "TIME__WATERMARK_WINDOW": "4"}, False),
        ({"MODELS__EPOCH": "1s"}, True),
        ({"METRICS__PORT": "65535"}, True),
        ({"METRICS__PORT": "0"}, False),
        ({"TIME__TICK": "10ms"}, True),
        ({"TIME__TICK": "9ms"}, False),
    ],
)
def test_the_bounds_are_where_the_message_says(env: dict[str, str], ok: bool) -> None:
    environ = {f"AUDIENCEFLOW_{k}": v for k, v in env.items()}
    if ok:
        Settings.load(environ=environ)
    else:
        with pytest.raises(ConfigError):
            Settings.load(environ=environ)


def test_the_new_time_and_model_keys_have_their_documented_defaults() -> None:
    s = Settings.load(environ={})
    assert (s.idle_after, s.align_within, s.watermark_quorum, s.watermark_window) == (
        10.0,
        600.0,
        4,
        32,
    )
    assert (s.models.epoch, s.metrics.host, s.redis.key_prefix) == (
        3600.0,
        "127.0.0.1",
        "af:profile:",
    )


def test_quiet_after_is_an_error_saying_it_was_renamed(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "time:\n  quiet_after: 5s\n")
    assert rejected(cfg) == f"{cfg}:2: time.quiet_after: was renamed to time.idle_after; got '5s'"


def test_kafka_broker_typo_is_an_error_not_the_default_broker(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "kafka:\n  broker: prod:9092\n")
    assert "(did you mean 'brokers'?)" in rejected(cfg)


def test_a_cap_for_an_action_no_trigger_proposes_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "caps:\n  cooldown:\n    cart_abandonmnt: 1h\n")
    assert rejected(cfg).startswith(
        f"{cfg}:3: caps.cooldown.cart_abandonmnt: no trigger proposes this action "
        "(did you mean 'cart_abandonment'?)"
    )


def test_removing_a_default_trigger_drops_its_default_caps(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "triggers:\n  cart_abandonment: null\n")
    caps = Settings.load(cfg, environ={}).caps
    assert "cart_abandonment" not in caps.per_action_per_day
    assert "cart_abandonment" not in caps.cooldown


@pytest.mark.timeout(30)
def test_segments_null_is_blamed_for_the_default_trigger_whose_segment_it_removed(
    tmp_path: Path,
) -> None:
    # The default trigger high_engagement_content needs the default segment
    # high_engagement; the user's null removed it. The error named the default config's
    # line ("unknown segment; known: "), not the user's file.
    cfg = write(tmp_path / "c.yaml", "models:\n  enabled: false\nsegments: null\n")
    assert rejected(cfg) == (
        f"{cfg}:3: segments: null removes segment 'high_engagement', which default trigger "
        "'high_engagement_content' needs; keep it or remove the trigger too (triggers: "
        "{high_engagement_content: null})"
    )
    one = write(
        tmp_path / "one.yaml", "segments:\n  recent_engager: null\n  high_engagement: null\n"
    )
    assert rejected(one).startswith(f"{one}:3: segments.high_engagement: null removes segment ")
    env = rejected(AUDIENCEFLOW_SEGMENTS__HIGH_ENGAGEMENT="null")
    assert env.startswith("$AUDIENCEFLOW_SEGMENTS__HIGH_ENGAGEMENT: segments.high_engagement: ")
    # Removing the trigger too is what the error says to do, and loads.
    both = write(
        tmp_path / "both.yaml", "segments: null\ntriggers:\n  high_engagement_content: null\n"
    )
    assert [t.name for t in Settings.load(both, environ={}).triggers] == ["cart_abandonment"]


@pytest.mark.timeout(30)
def test_a_users_trigger_on_a_segment_the_user_removed_is_blamed_on_the_trigger(
    tmp_path: Path,
) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "segments: null\ntriggers:\n  high_engagement_content: null\n"
        "  mine:\n    type: segment\n    segment: high_engagement\n",
    )
    assert rejected(cfg).startswith(f"{cfg}:6: triggers.mine.segment: unknown segment")


def test_a_trigger_action_names_what_caps_may_name(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "triggers:\n  promo:\n    type: event\n    events: [Signed Up]\n    action: welcome\n"
        "caps:\n  per_action_per_day: {welcome: 1}\n",
    )
    assert Settings.load(cfg, environ={}).caps.limit_for("welcome") == 1


def test_the_model_settings_are_built_at_load_not_at_the_first_event() -> None:
    s = Settings.load(environ={"AUDIENCEFLOW_MODELS__CLUSTERING__K": "3"})
    assert (s.models.k, s.models.enabled, s.models.quick_view_gap) == (3, True, 60.0)


def test_the_weighable_features_are_the_user_vector_features() -> None:
    assert set(USER_FEATURES) == set(USER_LABELS)
    vector = user_vector(UserState("u1", 0.0), 0.0, ("deals",))
    assert set(vector) - {"recency_hours"} == {*USER_FEATURES, "affinity_deals"} - {"recency_hours"}


def test_the_redis_key_prefix_default_is_written_once() -> None:
    literal = re.compile(r"[\"']af:profile:[\"']")
    hits = [
        str(p.relative_to(ROOT))
        for folder in ("flows", "operators", "models", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if literal.search(p.read_text())
    ]
    assert hits == []
    defaults = yaml.safe_load((ROOT / "flows" / "default_config.yaml").read_text())
    assert defaults["redis"]["key_prefix"] == "af:profile:"


# --- warnings: trigger events that can never occur ------------------------------------------


def test_a_trigger_event_missing_from_the_taxonomy_is_a_warning(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "triggers:\n  cart_abandonment:\n    start_on: [Product Aded]\n",
    )
    s = Settings.load(cfg, environ={})
    (warning,) = s.warnings
    assert warning.startswith(f"{cfg}:3: triggers.cart_abandonment.start_on: event 'Product Aded'")
    assert "(did you mean 'Product Added'?)" in warning


def test_a_trigger_naming_a_v1_event_says_which_name_those_events_are_read_as(
    tmp_path: Path,
) -> None:
    # Events named ``Completed Order`` (Segment's retired v1 spec) are read as ``Order
    # Completed``, so a trigger cancelled on the v1 name would never be cancelled.
    cfg = write(
        tmp_path / "c.yaml",
        "triggers:\n  cart_abandonment:\n    cancel_on: [Completed Order]\n",
    )
    (warning,) = Settings.load(cfg, environ={}).warnings
    assert warning == (
        f"{cfg}:3: triggers.cart_abandonment.cancel_on: event 'Completed Order' is Segment's "
        "retired v1 name, and events so named are read as 'Order Completed' (a page or "
        "screen so named keeps its name): name that instead; got 'Completed Order'"
    )
    # A taxonomy that names the v1 name keeps it as its own event: no warning.
    cfg.write_text(cfg.read_text() + "taxonomy:\n  Completed Order: conversion\n")
    assert Settings.load(cfg, environ={}).warnings == ()


@pytest.mark.parametrize(
    ("named", "why"),
    [
        ("Completed Order", "is Segment's retired v1 name"),
        (
            "order_completed",
            "is the taxonomy's 'Order Completed' but for case, spaces or underscores",
        ),
        (
            "orderCompleted",
            "is the taxonomy's 'Order Completed' but for case, spaces or underscores",
        ),
    ],
)
def test_a_rule_naming_an_event_read_under_another_name_is_warned(
    tmp_path: Path, named: str, why: str
) -> None:
    # Such events are read as ``Order Completed``: the segment would never fill.
    cfg = write(
        tmp_path / "c.yaml",
        f"segments:\n  buyer:\n    when: count('{named}', 1d) >= 1\n"
        f"  fine:\n    when: count('Order Completed', 1d) >= 1 or count('Home', 1d) >= 1\n",
    )
    (warning,) = Settings.load(cfg, environ={}).warnings
    assert warning == (
        f"{cfg}:3: segments.buyer.when: event {named!r} {why}, and events so named are read "
        f"as 'Order Completed' (a page or screen so named keeps its name): name that instead; "
        f"got {named!r}"
    )
    # The same in a trigger's own list, and in its `when`.
    cfg.write_text(
        f"triggers:\n  t:\n    type: event\n    events: ['{named}']\n"
        f"    when: since('{named}') < 1h\n"
    )
    warnings = Settings.load(cfg, environ={}).warnings
    assert [w.split(": event")[0] for w in warnings] == [
        f"{cfg}:4: triggers.t.events",
        f"{cfg}:5: triggers.t.when",
    ]


def test_a_rule_naming_an_event_close_to_a_taxonomy_name_is_warned(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "segments:\n  x:\n    when: sequence('Product Veiwed', 'Checkout', within=1h)\n",
    )
    (warning,) = Settings.load(cfg, environ={}).warnings
    assert warning.startswith(
        f"{cfg}:3: segments.x.when: event 'Product Veiwed' is not in the taxonomy (did you "
        "mean 'Product Viewed'?)"
    )
    # A name of the sender's own (a page's, a custom event's) is no mistake: no warning.
    cfg.write_text("taxonomy:\n  Product Veiwed: engagement\n" + cfg.read_text())
    assert Settings.load(cfg, environ={}).warnings == ()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("triggers:\n  cart_abandonment:\n    after: 15\n", "triggers.cart_abandonment.after"),
        ("sessions:\n  timeout: '30'\n", "sessions.timeout"),
        ("time:\n  tick: 0.5\n", "time.tick"),
    ],
)
def test_a_duration_without_its_unit_is_rejected(tmp_path: Path, text: str, where: str) -> None:
    # ``after: 15`` was read as 15 seconds, where its writer may have meant minutes.
    with pytest.raises(ConfigError) as err:
        Settings.load(write(tmp_path / "c.yaml", text), environ={})
    msg = str(err.value)
    assert f": {where}: a duration needs its unit (ms, s, m, h, d or w): write '" in msg
    assert msg.count("; got ") == 1


def test_a_duration_of_0_needs_no_unit(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "time:\n  allowed_lateness: 0\n")
    assert Settings.load(cfg, environ={}).lateness == 0.0
    env = {"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0"}
    assert Settings.load(environ=env).lateness == 0.0


def test_an_arms_duration_without_its_unit_is_rejected_once(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml", _EXP + _ARMS.replace("weight: 0.5}", "weight: 0.5, after: 20}", 1)
    )
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert "after: a duration needs its unit" in str(err.value)
    assert str(err.value).endswith("; got 20")


def test_a_rule_cut_at_its_comma_in_a_flow_mapping_is_told_to_be_quoted(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml", "segments: {multi: {when: distinct(properties.category, 7d) >= 3}}\n"
    )
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert "segments.multi.7d) >= 3: unknown key" in str(err.value)
    assert "the end of a rule cut at a comma, as YAML cuts a value in { }: quote the rule" in str(
        err.value
    )


def test_an_in_segment_of_no_segment_does_not_offer_the_segment_itself(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "segments:\n  mine:\n    when: in_segment('nope')\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert "in_segment('nope') names no segment; known: frequent_visitor," in str(err.value)
    assert "mine" not in str(err.value).split("known:")[1].split("; got")[0]


def test_a_lapse_test_at_or_past_the_history_window_is_warned(tmp_path: Path) -> None:
    # A user with no activity for state.history_window is evicted, so a win-back segment
    # on since('Order Completed') > 45d never held for a customer who went quiet.
    cfg = write(
        tmp_path / "c.yaml",
        "segments:\n"
        "  lapsed:\n    when: since('Order Completed') > 45d\n"
        "  gone:\n    when: sessions(90d) > 1 and not active_within(30d)\n"
        "  flipped:\n    when: not 30d > since('Product Viewed')\n"
        "  recent:\n    when: since('Order Completed') > 29d or since('Home') < 60d\n",
    )
    warnings = Settings.load(cfg, environ={}).warnings
    assert [w.split(": ")[1] for w in warnings] == [
        "segments.lapsed.when",
        "segments.gone.when",
        "segments.flipped.when",
    ]
    assert warnings[0] == (
        f"{cfg}:3: segments.lapsed.when: since('Order Completed') > 45d waits at least 45d, "
        "but a user with no activity for state.history_window (30d) and no pending timer "
        "is evicted before that: it never holds for a user who lapsed (only one active "
        "otherwise since, or who never did it); raise state.history_window above 45d or "
        "test a shorter lapse; got \"since('Order Completed') > 45d\""
    )
    assert "not active_within(30d) waits at least 30d" in warnings[1]
    assert "it never holds for a user inactive that long;" in warnings[1]
    assert "not 30d > since('Product Viewed') waits at least 30d" in warnings[2]
    longer = cfg.read_text() + "state:\n  history_window: 50d\n"
    assert Settings.load(write(cfg, longer), environ={}).warnings == ()


def test_a_rule_reading_a_mobile_advertising_id_is_rejected_by_default(tmp_path: Path) -> None:
    # It compared the IDFA, and the action's explanation wrote it out:
    # {"properties.advertisingId": "6D92078A-..."}.
    cfg = write(
        tmp_path / "c.yaml",
        "triggers:\n  adid:\n    type: event\n    events: [Application Opened]\n"
        "    when: properties.advertisingId != 'x'\n",
    )
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert "properties.advertisingId is named in privacy.pii_fields" in str(err.value)


def test_the_default_config_has_no_warnings() -> None:
    assert Settings.load(environ={}).warnings == ()


def test_a_taxonomy_entry_silences_the_warning(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "taxonomy:\n  Quiz Taken: engagement\n"
        "triggers:\n  quiz:\n    type: event\n    events: [Quiz Taken]\n",
    )
    assert Settings.load(cfg, environ={}).warnings == ()


def _sample(path: Path, names: list[str], gz: bool) -> Path:
    lines = [
        f'{{"type":"track","event":"{n}","userId":"u1","timestamp":"2026-01-01T00:00:00Z"}}'
        for n in names
    ]
    data = ("\n".join([*lines, "not json"]) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_check_config_sample_reports_trigger_events_never_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], gz: bool
) -> None:
    sample = _sample(tmp_path / ("s.jsonl.gz" if gz else "s.jsonl"), ["Product Added"], gz)
    cfg = write(tmp_path / "c.yaml", "models:\n  enabled: false\n")
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    err = capsys.readouterr().err
    # the default cart_abandonment starts on Product Added (seen) and is cancelled by an order
    assert "triggers.cart_abandonment.cancel_on: event 'Order Completed' never occurs" in err
    assert "'Product Added' never occurs" not in err


def test_check_config_sample_reports_rule_events_never_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _sample(tmp_path / "s.jsonl", ["Product Added"], False)
    cfg = write(
        tmp_path / "c.yaml",
        "models:\n  enabled: false\n"
        "segments:\n"
        "  typo:\n    when: count('Pricng', 24h) >= 3\n"
        "  fine:\n    when: count('Product Added', 1h) >= 2\n",
    )
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    err = capsys.readouterr().err
    assert "segments.typo.when: event 'Pricng' never occurs" in err
    assert "segments.fine.when" not in err


def test_check_config_sample_reads_event_names_as_the_replay_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sender's ``order_completed`` and the retired ``Completed Order`` are read as
    # ``Order Completed``: the sample has that event, and has no ``Completed Order``.
    sample = _sample(tmp_path / "s.jsonl", ["order_completed", "Completed Order"], False)
    cfg = write(
        tmp_path / "c.yaml",
        "models:\n  enabled: false\n"
        "segments:\n  buyer:\n    when: count('Order Completed', 1d) >= 1\n"
        "  v1:\n    when: count('Completed Order', 1d) >= 1\n",
    )
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    err = capsys.readouterr().err
    assert "'Order Completed' never occurs" not in err
    assert "segments.v1.when: event 'Completed Order' never occurs" in err


def test_check_config_prints_the_taxonomy_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.yaml", "triggers:\n  cart_abandonment:\n    start_on: Product Aded\n")
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "event 'Product Aded' is not in the taxonomy" in out.err
    assert out.out.endswith(", 1 warning)\n")  # one warning, not "1 warnings"
    assert " segments, " in out.out and " triggers, " in out.out  # the default config's several


def test_a_total_of_an_event_name_says_got_once_and_points_to_count(tmp_path: Path) -> None:
    rule = "total('Order Completed', 7d) > 9"
    cfg = write(tmp_path / "c.yaml", f'segments:\n  big:\n    when: "{rule}"\n')
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg, environ={})
    msg = str(exc.value)
    assert msg.count("got") == 1 and msg.endswith(f'; got "{rule}"')
    assert "'Order Completed' is not one (count('Order Completed', ...) counts events" in msg


def test_an_experiment_goal_event_the_taxonomy_does_not_know_is_a_warning_too(
    tmp_path: Path,
) -> None:
    # 'order completed' matched no event (they are read as 'Order Completed'): every arm
    # read 0 converters, and check-config said nothing.
    cfg = write(
        tmp_path / "c.yaml",
        _EXP + "    goal: {events: [order completed, Order Completed]}\n" + _ARMS,
    )
    (warning,) = Settings.load(cfg, environ={}).warnings
    assert warning.startswith(f"{cfg}:4: experiments.t.goal.events: event 'order completed'")
    assert "events so named are read as 'Order Completed' (a page or screen" in warning


# --- check-config catches what run would reject -------------------------------------------------

BAD_FOR_RUN = {
    "topic": "kafka:\n  topics:\n    actions: 'no spaces allowed'\n",
    "redis_url": "redis:\n  url: http://h:6379\n",
    "models": "models:\n  clustering:\n    k: 1\n",
    "brokers": "kafka:\n  brokers: 42\n",
    "metrics": "metrics:\n  port: 99999\n",
    "recovery": "recovery:\n  partitions: 0\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FOR_RUN))
def test_check_config_rejects_what_run_would_reject(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    cfg = write(tmp_path / "c.yaml", BAD_FOR_RUN[name])
    assert main(["check-config", str(cfg)]) == 2
    checked = capsys.readouterr().err
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == checked
    assert checked.startswith(f"config error: {cfg}:"), checked


# --- the PII salt ------------------------------------------------------------------------------


def _stream(path: Path) -> Path:
    path.write_text(
        '{"type":"page","name":"Home","userId":"u1","messageId":"m1",'
        '"timestamp":"2026-01-01T00:00:00Z"}\n'
    )
    return path


@pytest.mark.parametrize("command", ["replay", "run"])
def test_run_and_replay_refuse_to_hash_without_a_salt(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    monkeypatch.delenv("AUDIENCEFLOW_PII_SALT", raising=False)
    monkeypatch.delenv("AUDIENCEFLOW_PRIVACY__SALT", raising=False)
    args: list[str] = (
        ["run"] if command == "run" else ["replay", str(_stream(tmp_path / "i.jsonl"))]
    )
    args += ["--out", str(tmp_path / "out")] if command == "replay" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no salt is set" in err
    assert "$AUDIENCEFLOW_PII_SALT" in err
    assert "privacy.salt" in err
    assert not (tmp_path / "out").exists()


def test_replay_runs_with_the_salt_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    cfg = write(tmp_path / "c.yaml", "models:\n  enabled: false\n")
    stream = _stream(tmp_path / "i.jsonl")
    assert main(["replay", str(stream), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0


def test_replay_does_not_need_a_salt_when_pii_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDIENCEFLOW_PII_SALT", raising=False)
    cfg = write(tmp_path / "c.yaml", "privacy:\n  pii_mode: drop\nmodels:\n  enabled: false\n")
    stream = _stream(tmp_path / "i.jsonl")
    assert main(["replay", str(stream), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0


def test_the_salt_variable_wins_over_the_config_salt() -> None:
    demo = ROOT / "examples" / "demo.yaml"
    assert Settings.load(demo, environ={}).pii_salt != ""
    assert Settings.load(demo, environ={"AUDIENCEFLOW_PII_SALT": "s3"}).pii_salt == "s3"
    assert Settings.load(environ={}).pii_salt == ""  # loading itself never needs a salt


def test_the_demo_and_deploy_configs_load_without_warnings() -> None:
    for cfg in (ROOT / "examples" / "demo.yaml", ROOT / "deploy" / "config.yaml"):
        assert Settings.load(cfg, environ={}).warnings == (), cfg


@pytest.mark.parametrize(("value", "seconds"), [("0s", 0.0), ("1s", 1.0), ("1d", 86400.0)])
def test_the_partition_check_loads_at_its_bounds(value: str, seconds: float) -> None:
    env = {"AUDIENCEFLOW_KAFKA__PARTITION_CHECK": value}
    assert Settings.load(None, environ=env).kafka.partition_check == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "experiments:\n  global_control:\n    share: 0.7\n",
            "experiments.global_control.share: must be a number from 0 to 0.5; got 0.7",
        ),
        (_EXP + "    tuning: -1\n" + _ARMS, "experiments.t.tuning: must be a number"),
        (
            _EXP + "    bandit: {floor: 0.4}\n    arms:\n      a: {weight: 0.3}\n"
            "      b: {weight: 0.3}\n      c: {weight: 0.4}\n",
            "experiments.t.bandit.floor: each of the 3 arms kept at least 0.4 adds up",
        ),
        (
            _EXP + "    arms:\n      a: {weight: 0.5}\n      b: {weight: 0.7}\n",
            "experiments.t.arms: arm weights must sum to 1; they sum to 1.2",
        ),
    ],
)
def test_an_experiment_value_error_says_got_once_and_no_hint_about_quoting_numbers(
    tmp_path: Path, text: str, message: str
) -> None:
    got = rejected(write(tmp_path / "c.yaml", text))
    assert message in got, got
    assert got.count("; got ") == 1 and "quote it" not in got, got


@pytest.mark.parametrize(
    ("models", "attach", "warning"),
    [
        (
            "",
            "    attach: [cart, recommendations]\n",
            "triggers.cart_abandonment.attach: attaches recommendations, but the recommender "
            "is off (models.recommendations.enabled: false)",
        ),
        (
            "models:\n  enabled: false\n  recommendations: {enabled: true}\n",
            "    attach: [cart, recommendations]\n",
            "recommender is off (models.enabled: false)",
        ),
        (
            "models:\n  recommendations: {enabled: true, n: 4}\n",
            "    attach: [cart, recommendations]\n    n: 8\n",
            "triggers.cart_abandonment.n: asks for more recommendations than a user keeps "
            "(models.recommendations.n: 4): at most 4 are sent; got 8",
        ),
        ("models:\n  recommendations: {enabled: true, n: 4}\n", "    n: 8\n", None),
        (
            "models:\n  recommendations: {enabled: true, n: 4}\n",
            "    attach: [cart, recommendations]\n    n: 4\n",
            None,
        ),
    ],
)
def test_recommendations_a_trigger_attaches_but_never_gets_are_a_warning(
    tmp_path: Path, models: str, attach: str, warning: str | None
) -> None:
    # Attached with the recommender off, every cart e-mail carried "recommendations": [];
    # n above what a user keeps sent fewer. Both passed check-config with 0 warnings.
    cfg = write(tmp_path / "c.yaml", models + "triggers:\n  cart_abandonment:\n" + attach)
    found = Settings.load(cfg, environ={}).warnings
    if warning is None:
        assert found == ()
    else:
        (only,) = found
        assert warning in only, only


_DIGITS_400 = "9" * 400
_DIGITS_5000 = "9" * 5000


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # A date that does not exist (a YAML timestamp), anywhere in the file.
        ("segments:\n  x:\n    when: in_session\n    description: 2026-02-30\n",
         "c.yaml:4: segments.x.description: not a valid YAML value (day is out of range"),
        # An integer of more digits than Python converts.
        (f"sessions:\n  timeout: {_DIGITS_5000}\n",
         "c.yaml:2: sessions.timeout: not a valid YAML value (Exceeds the limit"),
        # An integer with no float, where a duration or a number is read.
        (f"sessions:\n  timeout: {_DIGITS_400}\n",
         "c.yaml:2: sessions.timeout: expected a non-negative duration"),
        (f"models:\n  intent:\n    learning_rate: {_DIGITS_400}\n",
         "c.yaml:3: models.intent.learning_rate: must be a number > 0"),
        # Not numbers a model can learn with (NaN passed every bound).
        ("models:\n  drift:\n    delta: .nan\n", "c.yaml:3: models.drift.delta: must be a number"),
        ("models:\n  drift:\n    delta: .inf\n", "c.yaml:3: models.drift.delta: must be a number"),
    ],
)  # fmt: skip
def test_a_value_python_cannot_build_or_convert_is_a_config_error_not_a_traceback(
    tmp_path: Path, text: str, needle: str
) -> None:
    message = rejected(write(tmp_path / "c.yaml", text))
    assert message.replace(f"{tmp_path}/", "").startswith(needle), message
    assert main(["check-config", str(tmp_path / "c.yaml")]) == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raw", ["2026-02-30", _DIGITS_5000])
def test_an_env_value_python_cannot_build_is_a_config_error_naming_the_variable(raw: str) -> None:
    message = rejected(AUDIENCEFLOW_SESSIONS__TIMEOUT=raw)
    assert message.startswith(
        "$AUDIENCEFLOW_SESSIONS__TIMEOUT: sessions.timeout: not a valid YAML value"
    ), message


@pytest.mark.timeout(60)
def test_a_whole_number_past_sys_maxsize_is_rejected_at_load(tmp_path: Path) -> None:
    """Accepted, ``time.watermark_window: 10**30`` stopped the replay when it built its
    first partition (OverflowError: a deque's bound), and
    ``models.recommendations.eval_window: 2**64`` at its end (the summary echoes it, and
    orjson writes no such integer). The largest accepted count runs."""
    big = "9" * 30
    message = rejected(write(tmp_path / "c.yaml", f"time:\n  watermark_window: {big}\n"))
    assert message.replace(f"{tmp_path}/", "") == (
        "c.yaml:2: time.watermark_window: must be a whole number >= 4 and <= "
        f"9223372036854775807; got {big}"
    )
    message = rejected(write(tmp_path / "c.yaml", f"time:\n  watermark_quorum: {2**63}\n"))
    assert "time.watermark_quorum: must be a whole number >= 1 and <= 9223372036854775807" in (
        message
    )
    top = {"watermark_window": 2**63 - 1}
    reco = {"enabled": True, "eval_window": 2**63 - 1}
    clock = Clock("2026-03-02T08:00:00Z")
    events = [event("ann", clock.now(), "Product Viewed", product_id="p1")]
    result = run(events, {"time": top, "models": {"recommendations": reco}})
    assert result.summary["counts"]["reconciled"]
