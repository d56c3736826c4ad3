"""``zapflow run`` against a cluster that wants SASL credentials: every stage sends them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.helpers import run_cli, wait_for
from tests.integration.run.harness import start_worker
from worker.devkafka.broker import KafkaBroker

SECURITY = (
    "{protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN, sasl_username: zapflow, "
    "sasl_password: '${env:RUN_TEST_KAFKA_PASSWORD}'}"
)


async def test_all_stages_work_against_a_sasl_cluster(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka", sasl_users={"zapflow": "zapflow-secret"})
    await asyncio.to_thread(broker.start)
    prefix = f"sasl-{time.time_ns() % 10**9}."
    worker = await start_worker(
        broker.bootstrap_servers,
        prefix,
        tmp_path / "worker",
        ("shop-s",),
        kafka_security=SECURITY,
        env={"RUN_TEST_KAFKA_PASSWORD": "zapflow-secret"},
    )
    try:
        await worker.wait_ready(timeout=120)
        message = worker.sim.factory("shop-s").received_text(time.time(), "Oi!")
        chat = str(message["keyRemoteJid"])
        assert await worker.sim.emit("shop-s", "messages.upsert", message)

        def replies() -> list[int]:
            return [
                c.status
                for c in worker.sim.rest_calls
                if "/message/sendText/" in c.path
                and isinstance(c.body, dict)
                and c.body.get("number") == chat
            ]

        # Ingest produced the event, the rule stage the action record, and the executor wrote
        # its claim (with its own producer) before calling the gateway: each of them through
        # a SASL connection, since the broker takes no other.
        await wait_for(lambda: replies() != [], 90, message="the reply through a SASL cluster")
        assert replies() == [201]
        assert "Authentication failed" not in worker.log_path.read_text()

        # zapflow tail reads the same kafka section, credentials included.
        secret = tmp_path / "kafka-password"
        secret.write_text("zapflow-secret")
        tail_config = tmp_path / "tail.yaml"
        tail_config.write_text(
            f"kafka:\n  bootstrap_servers: {broker.bootstrap_servers}\n  topic_prefix: {prefix}\n"
            "  security: {protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN, "
            f"sasl_username: zapflow, sasl_password: '${{file:{secret}}}'}}\n"
        )
        code, out, err = await run_cli(
            "tail", "--config", str(tail_config), "actions", "--since", "1h", "--limit", "1"
        )
        assert code == 0, err
        assert "whatsapp.send_text" in out, out
        assert await worker.stop() == 0, worker.log()
    finally:
        await worker.stop()
        await worker.sim.stop()
        await worker.inbox.stop()
        await asyncio.to_thread(broker.stop)
