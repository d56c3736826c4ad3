"""The processing stage's metrics and status, read from its counters when asked.

The counters are plain integers bumped on the hot path; Prometheus reads them only at scrape
time through :class:`ProcessCollector`, so a metric costs nothing per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from worker.process.runtime import EventProcessor

_HELP = {
    "events": "Envelopes read from the event topics",
    "evaluated": "Envelopes evaluated by the rules",
    "no_rule": "Envelopes of events no rule listens to",
    "echoes": "Echoes of zapflow's own sends, never evaluated",
    "duplicates": "Second deliveries of a gateway message that would have acted again, dropped",
    "errors": "Envelopes that failed to evaluate (logged with the event id)",
    "actions": "Action records produced for events",
    "forwarded": "Envelopes sent on to the repartition topic for rekeyed rules (one per key)",
    "rekeyed": "Envelopes read from the repartition topic",
    "timer_actions": "Action records produced by deadlines (for / resolve_when)",
    "emit_errors": "Action records that could not be produced (logged with the key)",
    "state_retries": "Events evaluated again because their state could not be written",
    "tick_errors": "Timer ticks that failed (logged with the partition)",
    "sweeps": "Passes begun over a partition's state (whole after a start, then in shares)",
    "reloads": "Rule bundles swapped in by a reload",
    "reload_failures": "Reloads refused because the new bundle has errors",
}


class ProcessCollector(Collector):
    """``zapflow_process_<counter>_total`` for each counter, and the bundle version in force."""

    def __init__(self, processor: EventProcessor) -> None:
        self.processor = processor

    def collect(self) -> Iterator[Any]:
        for name, value in asdict(self.processor.counters).items():
            family = CounterMetricFamily(f"zapflow_process_{name}", _HELP.get(name, name))
            family.add_metric([], value)
            yield family
        current = self.processor.watcher.current
        info = InfoMetricFamily("zapflow_rules_bundle", "The rule bundle in force")
        info.add_metric([], {"version": current.bundle.version})
        yield info
        rules = GaugeMetricFamily("zapflow_rules_loaded", "Rules in the bundle in force")
        rules.add_metric([], len(current.digests))
        yield rules


def status_section(processor: EventProcessor) -> dict[str, Any]:
    """What ``zapflow status`` shows for the processing stage."""
    current = processor.watcher.current
    return {
        "rules_version": current.bundle.version,
        "rules_directory": str(processor.watcher.directory),
        "rule_events": sorted(current.bundle.events),
        **asdict(processor.counters),
    }
