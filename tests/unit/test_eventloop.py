"""Choosing the event loop of zapflow's commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from worker import cli
from worker.eventloop import EventLoopError, in_use, use_event_loop

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(autouse=True)
def default_policy() -> Iterator[None]:
    asyncio.set_event_loop_policy(None)
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


def test_uvloop_by_default_for_every_loop_built_afterwards() -> None:
    assert in_use() == "asyncio"
    assert use_event_loop({}) == "uvloop"
    assert in_use() == "uvloop"
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_when_asked_for() -> None:
    assert use_event_loop({"ZAPFLOW_EVENT_LOOP": " AsyncIO "}) == "asyncio"
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert in_use() == "asyncio"


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(EventLoopError, match=r"ZAPFLOW_EVENT_LOOP='trio'.*uvloop or asyncio"):
        use_event_loop({"ZAPFLOW_EVENT_LOOP": "trio"})
    assert in_use() == "asyncio"


def test_the_command_refuses_an_unknown_loop_before_doing_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZAPFLOW_EVENT_LOOP", "trio")
    monkeypatch.setattr(cli, "main", lambda: pytest.fail("main ran"))
    assert cli.entry() == 2
    assert "zapflow: error: ZAPFLOW_EVENT_LOOP='trio'" in capsys.readouterr().err


def test_main_alone_leaves_the_loop_as_it_is() -> None:
    """Tests call ``main`` in their own process: it must not switch their loops."""
    assert cli.main(["rules", "check", str(SHIPPED_RULES)]) == 0
    assert in_use() == "asyncio"
