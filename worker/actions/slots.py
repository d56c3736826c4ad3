"""The executor's concurrency slots: one limit over everything, one per HTTP destination,
one per lane of a destination (the gateway's instances).

An attempt holds a slot of the global limit and, when it calls an HTTP endpoint, one of that
destination's, and one of its lane's when it has one; :class:`Held` gives them back once the
attempt is over. :meth:`Slots.free` tells whether an attempt would get its slots at once: not
when they are all taken, nor when others are queued for them, so a record that arrives while
others wait does not overtake them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class Held:
    """The slots held for one attempt; :meth:`release` gives them back, once."""

    def __init__(self, semaphores: tuple[asyncio.Semaphore, ...]) -> None:
        self._semaphores = semaphores
        self._released = False

    def release(self) -> None:
        """Give the slots back; calling it again does nothing."""
        if self._released:
            return
        self._released = True
        for semaphore in self._semaphores:
            semaphore.release()


class Slots:
    """``concurrency`` slots in all, ``per_destination`` of them for any one destination (or
    its entry in ``caps``), and ``per_destination`` for any one lane of a destination."""

    def __init__(
        self, concurrency: int, per_destination: int, caps: Mapping[str, int] | None = None
    ) -> None:
        self._all = asyncio.Semaphore(concurrency)
        self._per_destination = per_destination
        self._caps = dict(caps or {})
        self._semaphores: dict[tuple[str, str | None], asyncio.Semaphore] = {}

    def _semaphore(self, destination: str, lane: str | None) -> asyncio.Semaphore:
        own = self._semaphores.get((destination, lane))
        if own is None:
            cap = self._per_destination
            if lane is None:
                cap = self._caps.get(destination, cap)
            own = asyncio.Semaphore(cap)
            self._semaphores[(destination, lane)] = own
        return own

    def _for(self, destination: str | None, lane: str | None) -> tuple[asyncio.Semaphore, ...]:
        """The semaphores to take, narrowest first (as they are always taken)."""
        if destination is None:
            return (self._all,)
        if lane is None:
            return (self._semaphore(destination, None), self._all)
        return (self._semaphore(destination, lane), self._semaphore(destination, None), self._all)

    def free(self, destination: str | None, lane: str | None = None) -> bool:
        """True when :meth:`hold` for ``destination`` (and ``lane``) would return without
        waiting."""
        return not any(semaphore.locked() for semaphore in self._for(destination, lane))

    async def hold(self, destination: str | None, lane: str | None = None) -> Held:
        """Wait for the slots of an attempt for ``destination`` (``None``: not HTTP) and
        ``lane``."""
        taken: list[asyncio.Semaphore] = []
        try:
            for semaphore in self._for(destination, lane):
                await semaphore.acquire()
                taken.append(semaphore)
        except BaseException:
            for semaphore in taken:
                semaphore.release()
            raise
        return Held(tuple(taken))
