from __future__ import annotations

import json
import logging

import pytest

from worker.config import Secret
from worker.observability.logs import JsonFormatter, logging_config


def _record(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger], *args: object
) -> logging.LogRecord:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    base = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    handler = Keep()
    base.addHandler(handler)
    base.setLevel(logging.INFO)
    try:
        logger.warning(*args)  # type: ignore[arg-type]
    finally:
        base.removeHandler(handler)
    return records[0]


def test_json_lines_carry_the_subscription_context() -> None:
    adapter = logging.LoggerAdapter(
        logging.getLogger("zapflow.test"), {"instance": "shop-bot", "event": "messages.upsert"}
    )
    line = json.loads(
        JsonFormatter().format(_record(adapter, "%s: refused with 401", "shop-bot/messages.upsert"))
    )
    assert line["level"] == "warning"
    assert line["logger"] == "zapflow.test"
    assert line["message"] == "shop-bot/messages.upsert: refused with 401"
    assert (line["instance"], line["event"]) == ("shop-bot", "messages.upsert")
    assert line["time"].endswith("+00:00")


def test_secrets_in_log_arguments_stay_hidden() -> None:
    secret = Secret("eyJhbGciOiJIUzI1NiJ9.payload.signature", "${env:SHOP_TOKEN}")
    text = JsonFormatter().format(_record(logging.getLogger("zapflow.test2"), "token %s", secret))
    assert "eyJhbGci" not in text
    assert "${env:SHOP_TOKEN}" in text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logging_config_is_accepted_by_dictconfig(fmt: str) -> None:
    import logging.config

    before = logging.getLogger().handlers[:]
    try:
        logging.config.dictConfig(logging_config(fmt, "info"))
        assert logging.getLogger("aiokafka").level == logging.CRITICAL
    finally:
        logging.getLogger().handlers[:] = before


async def test_executor_log_lines_carry_the_idempotency_key_of_their_task() -> None:
    import asyncio

    from worker.actions import executor

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    executor.log.addHandler(handler)
    executor.log.setLevel(logging.INFO)

    async def work(key: str) -> None:
        executor._current_key.set(key)
        executor.log.info("action %s done", key)

    try:
        await asyncio.gather(
            asyncio.create_task(work("r:e1:0:-:fire")), asyncio.create_task(work("r:e2:0:-:fire"))
        )
        executor.log.info("not about one action")
    finally:
        executor.log.removeHandler(handler)
    keys = [getattr(r, "idempotency_key", None) for r in seen]
    assert keys == ["r:e1:0:-:fire", "r:e2:0:-:fire", None]
    assert json.loads(JsonFormatter().format(seen[0]))["idempotency_key"] == "r:e1:0:-:fire"
