"""SIGHUP under ``zapflow run``: instances added to the file start, rules are reloaded too."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.run.harness import start_worker


async def test_sighup_starts_the_subscriptions_of_an_added_instance_and_reloads_rules(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"reload-{time.time_ns() % 10**9}."
    worker = await start_worker(kafka_bootstrap, prefix, tmp_path, ("shop-a",))
    try:
        await worker.wait_ready()
        added = worker.sim.create_instance("shop-new")
        token_file = tmp_path / "shop-new.token"
        token_file.write_text(added.token)
        config = tmp_path / "zapflow.yaml"
        line = f"  - {{name: shop-new, token: '${{file:{token_file}}}'}}"
        config.write_text(config.read_text().replace("\nkafka:", f"\n{line}\nkafka:", 1))
        worker.proc.send_signal(signal.SIGHUP)

        async def new_instance_open() -> bool:
            rows = (await worker.status()).get("ingest", {}).get("subscriptions", [])
            mine = [r for r in rows if r["instance"] == "shop-new"]
            return len(mine) == 14 and all(r["state"] == "open" for r in mine)

        await wait_for(new_instance_open, 60, message="shop-new's 14 subscriptions open")
        message = worker.sim.factory("shop-new").received_text(time.time(), "Oi!")
        chat = str(message["keyRemoteJid"])
        assert await worker.sim.emit("shop-new", "messages.upsert", message)

        def replies() -> list[int]:
            return [
                c.status
                for c in worker.sim.rest_calls
                if c.instance == "shop-new"
                and "/message/sendText/" in c.path
                and isinstance(c.body, dict)
                and c.body.get("number") == chat
            ]

        await wait_for(lambda: replies() != [], 60, message="the reply on the added instance")
        assert replies() == [201]
        log = worker.log_path.read_text()
        assert "SIGHUP: reloading rules" in log
        assert "run: configuration reloaded from" in log
        assert "2 instances (1 added, 0 removed)" in log
    finally:
        code = await worker.stop()
        await worker.sim.stop()
        await worker.inbox.stop()
    assert code == 0, worker.log()
