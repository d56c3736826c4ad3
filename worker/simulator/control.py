"""The ``/_sim/`` control API: the in-process controls, over HTTP, for demos and other
processes (benchmarks, the CLI's users). Not part of upstream; unauthenticated, so bind
the simulator to localhost.

    GET    /_sim/                          this list
    GET    /_sim/instances                 instances with tokens and socket URLs
    POST   /_sim/instances                 {"name", "description"?}
    POST   /_sim/emit                      {"instance", "event", "payload"?} -> {"delivered"}
    GET    /_sim/counters?instance=&event= totals and per-key rows
    GET    /_sim/sockets?instance=&event=  {"open", "live_id"}
    GET    /_sim/calls                     recorded REST calls;  DELETE clears them
    POST   /_sim/faults/close-sockets      {"instance"?, "event"?, "code"?}
    POST   /_sim/faults/refuse-handshakes  {"count"}
    POST   /_sim/faults/send-raw           {"instance", "event", "text" | "base64"}
    POST   /_sim/faults/send-large         {"instance", "event", "size"}
    POST   /_sim/faults/pings              {"answer": bool}
    POST   /_sim/faults/restart            {"downtime"?}   (answers first, then restarts)
    POST   /_sim/profile                   {"instances", "rate", "duration"|"count", "mix"?,
                                            "min_size"?}   -> 202 {"id"}
    GET    /_sim/profile                   running and finished profiles; DELETE stops all
    POST   /_sim/scenario                  the scenario YAML as the body -> 202 {"id"}
    POST   /_sim/webhook/NAME              a webhook sink for demo alert channels
    GET    /_sim/webhook/NAME              what the sink received
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from worker.events import SENT_EVENTS
from worker.simulator.scenario import ScenarioError, parse_scenario, run_scenario
from worker.simulator.traffic import ProfileError

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator

PREFIX: Final = "/_sim"


class BadControlRequest(Exception):
    """A control call with missing or wrong fields; answered 400 with the message."""


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadControlRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadControlRequest("the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadControlRequest(f"field {name!r} is missing or of the wrong type")
    return value


class Control:
    """Handlers bound to one simulator; background runs are tracked by id."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.ids = itertools.count(1)
        self.running: dict[int, tuple[str, asyncio.Task[Any]]] = {}
        self.finished: list[dict[str, Any]] = []
        #: Posts received by the webhook sink, newest last (bounded).
        self.webhooks: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)

    def _instance_json(self, name: str) -> dict[str, Any]:
        inst = self.sim.instance(name)
        return {
            "name": inst.name,
            "id": inst.id,
            "token": inst.token,
            "urls": {e: self.sim.subscription_url(name, e) for e in SENT_EVENTS},
        }

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=__doc__ or "", content_type="text/plain")

    async def instances(self, request: web.Request) -> web.StreamResponse:
        return _json([self._instance_json(i.name) for i in self.sim.instances])

    async def create_instance(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        name = _field(body, "name", str)
        self.sim.create_instance(name, description=body.get("description"))
        return _json(self._instance_json(name), 201)

    async def emit(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        delivered = await self.sim.emit(
            _field(body, "instance", str), _field(body, "event", str), body.get("payload")
        )
        return _json({"delivered": delivered})

    async def counters(self, request: web.Request) -> web.StreamResponse:
        instance, event = request.query.get("instance"), request.query.get("event")
        rows = [
            {"instance": i, "event": e, **dataclasses.asdict(c)}
            for (i, e), c in self.sim.hub.counter_rows()
            if (instance is None or i == instance) and (event is None or e == event)
        ]
        total = dataclasses.asdict(self.sim.counters(instance, event))
        return _json({**total, "keys": rows})

    async def sockets(self, request: web.Request) -> web.StreamResponse:
        info = self.sim.sockets(request.query.get("instance", ""), request.query.get("event", ""))
        return _json(dataclasses.asdict(info))

    async def calls(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.sim.rest_calls.clear()
            return _json({"cleared": True})
        return _json([dataclasses.asdict(c) for c in self.sim.rest_calls])

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """A webhook sink for demos: alert channels can post here; GET lists what came.

        Not part of the gateway: a convenience so a demo needs no other receiver.
        """
        name = request.match_info["name"]
        if request.method == "GET":
            return _json([w for w in self.webhooks if w["channel"] == name])
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        self.webhooks.append(
            {"channel": request.match_info["name"], "at": time.time(), "body": body}
        )
        return _json({"ok": True})

    async def close_sockets(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        closed = await self.sim.close_sockets(
            body.get("instance"), body.get("event"), code=int(body.get("code", 1001))
        )
        return _json({"closed": closed})

    async def refuse_handshakes(self, request: web.Request) -> web.StreamResponse:
        count = _field(await _body(request), "count", int)
        self.sim.refuse_handshakes(count)
        return _json({"refusing": count})

    async def send_raw(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        data: str | bytes
        if isinstance(body.get("text"), str):
            data = body["text"]
        else:
            try:
                data = base64.b64decode(_field(body, "base64", str), validate=True)
            except binascii.Error:
                raise BadControlRequest("field 'base64' is not valid base64") from None
        delivered = await self.sim.send_raw(
            _field(body, "instance", str), _field(body, "event", str), data
        )
        return _json({"delivered": delivered})

    async def send_large(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        delivered = await self.sim.send_large(
            _field(body, "instance", str), _field(body, "event", str), _field(body, "size", int)
        )
        return _json({"delivered": delivered})

    async def pings(self, request: web.Request) -> web.StreamResponse:
        answer = _field(await _body(request), "answer", bool)
        self.sim.answer_pings(answer)
        return _json({"answer_pings": answer})

    async def restart(self, request: web.Request) -> web.StreamResponse:
        downtime = float((await _body(request)).get("downtime", 0.0))

        async def later() -> None:
            await asyncio.sleep(0.05)  # let this response reach the caller first
            await self.sim.restart(downtime)

        self.sim.spawn(later())
        return _json({"restarting": True, "downtime": downtime}, 202)

    def _track(self, kind: str, coro: Awaitable[Any]) -> int:
        ident = next(self.ids)
        task = self.sim.spawn(coro)
        self.running[ident] = (kind, task)

        def done(t: asyncio.Task[Any]) -> None:
            self.running.pop(ident, None)
            entry: dict[str, Any] = {"id": ident, "kind": kind}
            if t.cancelled():
                entry["status"] = "cancelled"
            elif t.exception() is not None:
                entry["status"] = "failed"
                entry["error"] = str(t.exception())
            else:
                entry["status"] = "done"
                result = t.result()
                if dataclasses.is_dataclass(result) and not isinstance(result, type):
                    entry.update(dataclasses.asdict(result))
            self.finished.append(entry)

        task.add_done_callback(done)
        return ident

    async def profile(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            running = [{"id": i, "kind": k} for i, (k, _) in self.running.items()]
            return _json({"running": running, "finished": self.finished})
        if request.method == "DELETE":
            for _, task in list(self.running.values()):
                task.cancel()
            return _json({"stopping": len(self.running)})
        body = await _body(request)
        instances = body.pop("instances", None) or [i.name for i in self.sim.instances]
        from worker.simulator.traffic import Profile

        Profile.build(instances, **body)  # fail now, with a 400, rather than in the background
        ident = self._track("profile", self.sim.run_profile(instances, **body))
        return _json({"id": ident}, 202)

    async def scenario(self, request: web.Request) -> web.StreamResponse:
        scenario = parse_scenario(await request.text(), "request body")
        ident = self._track("scenario", run_scenario(self.sim, scenario))
        return _json({"id": ident, "steps": len(scenario.steps)}, 202)


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ScenarioError as exc:
            return _json({"error": "invalid scenario", "problems": exc.problems}, 400)
        except (BadControlRequest, ProfileError, ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return _json({"error": message}, 400)

    return guarded


def add_routes(app: web.Application, sim: Simulator) -> None:
    control = Control(sim)
    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("GET", "/", control.index),
        ("GET", "/instances", control.instances),
        ("POST", "/instances", control.create_instance),
        ("POST", "/emit", control.emit),
        ("GET", "/counters", control.counters),
        ("GET", "/sockets", control.sockets),
        ("GET", "/calls", control.calls),
        ("DELETE", "/calls", control.calls),
        ("POST", "/faults/close-sockets", control.close_sockets),
        ("POST", "/faults/refuse-handshakes", control.refuse_handshakes),
        ("POST", "/faults/send-raw", control.send_raw),
        ("POST", "/faults/send-large", control.send_large),
        ("POST", "/faults/pings", control.pings),
        ("POST", "/faults/restart", control.restart),
        ("GET", "/profile", control.profile),
        ("POST", "/profile", control.profile),
        ("DELETE", "/profile", control.profile),
        ("POST", "/scenario", control.scenario),
        ("POST", "/webhook/{name}", control.webhook),
        ("GET", "/webhook/{name}", control.webhook),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, _guarded(handler))
