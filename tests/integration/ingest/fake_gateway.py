"""A minimal stand-in for the simulator's socket side, used until it is available.

Implements the subset of ``worker.simulator.Simulator`` the ingest tests use, with the
same semantics: one live socket per (instance, event), newest wins and the old one
stays open but starves; 401 for a bad token; events sent while nobody listens are
dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


@dataclass
class Instance:
    name: str
    token: str
    id: int


@dataclass
class Counters:
    emitted: int = 0
    delivered: int = 0
    dropped: int = 0


@dataclass
class SocketInfo:
    open: int
    live_id: int | None


class FakeGateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **_: Any) -> None:
        self.host = host
        self.port = port
        self._server: Server | None = None
        self._instances: dict[str, Instance] = {}
        self._by_token: dict[str, str] = {}
        self._live: dict[tuple[str, str], ServerConnection] = {}
        self._open: dict[tuple[str, str], set[ServerConnection]] = {}
        self._counters: dict[tuple[str, str], Counters] = {}
        self._ids = itertools.count(1)
        self._refuse = 0

    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._check,
            ping_interval=None,
            max_size=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/events"

    def create_instance(self, name: str) -> Instance:
        inst = Instance(name, f"tok-{name}-{next(self._ids)}", len(self._instances) + 1)
        self._instances[name] = inst
        self._by_token[inst.token] = name
        return inst

    def subscription_url(self, instance: str, event: str) -> str:
        token = self._instances[instance].token
        return f"{self.ws_url}?{urlencode({'event': event, 'token': token})}"

    def refuse_handshakes(self, n: int) -> None:
        self._refuse += n

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        token = query.get("token", [""])[0]
        if self._refuse:
            self._refuse -= 1
            return Response(503, "Service Unavailable", Headers())
        if parts.path != "/ws/events" or token not in self._by_token or "event" not in query:
            return Response(401, "Unauthorized", Headers())
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        query = parse_qs(urlsplit(conn.request.path).query)  # type: ignore[union-attr]
        key = (self._by_token[query["token"][0]], query["event"][0])
        self._live[key] = conn
        self._open.setdefault(key, set()).add(conn)
        try:
            await conn.wait_closed()
        finally:
            self._open[key].discard(conn)

    async def emit(self, instance: str, event: str, payload: Any = None) -> bool:
        counters = self._counters.setdefault((instance, event), Counters())
        counters.emitted += 1
        conn = self._live.get((instance, event))
        if payload is None:
            payload = {"keyId": f"K{counters.emitted}", "keyRemoteJid": "55@s.whatsapp.net"}
        if conn is None or conn.state.name != "OPEN":
            counters.dropped += 1
            return False
        await conn.send(orjson.dumps(payload).decode())
        counters.delivered += 1
        return True

    async def send_raw(self, instance: str, event: str, data: str | bytes) -> None:
        conn = self._live[(instance, event)]
        await conn.send(data)

    def counters(self, instance: str | None = None, event: str | None = None) -> Counters:
        total = Counters()
        for (i, e), c in self._counters.items():
            if (instance is None or i == instance) and (event is None or e == event):
                total.emitted += c.emitted
                total.delivered += c.delivered
                total.dropped += c.dropped
        return total

    def sockets(self, instance: str, event: str) -> SocketInfo:
        live = self._live.get((instance, event))
        open_ = self._open.get((instance, event), set())
        return SocketInfo(len(open_), id(live) if live in open_ else None)

    async def wait_subscribed(self, instance: str, events: Any, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        names = [events] if isinstance(events, str) else list(events)
        while any(self.sockets(instance, e).live_id is None for e in names):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{instance} not subscribed to all of {names}")
            await asyncio.sleep(0.02)

    async def close_sockets(self, instance: str | None = None, event: str | None = None) -> None:
        for (i, e), conns in list(self._open.items()):
            if (instance is None or i == instance) and (event is None or e == event):
                for conn in list(conns):
                    await conn.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
