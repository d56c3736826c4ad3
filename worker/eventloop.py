"""The event loop zapflow's commands run on: uvloop where it is installed, asyncio's otherwise.

uvloop runs the same asyncio code on libuv, with less CPU spent per callback and per socket
read or write. Every stage spends a good part of its time there (aiokafka's requests, Faust's
hand-offs, aiohttp), so at 500 events/s end to end the pipeline's zapflow processes used about
a tenth less CPU with it (bench/README.md). The choice is made once, before the command builds
any loop, and holds for every loop it builds: ``asyncio.run``, Faust's worker and the thread
Faust reads Kafka in.

``ZAPFLOW_EVENT_LOOP=asyncio`` keeps asyncio's own loop, to rule uvloop out when chasing a
problem; ``uvloop`` (the default) falls back to asyncio's loop where uvloop is not installed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Final

ENV: Final = "ZAPFLOW_EVENT_LOOP"
CHOICES: Final = ("uvloop", "asyncio")


class EventLoopError(Exception):
    """The event loop asked for cannot be used; the message says why and what to do."""


def use_event_loop(environ: Mapping[str, str] | None = None) -> str:
    """Make the loops built from now on of the kind ``ZAPFLOW_EVENT_LOOP`` asks for.

    Returns the kind in use, ``"uvloop"`` or ``"asyncio"``.

    Raises:
        EventLoopError: an unknown kind.
    """
    env = os.environ if environ is None else environ
    asked = env.get(ENV, "").strip().lower() or "uvloop"
    if asked not in CHOICES:
        raise EventLoopError(
            f"{ENV}={env[ENV]!r} is not an event loop zapflow knows: use " + " or ".join(CHOICES)
        )
    if asked == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:  # platforms uvloop does not support (Windows)
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def in_use() -> str:
    """The kind of loop this process builds: ``"uvloop"`` or ``"asyncio"``."""
    policy = type(asyncio.get_event_loop_policy())
    return "uvloop" if policy.__module__.split(".")[0] == "uvloop" else "asyncio"
