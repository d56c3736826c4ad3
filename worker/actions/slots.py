"""The executor's concurrency slots: one limit over everything, one per HTTP destination.

An attempt holds a slot of the global limit and, when it calls an HTTP endpoint, one of that
destination's; :class:`Held` gives them back once the attempt is over. :meth:`Slots.free`
tells whether an attempt would get its slots at once: not when they are all taken, nor when
others are queued for them, so a record that arrives while others wait does not overtake
them.
"""

from __future__ import annotations

import asyncio


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
    """``concurrency`` slots in all, ``per_destination`` of them for any one destination."""

    def __init__(self, concurrency: int, per_destination: int) -> None:
        self._all = asyncio.Semaphore(concurrency)
        self._per_destination = per_destination
        self._destinations: dict[str, asyncio.Semaphore] = {}

    def _for(self, destination: str | None) -> tuple[asyncio.Semaphore, ...]:
        """The semaphores to take, the destination's first (as they are always taken)."""
        if destination is None:
            return (self._all,)
        own = self._destinations.get(destination)
        if own is None:
            own = self._destinations[destination] = asyncio.Semaphore(self._per_destination)
        return (own, self._all)

    def free(self, destination: str | None) -> bool:
        """True when :meth:`hold` for ``destination`` would return without waiting."""
        return not any(semaphore.locked() for semaphore in self._for(destination))

    async def hold(self, destination: str | None) -> Held:
        """Wait for the slots of an attempt for ``destination`` (``None``: not HTTP)."""
        taken: list[asyncio.Semaphore] = []
        try:
            for semaphore in self._for(destination):
                await semaphore.acquire()
                taken.append(semaphore)
        except BaseException:
            for semaphore in taken:
                semaphore.release()
            raise
        return Held(tuple(taken))
