"""Ending background tasks without losing a cancellation of the caller."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any], reraise: bool = False) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    What the tasks raised is dropped, or with ``reraise`` the first error (not a
    cancellation) is raised once all have ended. The usual
    ``task.cancel(); with suppress(CancelledError): await task`` cannot tell the task's
    cancellation from a cancellation of the caller that arrives while it waits, and drops
    both: the caller then carries on as if nobody had cancelled it. ``asyncio.wait`` raises
    for neither outcome of the tasks, so only a cancellation of the caller comes through.
    """
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    errors = [task.exception() for task in tasks if not task.cancelled()]
    first = next((error for error in errors if error is not None), None)
    if reraise and first is not None:
        raise first


async def end_within(grace_s: float, *tasks: asyncio.Future[Any]) -> None:
    """Give ``tasks`` up to ``grace_s`` seconds to end by themselves, then cancel the rest.

    For tasks that were asked to stop and finish what they are doing first (a subscription
    reading until the gateway answers its close frame). Returns once every task has ended;
    what they raised is dropped, as in :func:`cancel_and_wait`.
    """
    if tasks:
        await asyncio.wait(tasks, timeout=grace_s)
    await cancel_and_wait(*tasks)
