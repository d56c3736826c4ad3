"""The socket hub: one live subscriber per (instance, event), as CodeChat keeps it.

Upstream (``src/websocket/server.ts:51-77``) stores subscribers in a ``Map`` keyed
``<instanceName>_<event>`` and calls ``hub.set(key, ws)`` on every connection: the newest
socket wins, the previous one is neither closed nor told, and it simply never receives
again (silent starvation). Nothing removes an entry when its socket closes, and ``send``
on a closed socket drops the data without a word. Events for a key with no subscriber are
dropped. The hub reproduces all of that and counts what happened to every event.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

Key = tuple[str, str]
"""(instance name, event name)."""

#: A subscriber whose unsent backlog exceeds this is treated as gone. Upstream's ``ws``
#: buffers without limit (no ``bufferedAmount`` check); the simulator departs from that so a
#: stalled test client cannot make it grow until the machine runs out of memory.
MAX_BACKLOG_BYTES: Final = 256 * 1024 * 1024


class Transport(Protocol):
    """The part of ``asyncio.Transport`` the hub writes frames through."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


class Session(Protocol):
    """The WebSocket session over a transport; ``closed`` once a close frame went out.

    Upstream's ``ws`` drops sends on a CLOSING socket; writing a frame after our own close
    frame would also break the protocol, so the hub checks this before every write.
    """

    @property
    def closed(self) -> bool: ...


@dataclass(frozen=True)
class Counters:
    """What happened to the events emitted for some set of keys."""

    emitted: int = 0
    """Events the gateway tried to send."""
    delivered: int = 0
    """Events written to the live subscriber's socket."""
    dropped: int = 0
    """Events thrown away: no subscriber, or the live one had closed (upstream's silence)."""


@dataclass(frozen=True)
class SocketInfo:
    """The sockets of one key."""

    open: int
    """Sockets still open, starved ones included."""
    live_id: int | None
    """Id of the socket the hub sends to, or None when there is none or it has closed."""


class _Count:
    __slots__ = ("delivered", "dropped", "emitted")

    def __init__(self) -> None:
        self.emitted = 0
        self.delivered = 0
        self.dropped = 0


class Subscriber:
    """One accepted socket: where its frames go and what it subscribed to."""

    __slots__ = ("closed", "event", "id", "instance", "session", "transport")

    def __init__(
        self,
        ident: int,
        instance: str,
        event: str,
        transport: Transport,
        session: Session | None = None,
    ) -> None:
        self.id = ident
        self.instance = instance
        self.event = event
        self.transport = transport
        self.session = session
        self.closed = False

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a dying process does."""
        self.closed = True
        self.transport.abort()

    @property
    def is_open(self) -> bool:
        return not (
            self.closed
            or self.transport.is_closing()
            or (self.session is not None and self.session.closed)
        )


class Hub:
    """Subscribers and per-key counters. Not thread-safe; lives on the server's loop."""

    def __init__(self) -> None:
        self._live: dict[Key, Subscriber] = {}
        self._all: dict[Key, list[Subscriber]] = {}
        self._counts: dict[Key, _Count] = {}
        self._ids = itertools.count(1)

    def subscribe(
        self, instance: str, event: str, transport: Transport, session: Session | None = None
    ) -> Subscriber:
        """Register a new socket as the key's live subscriber (``hub.set``: newest wins)."""
        sub = Subscriber(next(self._ids), instance, event, transport, session)
        key = (instance, event)
        self._live[key] = sub
        subs = self._all.setdefault(key, [])
        subs[:] = [s for s in subs if s.is_open]
        subs.append(sub)
        return sub

    def closed(self, sub: Subscriber) -> None:
        """Note that ``sub`` closed. It stays in the hub, as upstream never removes it."""
        sub.closed = True

    def _count(self, key: Key) -> _Count:
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count()
        return count

    def deliver(self, instance: str, event: str, frame: bytes) -> bool:
        """Send one finished frame to the key's live subscriber; True if it was written."""
        key = (instance, event)
        count = self._counts.get(key) or self._count(key)
        count.emitted += 1
        sub = self._live.get(key)
        if sub is None or sub.closed:
            count.dropped += 1
            return False
        transport = sub.transport
        session = sub.session
        if (
            transport.is_closing()
            or (session is not None and session.closed)
            or transport.get_write_buffer_size() > MAX_BACKLOG_BYTES
        ):
            count.dropped += 1
            return False
        transport.write(frame)
        count.delivered += 1
        return True

    def live(self, instance: str, event: str) -> Subscriber | None:
        """The key's live, still open subscriber, if any."""
        sub = self._live.get((instance, event))
        return sub if sub is not None and sub.is_open else None

    def sockets(self, instance: str, event: str) -> SocketInfo:
        subs = self._all.get((instance, event), [])
        live = self.live(instance, event)
        return SocketInfo(open=sum(1 for s in subs if s.is_open), live_id=live.id if live else None)

    def subscribers(
        self, instance: str | None = None, event: str | None = None
    ) -> list[Subscriber]:
        """Open sockets matching the filters (None matches all), starved ones included."""
        return [
            s
            for (inst, ev), subs in self._all.items()
            if (instance is None or inst == instance) and (event is None or ev == event)
            for s in subs
            if s.is_open
        ]

    def counters(self, instance: str | None = None, event: str | None = None) -> Counters:
        emitted = delivered = dropped = 0
        for (inst, ev), c in self._counts.items():
            if (instance is None or inst == instance) and (event is None or ev == event):
                emitted += c.emitted
                delivered += c.delivered
                dropped += c.dropped
        return Counters(emitted, delivered, dropped)

    def counter_rows(self) -> Iterable[tuple[Key, Counters]]:
        for key, c in sorted(self._counts.items()):
            yield key, Counters(c.emitted, c.delivered, c.dropped)

    def forget_all(self) -> None:
        """Drop every subscriber (a restart loses the in-memory hub); counters survive."""
        self._live.clear()
        self._all.clear()
