from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest

from worker.actions.metrics import ActionsCollector
from worker.actions.stats import ExecutorStats


@dataclass
class FakeExecutor:
    stats: ExecutorStats = field(default_factory=ExecutorStats)
    pending: int = 3
    in_flight: int = 1


def test_counters_become_labelled_metrics():
    executor = FakeExecutor()
    executor.stats.performed["notify"] += 2
    executor.stats.dead_lettered[("http", False)] += 1
    executor.stats.retries["notify"] += 4
    executor.stats.duplicates_skipped = 5
    registry = CollectorRegistry()
    registry.register(ActionsCollector(executor))
    text = generate_latest(registry).decode()
    assert 'zapflow_actions_performed_total{kind="notify"} 2.0' in text
    assert 'zapflow_actions_dead_letters_total{kind="http",retriable="false"} 1.0' in text
    assert 'zapflow_actions_retries_total{kind="notify"} 4.0' in text
    assert "zapflow_actions_duplicates_skipped_total 5.0" in text
    assert "zapflow_actions_pending 3.0" in text
    assert "zapflow_actions_in_flight 1.0" in text
