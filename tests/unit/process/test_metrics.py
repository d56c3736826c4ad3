from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tests.unit.process.standin import StandInEngine, write_rules
from worker.process.metrics import ProcessCollector, status_section
from worker.process.reload import RulesWatcher
from worker.process.runtime import EventProcessor


def processor(tmp_path: Path) -> EventProcessor:
    write_rules(tmp_path, {"id": "a", "on": "messages.upsert"})
    engine = StandInEngine()
    return EventProcessor(RulesWatcher.start(tmp_path, engine), engine)


def test_counters_and_bundle_version_are_exported_at_scrape_time(tmp_path: Path) -> None:
    proc = processor(tmp_path)
    registry = CollectorRegistry()
    registry.register(ProcessCollector(proc))
    proc.counters.echoes += 3
    text = generate_latest(registry).decode()
    assert "zapflow_process_echoes_total 3.0" in text
    assert "zapflow_process_errors_total 0.0" in text
    version = proc.watcher.current.bundle.version
    assert f'zapflow_rules_bundle_info{{version="{version}"}} 1.0' in text
    assert "zapflow_rules_loaded 1.0" in text


def test_status_section_names_the_bundle_and_counts(tmp_path: Path) -> None:
    proc = processor(tmp_path)
    proc.counters.duplicates = 2
    section = status_section(proc)
    assert section["rules_version"] == proc.watcher.current.bundle.version
    assert section["rule_events"] == ["messages.upsert"]
    assert section["events"] == 0
    assert section["duplicates"] == 2
