"""The ``/_sim/`` control API (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator


def add_routes(app: web.Application, sim: Simulator) -> None:
    pass
