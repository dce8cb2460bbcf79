"""The per-line guard: a raw line in, an Event, a DeadLetter or a Filtered out, never raising.

Validation and privacy run under it; whatever either raises on one line (a bug, a
value nobody foresaw) becomes an ``unprocessable`` dead letter naming the step and
the exception, and the stream goes on. The dead letter keeps a bounded, scrubbed
prefix of the line, so building it cannot fail the same way.

>>> from audienceflow.operators.privacy import Privacy
>>> from audienceflow.operators.validate import Taxonomy, Validator
>>> check_line(Validator(Taxonomy.default()), Privacy(("email",)), b"[" * 5000, "f:1").reason
'not_json'
>>> def boom(raw, position):
...     raise RuntimeError("bug")
>>> check_line(boom, Privacy(("email",)), b'{"userId":"a@b.io"}', "f:2").raw
'{"userId":"<email>"}'
"""

from __future__ import annotations

from collections.abc import Callable

from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event, Filtered
from audienceflow.operators.scrub import bounded_text

KEEP_ON_ERROR = 1024  # characters of a line an ``unprocessable`` dead letter keeps

Validate = Callable[[bytes | str, str], Event | DeadLetter]
Filter = Callable[[Event | DeadLetter], Event | DeadLetter | Filtered]  # a Privacy


def check_line(
    validator: Validate, privacy: Filter, raw: bytes | str, position: str
) -> Event | DeadLetter | Filtered:
    """Validate and privacy-filter one line; never raises."""
    try:
        checked = validator(raw, position)
    except Exception as exc:  # no single line may stop the stream
        return unprocessable("validate", exc, privacy, raw, position)
    try:
        return privacy(checked)
    except Exception as exc:
        return unprocessable("privacy", exc, privacy, raw, position)


def unprocessable(
    step: str, exc: Exception, privacy: Filter, raw: bytes | str, position: str
) -> Event | DeadLetter | Filtered:
    """The dead letter of a line on which ``step`` raised ``exc``."""
    detail = f"step '{step}': {type(exc).__name__}: {exc}"
    dead = DeadLetter(
        "unprocessable", detail, position, bounded_text(raw, KEEP_ON_ERROR), stage="ingest"
    )
    try:
        return privacy(dead)
    except Exception:  # the dead letter is already pattern-scrubbed
        return dead


class IngestGuard:
    """``check_line`` bound to one validator and one privacy filter."""

    def __init__(self, validator: Validate, privacy: Privacy) -> None:
        self.validator = validator
        self.privacy = privacy

    def __call__(self, raw: bytes | str, position: str) -> Event | DeadLetter | Filtered:
        return check_line(self.validator, self.privacy, raw, position)
