"""What every input partition of a source needs: its ingest and the process's alignment.

``make_ingest`` builds the ``PartitionIngest`` of one input partition (a file of a
replay, a Kafka partition) from the settings and its resumed clock.
``Alignment`` keeps the partitions a process reads within ``time.align_within`` of
event time of each other while catching up a backlog (like Flink's watermark
alignment): a partition whose watermark runs ahead of the slowest active one
pauses, so events held back at the shards, waiting for the slow partition, stay
bounded. It sees the partitions of this process only.
"""

from __future__ import annotations

import threading
from functools import partial

from audienceflow.operators.identity import is_blocked
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Validator
from audienceflow.operators.watermarks import NEG_INF, PartitionClock


def new_clock(settings: Settings) -> PartitionClock:
    return PartitionClock(
        lateness=settings.lateness,
        max_future=settings.max_future,
        quorum=settings.watermark_quorum,
        window=settings.watermark_window,
    )


def make_ingest(
    settings: Settings,
    name: str,
    clock: PartitionClock | None,
    live: bool,
    control: bool = False,
    home: int | None = None,
    out: str = OUT,
) -> PartitionIngest:
    """The ingest of partition ``name``, resuming ``clock`` when given; ``control``: its
    lines are data subjects' requests, not events; ``home``: its own shard, with
    ``state.placement: partition`` (``flows/placement.py``); ``out``: the key of what it
    dead-letters or filters (``operators.routing.out_key``), but for late or future
    events, whose dead letters go to their shard (``records.Rejected``)."""
    return PartitionIngest(
        name,
        Validator(
            settings.taxonomy, settings.consent_path, blocked=partial(is_blocked, settings.identity)
        ),
        Privacy(
            settings.pii_fields,
            settings.pii_mode,
            settings.pii_salt,
            settings.rule_traits,
            settings.rule_group_traits,
        ),
        settings.shards,
        settings.tick,
        clock if clock is not None else new_clock(settings),
        live=live,
        control=control,
        keys=settings.shard_keys,
        partitioner=settings.partitioner,
        home=home if settings.placement == "partition" else None,
        out=out,
        lead=settings.max_lead,
        max_ahead=settings.max_ahead_per_user,
        max_ahead_total=settings.max_ahead_total,
        dedup_window=settings.dedup_window,
        blocked=partial(is_blocked, settings.identity) if settings.identity.enabled else None,
    )


class Alignment:
    """Event-time bases of the partitions read by this process; see the module docstring."""

    def __init__(self, within: float) -> None:
        self.within = within
        self.bases: dict[str, float] = {}
        self.idle: dict[str, bool] = {}
        self.lock = threading.Lock()  # worker threads of one process share it

    def report(self, name: str, base: float, idle: bool) -> None:
        """``idle``: the partition holds no one back (idle; live, one with nothing to read
        right now still does until ``idle_after``, see ``kafka_io._InputPartition._quiet``)."""
        with self.lock:
            self.bases[name] = base
            self.idle[name] = idle

    def ahead(self, name: str) -> bool:
        """Whether ``name`` should pause: more than ``within`` ahead of the slowest peer.

        Peers without a watermark yet or idle ones do not hold anyone back.
        """
        with self.lock:
            mine = self.bases.get(name, NEG_INF)
            if mine == NEG_INF:
                return False
            peers = [
                b
                for p, b in self.bases.items()
                if p != name and not self.idle.get(p, False) and b > NEG_INF
            ]
        return bool(peers) and mine - min(peers) > self.within

    def spread(self) -> float:
        """Event time between the most and the least advanced active partitions."""
        with self.lock:
            active = [b for p, b in self.bases.items() if not self.idle.get(p) and b > NEG_INF]
        return max(active) - min(active) if len(active) > 1 else 0.0
