"""A local webhook receiver for ``zapflow dev``: alert channels point here, so alerts show up.

It accepts Slack-compatible incoming-webhook posts (``{"text": ...}``) and any other JSON
body on any path, and keeps the most recent ones.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Delivery:
    """One request the inbox received."""

    at: float
    path: str
    body: Any

    @property
    def text(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("text"), str):
            return str(self.body["text"])
        return json.dumps(self.body, ensure_ascii=False)


class AlertInbox:
    """Serves on 127.0.0.1 (port 0 = a free one) and records what it is sent."""

    def __init__(self, port: int = 0, keep: int = 200) -> None:
        self.port = port
        self.deliveries: deque[Delivery] = deque(maxlen=keep)
        self.total = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        self.deliveries.append(Delivery(time.time(), request.path, body))
        self.total += 1
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
