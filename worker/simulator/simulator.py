"""The simulator: a CodeChat ``whatsapp-api`` 1.3.x look-alike on one HTTP port.

``Simulator`` is both the server (WebSocket ``/ws/events``, the gateway REST API and the
``/_sim/`` control API on one aiohttp port, as upstream serves socket and REST on
``SERVER_PORT``) and the in-process control surface tests drive directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from aiohttp import web

from worker.events import SENT_EVENTS
from worker.simulator import frames, ids, tokens
from worker.simulator.hub import Counters, Hub, SocketInfo, Subscriber
from worker.simulator.payloads import ParticipantsStyle, PayloadFactory, iso
from worker.tasks import cancel_and_wait

_SENT: Final = frozenset(SENT_EVENTS)
_CLOSE_GRACE: Final = 2.0


@dataclass(frozen=True)
class Instance:
    """A gateway instance and its current token."""

    name: str
    id: int
    token: str
    """HS256 JWT ``{instanceName, apiName, tokenId, iat, exp, sub}``."""
    token_id: str
    description: str | None
    created_at: str
    """ISO time, as the Prisma row carries it."""
    external_attributes: Any = None

    def row(self) -> dict[str, Any]:
        """The instance row as ``/instance/create`` and ``fetchInstances`` return it."""
        row: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "connectionStatus": "ONLINE",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }
        if self.external_attributes is not None:
            row["externalAttributes"] = self.external_attributes
        row["Auth"] = {"id": self.id, "token": self.token}
        return row


@dataclass(frozen=True)
class RestCall:
    """One call to the gateway REST API, as the simulator received and answered it."""

    method: str
    path: str
    instance: str | None
    """The ``:instanceName`` path segment, when the route has one."""
    query: dict[str, str]
    body: Any
    """The parsed JSON body; None when absent or not JSON."""
    status: int
    at: float
    """``time.time()`` when the call arrived."""
    response: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers, with ``Authorization`` and ``apikey`` values masked."""


class Faults:
    """Switchable misbehaviour of the socket server."""

    def __init__(self) -> None:
        self.refusals = 0
        self.answer_pings = True

    def take_refusal(self) -> bool:
        if self.refusals > 0:
            self.refusals -= 1
            return True
        return False


class Simulator:
    """A CodeChat gateway on ``host:port`` (0 = pick a free port).

    Args:
        secret: ``AUTHENTICATION_JWT_SECRET``, signs and verifies instance tokens.
        apikey: ``AUTHENTICATION_GLOBAL_AUTH_TOKEN``; None reproduces upstream's open-auth
            quirk (a request without an ``apikey`` header passes).
        seed: seeds every generated payload, so runs are reproducible.
        jwt_expires_in: ``AUTHENTICATION_JWT_EXPIRES_IN`` as upstream reads it: exactly
            "0" (the default) means tokens with ``exp == iat`` that are never checked;
            anything else means 3600 s (upstream's parsing quirk).
        participants_style: ``"v7"`` participant objects (1.3.x) or ``"v6"`` strings.
        clock: unix-seconds clock, for token expiry tests.
    """

    def __init__(
        self,
        *,
        secret: str = "sim-secret",
        apikey: str | None = "sim-apikey",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        jwt_expires_in: str | int = "0",
        participants_style: ParticipantsStyle = "v7",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.apikey = apikey
        self.host = host
        self.seed = seed
        self.expires_in = tokens.parse_expires_in(jwt_expires_in)
        self.participants_style: ParticipantsStyle = participants_style
        self.clock = clock
        self.hub = Hub()
        self.faults = Faults()
        self.rest_calls: list[RestCall] = []
        #: Numbers (digits or JIDs) the gateway's ``onWhatsApp`` check reports as missing.
        self.unknown_numbers: set[str] = set()
        self.websockets: dict[int, web.WebSocketResponse] = {}
        #: Current participants of each (instance, group JID) touched through REST.
        self.group_members: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._instances: dict[str, Instance] = {}
        self._factories: dict[str, PayloadFactory] = {}
        self._instance_ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.frame_serial = itertools.count(1)
        """Unique-id counter shared by load traffic (see ``frames.FrameTemplate``)."""

    # ------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._port

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}/ws/events"

    @property
    def ignore_expiration(self) -> bool:
        return self.expires_in == 0

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Bind the port and serve. With ``port=0`` the chosen port is in ``.port``."""
        from worker.simulator.server import build_app

        runner = web.AppRunner(
            build_app(self), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        await site.start()
        if self._port == 0:
            self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving: background traffic ends, every socket drops, the port closes."""
        await cancel_and_wait(*self._tasks)
        await self._shutdown()

    async def _shutdown(self) -> None:
        # A gateway that dies closes its TCP connections without a close frame.
        for sub in self.hub.subscribers():
            sub.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.hub.forget_all()
        self.websockets.clear()

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop and start again on the same port, like a gateway process restart.

        Sockets drop without a close frame and the in-memory hub is lost (clients must
        subscribe again); instances, tokens, counters and recorded calls survive, as
        upstream keeps them in its database. During ``downtime`` seconds connections are
        refused.
        """
        await self._shutdown()
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the simulator stops."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ instances
    def create_instance(
        self, name: str, description: str | None = None, external_attributes: Any = None
    ) -> Instance:
        """Create an instance with a fresh token.

        Raises:
            ValueError: the name is taken (upstream: ``400 "Instance already exists"``).
        """
        if name in self._instances:
            raise ValueError(f"Instance already exists: {name!r}")
        ident = next(self._instance_ids)
        now = self.clock()
        token_id = ids.ulid(int(now * 1000), self._rng)
        token, _ = tokens.mint(name, token_id, self.secret, int(now), self.expires_in)
        instance = Instance(
            name, ident, token, token_id, description, iso(now), external_attributes
        )
        self._instances[name] = instance
        self._factories[name] = PayloadFactory(
            name, ident, self.seed, participants_style=self.participants_style
        )
        return instance

    def refresh_token(self, name: str, old_token: str | None = None) -> Instance:
        """Give ``name`` a new token, as ``PUT /instance/refreshToken`` does.

        ``old_token`` (default: the current one) must verify, expired or not, and carry the
        stored ``tokenId``. The old token keeps working on the socket and on REST until its
        ``exp``: upstream never compares ``tokenId`` there.

        Raises:
            KeyError: unknown instance.
            tokens.InvalidToken: the old token does not verify or is not the current one.
        """
        current = self.instance(name)
        claims = tokens.verify(old_token or current.token, self.secret, self.clock(), True)
        if claims.get("tokenId") != current.token_id:
            raise tokens.InvalidToken("not the instance's current token")
        now = self.clock()
        token_id = ids.ulid(int(now * 1000), self._rng)
        token, _ = tokens.mint(name, token_id, self.secret, int(now), self.expires_in)
        refreshed = dataclasses.replace(current, token=token, token_id=token_id)
        self._instances[name] = refreshed
        return refreshed

    def instance(self, name: str) -> Instance:
        try:
            return self._instances[name]
        except KeyError:
            known = ", ".join(self._instances) or "none yet"
            raise KeyError(f"unknown instance {name!r} (instances: {known})") from None

    def has_instance(self, name: str) -> bool:
        return name in self._instances

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    def factory(self, name: str) -> PayloadFactory:
        """The payload generator of one instance (its seeded contacts and groups)."""
        self.instance(name)
        return self._factories[name]

    def token_for(
        self, name: str, issued_at: float | None = None, secret: str | None = None
    ) -> str:
        """Another token for ``name`` (not stored), e.g. one issued in the past to test
        expiry, or signed with another secret. The instance need not exist: upstream's
        socket never checks."""
        now = int(self.clock() if issued_at is None else issued_at)
        token_id = ids.ulid(now * 1000, self._rng)
        token, _ = tokens.mint(name, token_id, secret or self.secret, now, self.expires_in)
        return token

    def subscription_url(self, instance: str, event: str, token: str | None = None) -> str:
        """The socket URL for one (instance, event), with the instance's token."""
        token = token or self.instance(instance).token
        return f"{self.ws_url}?{urlencode({'event': event, 'token': token})}"

    # ------------------------------------------------------------ events
    def _check_sent(self, instance: str, event: str) -> None:
        self.instance(instance)
        if event not in _SENT:
            hint = " (it arrives as contacts.upsert)" if event == "contacts.update" else ""
            raise ValueError(
                f"the gateway never sends {event!r} over the socket{hint}; "
                f"sent events: {', '.join(SENT_EVENTS)}"
            )

    def generate(self, instance: str, event: str) -> Any:
        """A generated payload for ``event`` from ``instance``'s seeded world."""
        self._check_sent(instance, event)
        return self._factories[instance].generate(event, self.clock())

    def emit_nowait(self, instance: str, event: str, payload: Any = None) -> bool:
        """Send one event (``payload`` or a generated one) to the key's live subscriber.

        Returns True if it was written to a socket, False if dropped (nobody subscribed).
        """
        self._check_sent(instance, event)
        if payload is None:
            payload = self._factories[instance].generate(event, self.clock())
        return self.hub.deliver(instance, event, frames.json_frame(payload))

    async def emit(self, instance: str, event: str, payload: Any = None) -> bool:
        """``emit_nowait`` for async callers (the contract's spelling)."""
        return self.emit_nowait(instance, event, payload)

    def counters(self, instance: str | None = None, event: str | None = None) -> Counters:
        """Emitted, delivered and dropped events summed over the matching keys."""
        return self.hub.counters(instance, event)

    def sockets(self, instance: str, event: str) -> SocketInfo:
        return self.hub.sockets(instance, event)

    async def wait_subscribed(
        self,
        instance: str,
        events: str | Iterable[str],
        timeout: float = 10.0,  # noqa: ASYNC109 (the agreed API)
    ) -> None:
        """Wait until every (instance, event) has a live, open subscriber.

        Raises:
            TimeoutError: naming the keys still without one.
        """
        wanted = [events] if isinstance(events, str) else list(events)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            missing = [e for e in wanted if self.hub.live(instance, e) is None]
            if not missing:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(
                    f"no live subscriber after {timeout:g}s for instance {instance!r}, "
                    f"events: {', '.join(missing)}"
                )
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------ faults
    async def close_sockets(
        self, instance: str | None = None, event: str | None = None, code: int = 1001
    ) -> int:
        """Close every open socket (or those of one instance / event) with a close frame.

        Returns how many were closed. Starved sockets are closed too. A client that does
        not answer the close frame within ``_CLOSE_GRACE`` seconds has its connection
        dropped.
        """
        subs = self.hub.subscribers(instance, event)
        closing: dict[asyncio.Future[Any], Subscriber] = {}
        for sub in subs:
            ws = self.websockets.get(sub.id)
            if ws is None:
                sub.abort()
                continue
            closing[asyncio.ensure_future(ws.close(code=code, message=b"simulated close"))] = sub
        if closing:
            _, pending = await asyncio.wait(closing, timeout=_CLOSE_GRACE)
            for future in pending:
                future.cancel()
                closing[future].abort()
        return len(subs)

    def refuse_handshakes(self, n: int) -> None:
        """Answer the next ``n`` socket handshakes with the bare 401, whatever they carry."""
        self.faults.refusals = n

    async def send_raw(self, instance: str, event: str, data: str | bytes) -> bool:
        """Send ``data`` as is to the key's live subscriber: ``str`` as a text frame (e.g.
        something that is not JSON), ``bytes`` as a binary frame. Counted like any event."""
        frame = (
            frames.text_frame(data.encode()) if isinstance(data, str) else frames.binary_frame(data)
        )
        return self.hub.deliver(instance, event, frame)

    async def send_large(self, instance: str, event: str, size: int) -> bool:
        """Send a valid JSON payload of exactly ``size`` bytes (at least 64): a generated
        event of this kind with a ``padding`` field filled up to that size."""
        payload = self.generate(instance, event)
        wrapper = payload if isinstance(payload, dict) else {"items": payload}
        wrapper = {**wrapper, "padding": ""}
        base = len(orjson.dumps(wrapper))
        if size < base:
            raise ValueError(f"size {size} is below the smallest {event} payload ({base} bytes)")
        wrapper["padding"] = "x" * (size - base)
        return self.hub.deliver(instance, event, frames.json_frame(wrapper))

    def answer_pings(self, answer: bool) -> None:
        """Stop (False) or resume (True) answering client pings, like a hung peer."""
        self.faults.answer_pings = answer

    # ------------------------------------------------------------ traffic
    async def run_profile(
        self,
        instances: Iterable[str],
        *,
        rate: float | None = 2000.0,
        duration: float | None = None,
        count: int | None = None,
        mix: Mapping[str, float] | None = None,
        min_size: int = 0,
    ) -> Counters:
        """Emit generated traffic; see ``worker.simulator.traffic.Profile``.

        Returns the counters of what this run emitted.
        """
        from worker.simulator.traffic import Profile, run_profile

        profile = Profile.build(
            list(instances), rate=rate, duration=duration, count=count, mix=mix, min_size=min_size
        )
        return await run_profile(self, profile)
