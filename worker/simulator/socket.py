"""The ``/ws/events`` handshake and the life of one accepted socket, as upstream has them.

CodeChat (``src/websocket/server.ts:79-122``) takes every HTTP upgrade on its port. It
answers any refusal -- wrong path (a trailing slash included), a missing ``event`` or
``token``, a token that is not JWT-shaped, an unknown event, a bad signature or an expired
token -- with the same bare ``HTTP/1.1 401 Unauthorized`` and no headers or body, then
destroys the TCP socket. It does not check that the instance exists or that ``apiName``
is right, and it never accepts the global apikey. Accepted sockets are never pinged
(pings from the client are answered) and whatever the client sends is ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import WSMsgType, web

from worker.events import ACCEPTED_EVENTS
from worker.simulator import tokens

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator

log = logging.getLogger(__name__)

SOCKET_PATH: Final = "/ws/events"
RAW_401: Final = b"HTTP/1.1 401 Unauthorized\r\n\r\n"
_ACCEPTED: Final = frozenset(ACCEPTED_EVENTS)
#: ``ws`` accepts client messages up to 100 MiB by default; they are ignored anyway.
_MAX_CLIENT_MESSAGE: Final = 100 * 1024 * 1024


def url_pathname(raw_path: str) -> str:
    """The path as ``new URL(req.url, base).pathname`` gives it upstream.

    Percent-escapes stay as sent (``/ws/%65vents`` is not ``/ws/events``) and ``.``/``..``
    segments are resolved (``/ws/./events`` is), per the WHATWG URL parser.
    """
    segments = raw_path.split("/")[1:] if raw_path.startswith("/") else raw_path.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment.lower() in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment.lower() in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


@dataclass(frozen=True)
class Refusal:
    """Why a handshake was refused (the client only ever sees the bare 401)."""

    reason: str


@dataclass(frozen=True)
class Admission:
    """A handshake that passes upstream's checks: the hub key it subscribes."""

    instance: str
    event: str


def check_handshake(
    path: str,
    *,
    event: str | None,
    token: str | None,
    secret: str,
    now: float,
    ignore_expiration: bool,
) -> Admission | Refusal:
    """Upstream's handshake checks in upstream's order. Pure."""
    if path != SOCKET_PATH:
        return Refusal(f"path {path!r} is not {SOCKET_PATH}")
    # URLSearchParams.get returns "" for "?event=", which upstream's `!event` refuses too.
    if not event or not token:
        return Refusal("missing event or token")
    if not tokens.looks_like_jwt(token):
        return Refusal("token is not a JWT")
    if event not in _ACCEPTED:
        return Refusal(f"unknown event {event!r}")
    try:
        claims = tokens.verify(token, secret, now, ignore_expiration)
    except tokens.InvalidToken as exc:
        return Refusal(str(exc))
    # The hub key is `${decode.instanceName}_${event}`; a token without instanceName gives
    # "undefined_<event>" upstream, a key no instance ever sends to.
    instance = claims.get("instanceName")
    return Admission(instance if isinstance(instance, str) else "undefined", event)


class RawUnauthorized(web.StreamResponse):
    """Writes upstream's bare 401 straight to the socket and closes it.

    aiohttp would add ``Content-Length``, ``Date`` and ``Server`` to any response it
    builds, so this response bypasses the HTTP writer entirely: the client receives
    exactly ``HTTP/1.1 401 Unauthorized\\r\\n\\r\\n`` and then the connection ends.
    """

    def __init__(self) -> None:
        super().__init__(status=401)

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(RAW_401)
            transport.close()
        # Tells aiohttp the peer is gone, so it writes nothing more and drops the connection.
        raise ConnectionResetError("websocket handshake refused")


def is_upgrade(request: web.Request) -> bool:
    """Whether Node would hand this request to the ``'upgrade'`` listener."""
    return "upgrade" in request.headers.get("Connection", "").lower() and bool(
        request.headers.get("Upgrade")
    )


async def handle_upgrade(sim: Simulator, request: web.Request) -> web.StreamResponse:
    """Refuse or accept one upgrade request; for an accepted one, run until it closes."""
    if sim.faults.take_refusal():
        log.info("socket handshake refused on purpose (refuse_handshakes fault)")
        return RawUnauthorized()
    verdict = check_handshake(
        url_pathname(request.rel_url.raw_path),
        event=request.query.get("event"),
        token=request.query.get("token"),
        secret=sim.secret,
        now=sim.clock(),
        ignore_expiration=sim.ignore_expiration,
    )
    if isinstance(verdict, Refusal):
        # The reason is for whoever runs the simulator; upstream tells the client nothing.
        log.info("socket handshake refused with 401: %s", verdict.reason)
        return RawUnauthorized()
    # Upstream's ws server runs with permessage-deflate off and never pings.
    ws = web.WebSocketResponse(
        autoping=False, compress=False, heartbeat=None, max_msg_size=_MAX_CLIENT_MESSAGE
    )
    transport = request.transport
    await ws.prepare(request)
    if transport is None:  # the client vanished during the handshake
        return ws
    replaced = sim.hub.live(verdict.instance, verdict.event)
    sub = sim.hub.subscribe(verdict.instance, verdict.event, transport, ws)
    log.info("socket %d subscribed to %s %s", sub.id, verdict.instance, verdict.event)
    if replaced is not None:
        log.info("socket %d replaced by socket %d; it stays open and starves", replaced.id, sub.id)
    sim.websockets[sub.id] = ws
    try:
        async for msg in ws:
            if msg.type is WSMsgType.PING and sim.faults.answer_pings:
                await ws.pong(msg.data)
            # Text, binary and pong frames from the client are ignored, as upstream has
            # no 'message' listener.
    finally:
        log.info("socket %d (%s %s) closed", sub.id, sub.instance, sub.event)
        sim.hub.closed(sub)
        sim.websockets.pop(sub.id, None)
    return ws
