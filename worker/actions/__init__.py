"""The action executor: performs action records idempotently, with retries and send limits."""

from worker.actions.record import ACTION_KINDS, ActionRecord, InvalidActionRecord, dlq_value
from worker.actions.settings import ExecutorSettings, GatewaySettings

__all__ = [
    "ACTION_KINDS",
    "ActionRecord",
    "ExecutorSettings",
    "GatewaySettings",
    "InvalidActionRecord",
    "dlq_value",
]
