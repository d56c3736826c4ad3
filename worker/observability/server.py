"""The HTTP port of a running zapflow process: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

- ``/metrics``: Prometheus text exposition of the process's own registry.
- ``/healthz``: 200 while the process is alive and its event loop answers.
- ``/readyz``: 200 when every readiness check passes (Kafka reachable, rules loaded,
  subscriptions past their first connect), else 503; the body lists each check.
- ``/status``: JSON for ``zapflow status``: what each stage reports about itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker.eventloop import in_use as event_loop_in_use

#: A readiness check returns whether it passes and a short human-readable detail.
ReadinessCheck = Callable[[], tuple[bool, str]]
#: A status section returns JSON-able data describing one stage.
StatusSection = Callable[[], Mapping[str, Any]]


@dataclass
class Observability:
    """What a process exposes: its metrics registry, readiness checks and status sections."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    status: dict[str, StatusSection] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def ready(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        results: dict[str, dict[str, Any]] = {}
        for name, check in self.readiness.items():
            try:
                ok, detail = check()
            except Exception as exc:  # a broken check means "not ready", with the reason
                ok, detail = False, f"check failed: {exc}"
            results[name] = {"ok": ok, "detail": detail}
        return all(r["ok"] for r in results.values()), results

    def snapshot(self) -> dict[str, Any]:
        sections: dict[str, Any] = {}
        for name, section in self.status.items():
            try:
                sections[name] = dict(section())
            except Exception as exc:
                sections[name] = {"error": str(exc)}
        ready, checks = self.ready()
        return {
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "event_loop": event_loop_in_use(),
            "ready": ready,
            "checks": checks,
            **sections,
        }


def build_app(obs: Observability) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(obs.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = obs.ready()
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(obs.snapshot(), dumps=_dumps)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    return app


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, default=str)


class StatusServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free one; see ``.port``)."""

    def __init__(self, obs: Observability, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.obs = obs
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.obs), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
