from __future__ import annotations

from worker.simulator.hub import Counters, Hub, SocketInfo


class FakeTransport:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closing = True


def test_the_newest_subscriber_gets_everything_the_older_nothing() -> None:
    hub = Hub()
    old, new = FakeTransport(), FakeTransport()
    hub.subscribe("i", "e", old)
    sub = hub.subscribe("i", "e", new)
    assert hub.deliver("i", "e", b"f") is True
    assert (old.frames, new.frames) == ([], [b"f"])
    assert hub.sockets("i", "e") == SocketInfo(open=2, live_id=sub.id)


def test_closed_live_subscriber_is_kept_and_its_events_dropped() -> None:
    hub = Hub()
    transport = FakeTransport()
    sub = hub.subscribe("i", "e", transport)
    hub.closed(sub)
    assert hub.deliver("i", "e", b"f") is False
    assert transport.frames == []
    assert hub.sockets("i", "e") == SocketInfo(open=0, live_id=None)
    assert hub.counters() == Counters(emitted=1, delivered=0, dropped=1)


def test_counters_sum_over_matching_keys() -> None:
    hub = Hub()
    hub.subscribe("a", "x", FakeTransport())
    for instance, event in [("a", "x"), ("a", "y"), ("b", "x"), ("a", "x")]:
        hub.deliver(instance, event, b"f")
    assert hub.counters("a") == Counters(3, 2, 1)
    assert hub.counters(event="x") == Counters(3, 2, 1)
    assert hub.counters("b", "x") == Counters(1, 0, 1)
    assert hub.counters("c") == Counters(0, 0, 0)


class FakeSession:
    closed = False


def test_nothing_is_written_once_the_close_handshake_began() -> None:
    hub = Hub()
    transport, session = FakeTransport(), FakeSession()
    hub.subscribe("i", "e", transport, session)
    session.closed = True
    assert hub.deliver("i", "e", b"f") is False
    assert transport.frames == []
    assert hub.sockets("i", "e") == SocketInfo(open=0, live_id=None)
