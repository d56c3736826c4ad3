"""The gateway REST calls an automation makes, with upstream's auth and error bodies.

Auth (``src/guards/auth.guard.ts:58-106``): the global ``apikey`` header opens every route
(and when no global key is configured, a request without the header passes too: upstream
compares ``undefined === undefined``); otherwise ``Authorization: Bearer <instance JWT>``
must verify and name this instance with ``apiName: "whatsapp-api"``, else
``401 {"status":401,"error":"Unauthorized"}``. ``/instance/create`` and ``fetchInstances``
need the global key (``403 "Missing global api key"``). Routes on an unknown instance get
``400 'The "X" instance does not exist or is not connected'``. Every call is recorded in
``Simulator.rest_calls``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from worker.simulator import ids, tokens
from worker.simulator.payloads import Contact, iso

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator

_NUMBER: Final = re.compile(r"^\d+[\.@\w-]+")
_GROUP_JID: Final = re.compile(r"^[\d-]+@g\.us$")
_PARTICIPANT_ACTIONS: Final = ("add", "remove", "promote", "demote")
_MAX_DELAY_MS: Final = 60_000


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def error(status: int, *messages: Any) -> Reply:
    """Upstream's error body ``{status, error, message?: [...]}``."""
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    body: dict[str, Any] = {"status": status, "error": names.get(status, "Error")}
    if messages:
        body["message"] = list(messages)
    return Reply(status, body)


UNAUTHORIZED: Final = error(401)
#: A raw ``Error`` escaping a controller becomes ``500 {}`` (``error.middle.ts:52``).
INTERNAL: Final = Reply(500, {})

Route = Callable[["Simulator", web.Request, Any], Awaitable[Reply]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _masked(headers: Any) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        out[str(name)] = "***" if name.lower() in ("authorization", "apikey") else str(value)
    return out


def _recorded(sim: Simulator, route: Route) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        from worker.simulator.simulator import RestCall

        at = sim.clock()
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if raw and body is None:
            reply = error(400, "body is not valid JSON")
        else:
            reply = await route(sim, request, body)
        sim.rest_calls.append(
            RestCall(
                method=request.method,
                path=request.path,
                instance=request.match_info.get("instanceName"),
                query=dict(request.query),
                body=body,
                status=reply.status,
                at=at,
                response=reply.body,
                headers=_masked(request.headers),
            )
        )
        return web.Response(
            status=reply.status, body=orjson.dumps(reply.body), content_type="application/json"
        )

    return handler


# ---------------------------------------------------------------- guards
def _global_key_ok(sim: Simulator, request: web.Request) -> bool:
    return request.headers.get("apikey") == sim.apikey


def _guard(sim: Simulator, request: web.Request) -> Reply | None:
    """JwtGuard then InstanceGuard; None when the call may proceed."""
    name = request.match_info["instanceName"]
    if not _global_key_ok(sim, request):
        parts = request.headers.get("Authorization", "").split(" ")
        token = parts[1] if len(parts) > 1 else ""
        try:
            claims = tokens.verify(token, sim.secret, sim.clock(), sim.ignore_expiration)
        except tokens.InvalidToken:
            return UNAUTHORIZED
        if claims.get("instanceName") != name or claims.get("apiName") != tokens.API_NAME:
            return UNAUTHORIZED
    if not sim.has_instance(name):
        return error(400, f'The "{name}" instance does not exist or is not connected')
    return None


def create_jid(number: str) -> str:
    """Upstream ``createJid`` without its BR/MX/AR digit rewriting (the simulator keeps
    numbers as given, so replies go to exactly the JID an event came from)."""
    if "@" in number:
        return number
    if "-" in number:
        return f"{number}@g.us"
    return f"{re.sub(r'[^0-9]', '', number)}@s.whatsapp.net"


def _group_members(sim: Simulator, instance: str, group_jid: str) -> list[dict[str, Any]] | None:
    """The group's current participants (mutable), or None if the instance is not in it."""
    members = sim.group_members.get((instance, group_jid))
    if members is None:
        for group in sim.factory(instance).groups:
            if group.jid == group_jid:
                meta = sim.factory(instance).group_metadata(group)
                members = sim.group_members[(instance, group_jid)] = meta["participants"]
    return members


# ---------------------------------------------------------------- instance routes
async def create_instance(sim: Simulator, request: web.Request, body: Any) -> Reply:
    if not _global_key_ok(sim, request):
        return error(403, "Missing global api key")
    name = body.get("instanceName") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        return error(400, "instanceName is required")
    try:
        instance = sim.create_instance(
            name,
            description=body.get("description"),
            external_attributes=body.get("externalAttributes"),
        )
    except ValueError:
        return error(400, "Instance already exists")
    return Reply(201, instance.row())


async def fetch_instances(sim: Simulator, request: web.Request, body: Any) -> Reply:
    if not _global_key_ok(sim, request):
        return error(403, "Missing global api key")
    return Reply(200, [i.row() for i in sim.instances])


async def refresh_token(sim: Simulator, request: web.Request, body: Any) -> Reply:
    # Registered without guards upstream (instance.router.ts:140-148): the old token is
    # the only credential. The answers for a bad token or an unknown instance are the
    # simulator's reading of the service code, not verified against a running gateway.
    name = request.match_info["instanceName"]
    old = body.get("oldToken") if isinstance(body, dict) else None
    if not isinstance(old, str):
        return error(400, "oldToken is required")
    if not sim.has_instance(name):
        return error(400, f'The "{name}" instance does not exist or is not connected')
    try:
        refreshed = sim.refresh_token(name, old)
    except tokens.InvalidToken:
        return UNAUTHORIZED
    stamp = iso(sim.clock())
    return Reply(
        201,
        {
            "id": refreshed.id,
            "token": refreshed.token,
            "createdAt": refreshed.created_at,
            "updatedAt": stamp,
            "instanceId": refreshed.id,
        },
    )


async def connection_state(sim: Simulator, request: web.Request, body: Any) -> Reply:
    refusal = _guard(sim, request)
    if refusal is not None:
        return refusal
    return Reply(200, {"state": "open", "statusReason": 200})


# ---------------------------------------------------------------- messages
def _quote_context(quoted: Any) -> dict[str, Any] | None:
    """``contextInfo`` for ``options.quotedMessage`` given as a message row."""
    if not isinstance(quoted, dict) or not isinstance(quoted.get("keyId"), str):
        return None
    content = quoted.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    context: dict[str, Any] = {
        "stanzaId": quoted["keyId"],
        "participant": quoted.get("keyParticipant") or quoted.get("keyRemoteJid"),
    }
    if isinstance(text, str):
        context["quotedMessage"] = {"conversation": text}
    return context


async def send_text(sim: Simulator, request: web.Request, body: Any) -> Reply:
    refusal = _guard(sim, request)
    if refusal is not None:
        return refusal
    instance = request.match_info["instanceName"]
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    number = body.get("number")
    if not isinstance(number, str) or not _NUMBER.match(number):
        return error(400, 'number must match pattern "^\\d+[\\.@\\w-]+"')
    text_message = body.get("textMessage")
    text = text_message.get("text") if isinstance(text_message, dict) else None
    if not isinstance(text, str):
        return error(400, "textMessage.text is required")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        return error(400, "options must be an object")
    jid = create_jid(number)
    if jid.endswith("@g.us"):
        if _group_members(sim, instance, jid) is None:
            # Upstream dereferences the missing group's id (whatsapp.service.ts:1993).
            return INTERNAL
    elif number in sim.unknown_numbers or jid in sim.unknown_numbers:
        return error(400, {"exists": False, "jid": jid})
    delay = options.get("delay")
    if isinstance(delay, int | float) and delay > 0:
        # Upstream holds the request while "composing" for that long.
        await asyncio.sleep(min(delay, _MAX_DELAY_MS) / 1000)
    factory = sim.factory(instance)
    now = sim.clock()
    message_id = options.get("messageId")
    key_id = (
        message_id
        if isinstance(message_id, str) and message_id
        else ids.ulid(int(now * 1000), factory.rng)
    )
    sent = factory.sent_message(
        now,
        jid,
        text,
        key_id,
        quoted=_quote_context(options.get("quotedMessage")),
        external_attributes=options.get("externalAttributes"),
    )
    # The echo triple: send.message and messages.upsert carry messageSent; Baileys'
    # emitOwnEvents re-upserts the text through the normal handler as type "append".
    sim.emit_nowait(instance, "send.message", sent)
    sim.emit_nowait(instance, "messages.upsert", sent)
    sim.emit_nowait(instance, "messages.upsert", factory.own_append_echo(sent))
    return Reply(201, sent)


# ---------------------------------------------------------------- groups
def _group_jid(request: web.Request) -> tuple[str | None, Reply | None]:
    group = request.query.get("groupJid")
    if not group or not _GROUP_JID.match(group):
        return None, error(400, 'groupJid must match pattern "^[\\d-]+@g.us$"')
    return group, None


def _lookup_group(sim: Simulator, request: web.Request) -> tuple[str, list[dict[str, Any]]] | Reply:
    refusal = _guard(sim, request)
    if refusal is not None:
        return refusal
    group, bad = _group_jid(request)
    if bad is not None or group is None:
        return bad or INTERNAL
    members = _group_members(sim, request.match_info["instanceName"], group)
    if members is None:
        # Baileys answers an unknown group with an "item-not-found" error, which the
        # controller reports as a bad request (wording not verified against upstream).
        return error(400, "Error: item-not-found")
    return group, members


async def update_participant(sim: Simulator, request: web.Request, body: Any) -> Reply:
    found = _lookup_group(sim, request)
    if isinstance(found, Reply):
        return found
    group, members = found
    instance = request.match_info["instanceName"]
    action = body.get("action") if isinstance(body, dict) else None
    participants = body.get("participants") if isinstance(body, dict) else None
    if action not in _PARTICIPANT_ACTIONS:
        return error(400, f"action must be one of {', '.join(_PARTICIPANT_ACTIONS)}")
    if (
        not isinstance(participants, list)
        or not participants
        or not all(isinstance(p, str) and len(p) >= 10 for p in participants)
    ):
        return error(400, "participants must be a list of numbers of at least 10 characters")
    factory = sim.factory(instance)
    results = []
    changed: list[Contact] = []
    for number in participants:
        jid = create_jid(number)
        current = next((m for m in members if m.get("phoneNumber") == jid), None)
        status = "200"
        if action == "add":
            if current is not None:
                status = "409"
            else:
                lid = f"{int(hashlib.sha256(jid.encode()).hexdigest()[:12], 16)}@lid"
                members.append({"id": lid, "phoneNumber": jid, "admin": None})
        elif current is None:
            status = "404"
        elif action == "remove":
            members.remove(current)
        else:
            current["admin"] = "admin" if action == "promote" else None
        if status == "200":
            entry = current or members[-1]
            changed.append(Contact("", jid.split("@")[0], str(entry["id"]).split("@")[0]))
        results.append(
            {"status": status, "jid": jid, "content": {"tag": "participant", "attrs": {"jid": jid}}}
        )
    if changed:
        # WhatsApp notifies the group change back to the instance that made it.
        admin = "admin" if action == "promote" else None
        event = factory.participants_event(group, action, changed, factory.me, admin)
        sim.emit_nowait(instance, "group-participants.update", event)
    return Reply(201, {"updateParticipants": results})


async def find_group_infos(sim: Simulator, request: web.Request, body: Any) -> Reply:
    found = _lookup_group(sim, request)
    if isinstance(found, Reply):
        return found
    group, members = found
    factory = sim.factory(request.match_info["instanceName"])
    meta = next(factory.group_metadata(g) for g in factory.groups if g.jid == group)
    meta["participants"] = [dict(m) for m in members]
    meta["size"] = len(members)
    return Reply(200, meta)


async def group_participants(sim: Simulator, request: web.Request, body: Any) -> Reply:
    found = _lookup_group(sim, request)
    if isinstance(found, Reply):
        return found
    return Reply(200, {"participants": [dict(m) for m in found[1]]})


async def not_found(sim: Simulator, request: web.Request, body: Any) -> Reply:
    return error(404, f"Cannot {request.method} {request.path}")


def add_routes(app: web.Application, sim: Simulator) -> None:
    def add(method: str, path: str, route: Route) -> None:
        app.router.add_route(method, path, _recorded(sim, route))

    add("POST", "/instance/create", create_instance)
    add("GET", "/instance/fetchInstances", fetch_instances)
    add("GET", "/instance/connectionState/{instanceName}", connection_state)
    add("PUT", "/instance/refreshToken/{instanceName}", refresh_token)
    add("POST", "/message/sendText/{instanceName}", send_text)
    add("PUT", "/group/updateParticipant/{instanceName}", update_participant)
    add("GET", "/group/findGroupInfos/{instanceName}", find_group_infos)
    add("GET", "/group/participants/{instanceName}", group_participants)


def add_fallback(app: web.Application, sim: Simulator) -> None:
    """Record and 404 anything else (register after every other route)."""
    app.router.add_route("*", "/{tail:.*}", _recorded(sim, not_found))
