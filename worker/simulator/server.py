"""The aiohttp application: socket upgrades, gateway REST, ``/_sim/`` control, one port.

Upstream hands *every* upgrade request on its port to the socket server, whatever the
path, so the upgrade check runs before routing: an upgrade to ``/message/sendText/x`` is
refused with the bare 401 like any other wrong path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from worker.simulator import control, rest, socket
from worker.simulator.rest import Handler

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator


def build_app(sim: Simulator) -> web.Application:
    @web.middleware
    async def upgrades_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        if socket.is_upgrade(request):
            return await socket.handle_upgrade(sim, request)
        return await handler(request)

    app = web.Application(middlewares=[upgrades_first], client_max_size=64 * 1024 * 1024)
    control.add_routes(app, sim)
    rest.add_routes(app, sim)
    rest.add_fallback(app, sim)
    return app
