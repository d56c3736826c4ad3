"""The status port answers /metrics, /healthz, /readyz and /status over real HTTP."""

from __future__ import annotations

import aiohttp
from prometheus_client import Counter

from worker.observability.server import Observability, StatusServer


async def test_endpoints_report_metrics_health_readiness_and_status() -> None:
    obs = Observability()
    events = Counter("zapflow_test_events", "Events seen.", registry=obs.registry)
    kafka_up = {"ok": False}
    obs.readiness["kafka"] = lambda: (
        kafka_up["ok"],
        "reachable" if kafka_up["ok"] else "no broker",
    )
    obs.status["ingest"] = lambda: {"subscriptions": 3}
    server = StatusServer(obs, port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            events.inc(5)
            async with http.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            assert resp.status == 200
            assert "zapflow_test_events_total 5.0" in text

            async with http.get(f"{server.url}/healthz") as resp:
                assert (resp.status, await resp.json()) == (200, {"status": "ok"})

            async with http.get(f"{server.url}/readyz") as resp:
                body = await resp.json()
            assert resp.status == 503
            assert body == {
                "ready": False,
                "checks": {"kafka": {"ok": False, "detail": "no broker"}},
            }

            kafka_up["ok"] = True
            async with http.get(f"{server.url}/readyz") as resp:
                assert resp.status == 200

            async with http.get(f"{server.url}/status") as resp:
                status = await resp.json()
            assert status["ingest"] == {"subscriptions": 3}
            assert status["ready"] is True
    finally:
        await server.stop()


async def test_a_failing_check_makes_the_process_not_ready() -> None:
    obs = Observability()

    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    obs.readiness["rules"] = broken
    ready, checks = obs.ready()
    assert not ready
    assert checks == {"rules": {"ok": False, "detail": "check failed: boom"}}
