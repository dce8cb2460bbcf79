"""Drift watch: one River drift detector per watched signal, updated once per session.

Signals are named (``intent_error``: the absolute error of the recorded intent
score; ``event_mix``: the share of conversion-category events in a session).
``update`` returns the names whose detector fired on this value.

>>> w = DriftWatch(("s",), detector="adwin", delta=0.002)
>>> fired = [i for i in range(2000) if w.update("s", 0.0 if i < 1000 else 1.0)]
>>> len(fired) >= 1 and fired[0] >= 1000
True
"""

from __future__ import annotations

from typing import Any

from river import drift

from audienceflow.operators import native

# Its attributes in the order ``__init__`` sets them: a plain class's ``__dict__``, the state
# it pickles (``native.attrs_state``), the same from the compiled build's native class.
_ATTRS = ("signals", "detector", "delta", "threshold", "detectors", "fired", "seen")


class DriftWatch:
    """Detectors by signal name, with how often each fired."""

    def __new__(cls, *args: Any, **kwargs: Any) -> DriftWatch:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run ``__init__``, without arguments.
        return super().__new__(cls)

    def __init__(
        self,
        signals: tuple[str, ...],
        detector: str = "adwin",
        delta: float = 0.002,
        threshold: float = 50.0,
    ) -> None:
        self.signals = signals
        self.detector = detector
        self.delta = delta
        self.threshold = threshold
        self.detectors: dict[str, Any] = {s: self._new() for s in signals}
        self.fired: dict[str, int] = dict.fromkeys(signals, 0)
        self.seen: dict[str, int] = dict.fromkeys(signals, 0)

    def __getstate__(self) -> dict[str, Any]:
        return native.attrs_state(self, _ATTRS)

    def __setstate__(self, state: dict[str, Any]) -> None:
        native.set_attrs(self, state)

    def _new(self) -> Any:
        if self.detector == "adwin":
            return drift.ADWIN(delta=self.delta)  # type: ignore[no-untyped-call]
        if self.detector == "page_hinkley":
            return drift.PageHinkley(delta=self.delta, threshold=self.threshold)
        raise ValueError(f"unknown drift detector {self.detector!r}; known: adwin, page_hinkley")

    def update(self, signal: str, value: float) -> bool:
        """Feed one value; True when the detector of ``signal`` detects a drift."""
        det = self.detectors[signal]
        det.update(value)
        self.seen[signal] += 1
        if det.drift_detected:
            self.fired[signal] += 1
            return True
        return False

    def estimate(self, signal: str) -> float | None:
        """The detector's current estimate of the signal's mean, when it has one."""
        est = getattr(self.detectors[signal], "estimation", None)
        return None if est is None else float(est)

    def report(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "detected": dict(self.fired),
            "observed": dict(self.seen),
        }
