"""One WebSocket subscription to the gateway, kept alive forever.

The loop is ours rather than the websockets client's reconnecting iterator: that
iterator raises on a 401 (ending the subscription) and resets its backoff on every open,
so a gateway that accepts and drops at once would be hit in a tight loop. Here:

* a 401 on the handshake is an auth failure: logged once per state change, retried
  near the capped delay, never affecting other subscriptions;
* any other failure, and any connection that ends, waits a full-jitter delay from
  :mod:`worker.ingest.backoff`; only a connection that stayed up ``stable_after``
  resets the schedule;
* the handshakes of one instance's subscriptions take turns (a lock per instance), so
  an instance's 14 sockets open one after another rather than all at once;
* client pings find dead connections (CodeChat never pings, but answers pings);
* a subscription silent for ``resubscribe_after_silence`` is re-established
  make-before-break: CodeChat keeps only the newest socket per (instance, event) and
  never tells the old one, so a socket that someone else took over looks exactly like a
  quiet one. The new socket opens first, then the old one is closed, so no event falls
  into a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from worker.ingest.backoff import BackoffState, ReconnectPolicy
from worker.ingest.envelope import (
    FrameSource,
    KafkaRecord,
    Subscriber,
    frame_to_record,
    invalid_record,
)
from worker.ingest.ids import UlidGenerator
from worker.ingest.stats import SubscriptionState, SubscriptionStats
from worker.tasks import cancel_and_wait

log = logging.getLogger("zapflow.ingest")

#: WebSocket close code for a message over the client's size limit.
MESSAGE_TOO_BIG: Final = 1009

#: Numbers the handshakes this process completes, in the order the gateway registered them.
_HANDSHAKES: Final = itertools.count(1)


class StopRequested(Exception):
    """The subscription was stopped while it waited for its turn to connect."""


def subscription_url(gateway_url: str, event: str, token: str) -> str:
    """``ws://host/ws/events?event=E&token=T`` (contains the token: never log it)."""
    return f"{gateway_url}?{urlencode({'event': event, 'token': token})}"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed connection that cannot contain the URL (or token)."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


class Subscription:
    """The connect-read-reconnect loop of one (instance, event).

    Args:
        subscriber: the fixed envelope parts of this subscription.
        url: the full subscription URL, token included.
        sink: receives each record and its monotonic receive time; must not block.
        stats: this subscription's counters and state.
        handshake_lock: shared by the subscriptions of one instance.
        policy: reconnect delays.
        options: ``ping_interval``, ``ping_timeout``, ``open_timeout``,
            ``resubscribe_after_silence``, ``max_frame_bytes``.
        ids: the envelope id generator (shared by the process).
        rng: random numbers in [0, 1) for jitter.
    """

    def __init__(
        self,
        subscriber: Subscriber,
        url: str,
        sink: Callable[[KafkaRecord, float], None],
        stats: SubscriptionStats,
        *,
        handshake_lock: asyncio.Lock,
        policy: ReconnectPolicy,
        ping_interval: float,
        ping_timeout: float,
        open_timeout: float,
        resubscribe_after_silence: float,
        max_frame_bytes: int,
        ids: UlidGenerator,
        rng: Callable[[], float] = random.random,
        room: asyncio.Event | None = None,
    ) -> None:
        self.subscriber = subscriber
        #: Every line about this subscription carries its instance and event (JSON logs).
        self.log = logging.LoggerAdapter(
            log, {"instance": subscriber.instance, "event": subscriber.event}
        )
        self._url = url
        self._sink = sink
        self.stats = stats
        self._lock = handshake_lock
        self._policy = policy
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._silence = resubscribe_after_silence
        self._max_frame_bytes = max_frame_bytes
        self._ids = ids
        self._rng = rng
        #: Cleared while the producer is far behind: stop reading until it is set again.
        self._room = room
        self._backoff = BackoffState()
        self._current: ClientConnection | None = None
        self._replacement: ClientConnection | None = None
        self._last_frame_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        #: The number (among this process's handshakes) of this subscription's newest
        #: socket; 0 before the first. The gateway sends a key's events to its newest
        #: socket, so of two subscriptions of one key the higher number is the live one.
        self.opened = 0
        #: Waiting for its instance's turn to handshake, or handshaking.
        self.handshaking = False

    def __repr__(self) -> str:
        return f"Subscription({self.subscriber.instance!r}, {self.subscriber.event!r})"

    @property
    def name(self) -> str:
        return f"{self.subscriber.instance}/{self.subscriber.event}"

    # --- the loop ---------------------------------------------------------------
    async def run(self) -> None:
        """Connect, read, reconnect; returns after :meth:`stop` or when cancelled."""
        try:
            while not self._stopping:
                try:
                    ws = await self._connect_until_open()
                    if ws is None:
                        break
                    await self._read_until_closed(ws)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A bug or a failing sink must not end the subscription for good.
                    self.log.exception("%s: unexpected error; reconnecting", self.name)
                    await self._drop_connections()
                    self._backoff = self._backoff.after_failure()
                    self.stats.failures_in_a_row = self._backoff.failures
                    self.stats.state = SubscriptionState.BACKOFF
                    await self._sleep(self._policy.delay(self._backoff.failures, self._rng()))
        finally:
            self.stats.state = SubscriptionState.STOPPED
            for conn in (self._current, self._replacement):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close())

    async def _drop_connections(self) -> None:
        for conn in (self._current, self._replacement):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._current = self._replacement = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop without losing what the gateway already sent.

        Starts the closing handshake and lets the read loop go on: frames the gateway
        sent before it saw our close frame are still read and delivered, and ``run``
        returns once the connection has closed.
        """
        self._stopping = True
        self._wake.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for conn in (self._current, self._replacement):
            if conn is not None:
                self._closing.add(asyncio.get_running_loop().create_task(conn.close()))

    def wake(self) -> None:
        """Skip the current backoff wait (used when the operator asks to retry now)."""
        self._wake.set()

    async def _sleep(self, delay: float) -> None:
        if self._stopping:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _open(self) -> ClientConnection:
        self.handshaking = True
        try:
            ws = await self._handshake()
        finally:
            self.handshaking = False
        self.opened = next(_HANDSHAKES)
        return ws

    async def _handshake(self) -> ClientConnection:
        # Handshakes of one instance take turns.
        async with self._lock:
            if self._stopping:  # stopped while waiting for its turn
                raise StopRequested
            return await connect(
                self._url,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=2.0,
                # Frames over our limit must reach us to be reported as invalid; the
                # library's own limit only guards memory against absurd frames.
                max_size=max(4 * self._max_frame_bytes, 8 * 1024 * 1024),
                max_queue=64,
                # CodeChat's server (ws 8, perMessageDeflate off by default) never
                # compresses; not offering it saves ~50 KiB per connection.
                compression=None,
                proxy=None,
                user_agent_header="zapflow",
            )

    async def _connect_until_open(self) -> ClientConnection | None:
        stats = self.stats
        while not self._stopping:
            if stats.state != SubscriptionState.AUTH_FAILED:
                stats.state = SubscriptionState.CONNECTING
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except StopRequested:
                return None
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    await self._auth_failed()
                    continue
                await self._connect_failed(exc)
                continue
            except Exception as exc:
                await self._connect_failed(exc)
                continue
            if self.stopping:  # stop() came during the handshake
                await ws.close()
                return None
            if stats.state == SubscriptionState.AUTH_FAILED:
                self.log.info("%s: the gateway accepts the token again", self.name)
            stats.state = SubscriptionState.OPEN
            stats.connects += 1
            return ws
        return None

    async def _auth_failed(self) -> None:
        stats = self.stats
        stats.auth_failures += 1
        delay = self._policy.auth_delay(self._rng())
        if stats.state != SubscriptionState.AUTH_FAILED:
            # CodeChat answers every refusal with a bare 401: a bad or expired token,
            # an unknown event and a wrong path look the same.
            self.log.error(
                "%s: the gateway refused the token (HTTP 401); check the instance's token "
                "(or refresh it with PUT /instance/refreshToken); retrying every %.1fs",
                self.name,
                self._policy.max_delay,
            )
        stats.state = SubscriptionState.AUTH_FAILED
        stats.record_delay(delay)
        await self._sleep(delay)

    async def _connect_failed(self, exc: BaseException) -> None:
        stats = self.stats
        stats.connect_failures += 1
        if stats.state == SubscriptionState.AUTH_FAILED:
            self.log.info(
                "%s: no longer refused with 401 (now: %s)", self.name, describe_error(exc)
            )
        self._backoff = self._backoff.after_failure()
        stats.failures_in_a_row = self._backoff.failures
        delay = self._policy.delay(self._backoff.failures, self._rng())
        stats.state = SubscriptionState.BACKOFF
        stats.record_delay(delay)
        self.log.warning(
            "%s: cannot connect to the gateway (%s); retrying in %.2fs",
            self.name,
            describe_error(exc),
            delay,
        )
        await self._sleep(delay)

    async def _read_until_closed(self, ws: ClientConnection) -> None:
        """Read frames until the connection ends, then wait the backoff delay."""
        stats = self.stats
        opened_at = time.monotonic()
        watchdog: asyncio.Task[None] | None = None
        if self._silence > 0:
            watchdog = asyncio.get_running_loop().create_task(self._watch_silence())
        self._watchdog = watchdog
        closed_by: ConnectionClosed | None = None
        try:
            while True:
                closed_by = await self._read(ws)
                replacement = self._replacement
                if replacement is None:
                    break
                # make-before-break: the new socket is open, the old one has been read
                # to its end; carry on with the new one.
                self._replacement = None
                ws = replacement
        finally:
            if watchdog is not None:
                await cancel_and_wait(watchdog)
        self._current = None
        self._watchdog = None
        if self.stopping:
            return
        uptime = time.monotonic() - opened_at
        self._backoff = self._backoff.after_connection(uptime, self._policy)
        stats.failures_in_a_row = self._backoff.failures
        delay = self._policy.delay(self._backoff.failures, self._rng())
        stats.reconnects += 1
        stats.connection = None
        stats.state = SubscriptionState.BACKOFF
        stats.record_delay(delay)
        code = closed_by.rcvd.code if closed_by is not None and closed_by.rcvd else None
        self.log.warning(
            "%s: connection closed after %.1fs (%s); reconnecting in %.2fs",
            self.name,
            uptime,
            f"code {code}" if code is not None else "no close frame",
            delay,
        )
        await self._sleep(delay)

    async def _read(self, ws: ClientConnection) -> ConnectionClosed | None:
        """Deliver every frame of one connection; returns how it ended."""
        self._current = ws
        connection_id = self._ids.new(int(time.time() * 1000))
        self.stats.connection = connection_id
        self._last_frame_at = time.monotonic()
        seq = 0
        sub = self.subscriber
        sink = self._sink
        ids = self._ids
        stats = self.stats
        max_bytes = self._max_frame_bytes
        room = self._room
        try:
            while True:
                if room is not None and not room.is_set():
                    await room.wait()
                    self._last_frame_at = time.monotonic()  # paused, not silent
                frame = await ws.recv()
                now = time.monotonic()
                now_ms = int(time.time() * 1000)
                self._last_frame_at = now
                seq += 1
                record = frame_to_record(
                    sub,
                    frame,
                    source=FrameSource(connection_id, seq),
                    envelope_id=ids.new(now_ms),
                    received_at_ms=now_ms,
                    max_frame_bytes=max_bytes,
                )
                stats.frames += 1
                stats.last_frame_at = now_ms / 1000
                if record.topic == sub.invalid_topic:
                    stats.invalid_frames += 1
                sink(record, now)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
                self._too_big(connection_id, seq + 1, exc)
            return exc

    def _too_big(self, connection_id: str, seq: int, exc: ConnectionClosed) -> None:
        """A frame beyond even the library's limit: report it, its bytes are gone."""
        now_ms = int(time.time() * 1000)
        reason = exc.sent.reason if exc.sent is not None else ""
        record = invalid_record(
            self.subscriber,
            b"",
            f"frame too big for the connection ({reason}); the connection was closed",
            source=FrameSource(connection_id, seq),
            envelope_id=self._ids.new(now_ms),
            received_at_ms=now_ms,
            max_frame_bytes=self._max_frame_bytes,
        )
        self.stats.frames += 1
        self.stats.invalid_frames += 1
        self._sink(record, time.monotonic())

    async def _watch_silence(self) -> None:
        """Re-establish the subscription make-before-break after a silence."""
        while True:
            remaining = self._last_frame_at + self._silence - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            old = self._current
            try:
                new = await self._open()
            except asyncio.CancelledError:
                raise
            except StopRequested:
                return
            except Exception as exc:
                self.log.warning(
                    "%s: silent for %.0fs but a new connection failed (%s); keeping the old",
                    self.name,
                    self._silence,
                    describe_error(exc),
                )
                self._last_frame_at = time.monotonic()
                continue
            self.stats.resubscribes += 1
            self.stats.connects += 1
            self.log.info(
                "%s: silent for %.0fs; resubscribed on a new connection", self.name, self._silence
            )
            self._replacement = new
            self._last_frame_at = time.monotonic()
            if old is not None:
                # Ends the old connection's read loop, which then moves to the new one.
                await old.close()


def subscription_options(config: Any) -> dict[str, Any]:
    """The keyword options of :class:`Subscription` from an :class:`IngestConfig`."""
    return {
        "ping_interval": config.ping_interval,
        "ping_timeout": config.ping_timeout,
        "open_timeout": config.open_timeout,
        "resubscribe_after_silence": config.resubscribe_after_silence,
        "max_frame_bytes": config.max_frame_bytes,
    }
