"""Traffic profiles: generated events for N instances at a rate, for a duration or a count.

Payloads are generated before the run starts and kept as serialised frame templates (see
``frames.FrameTemplate``); the hot loop only picks the next template, fills in a fresh id
and the current second, and writes the frame, so one process can push tens of thousands
of frames per second.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from worker.events import SENT_EVENTS
from worker.simulator.frames import UNIQUE_ID_FIELD, FrameTemplate, make_template
from worker.simulator.hub import Counters

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator

#: A plausible mix for a busy shop number: mostly messages and their receipts.
DEFAULT_MIX: Final[Mapping[str, float]] = {
    "messages.upsert": 60,
    "messages.update": 20,
    "presence.update": 8,
    "chats.update": 5,
    "contacts.upsert": 3,
    "send.message": 2,
    "group-participants.update": 1,
    "call.upsert": 1,
}
_BATCH: Final = 512
#: At full speed, wait while a subscriber has this much unsent; fixed rates never wait.
_FULL_SPEED_BACKLOG: Final = 4 * 1024 * 1024


class ProfileError(ValueError):
    """A profile that cannot run; the message says which setting and why."""


@dataclass(frozen=True)
class Profile:
    """What to emit.

    ``rate`` None means as fast as subscribers take it; with neither ``duration`` nor
    ``count`` the profile runs until cancelled.
    """

    instances: tuple[str, ...]
    rate: float | None
    duration: float | None
    count: int | None
    mix: tuple[tuple[str, float], ...]
    min_size: int = 0
    """Pad message texts so ``messages.upsert``/``send.message`` payloads reach this size."""

    @classmethod
    def build(
        cls,
        instances: Sequence[str],
        *,
        rate: float | None = 2000.0,
        duration: float | None = None,
        count: int | None = None,
        mix: Mapping[str, float] | None = None,
        min_size: int = 0,
    ) -> Profile:
        if not instances:
            raise ProfileError("profile: no instances given")
        if rate is not None and rate <= 0:
            raise ProfileError(f"profile: rate must be above 0 events/s, got {rate:g}")
        if duration is not None and duration <= 0:
            raise ProfileError(f"profile: duration must be above 0 s, got {duration:g}")
        if count is not None and count < 0:
            raise ProfileError(f"profile: count must be 0 or more, got {count}")
        weights = dict(mix if mix is not None else DEFAULT_MIX)
        for event, weight in weights.items():
            if event not in SENT_EVENTS:
                raise ProfileError(
                    f"profile: mix names {event!r}, which the gateway never sends; "
                    f"use some of: {', '.join(SENT_EVENTS)}"
                )
            if weight < 0:
                raise ProfileError(f"profile: mix weight of {event} is negative ({weight:g})")
        weights = {e: w for e, w in weights.items() if w > 0}
        if not weights:
            raise ProfileError("profile: the mix has no event with a positive weight")
        return cls(tuple(instances), rate, duration, count, tuple(weights.items()), min_size)

    @property
    def total(self) -> int | None:
        """How many events the run emits, when that is fixed in advance."""
        limits = []
        if self.count is not None:
            limits.append(self.count)
        if self.duration is not None and self.rate is not None:
            limits.append(round(self.duration * self.rate))
        return min(limits) if limits else None


def _padded(payload: Any, min_size: int) -> Any | None:
    """``payload`` with its text (or caption) lengthened to reach ``min_size`` bytes, or
    None when it has neither to lengthen."""
    from worker.simulator.frames import json_frame

    missing = min_size - len(json_frame(payload))
    if missing <= 0:
        return payload
    content = payload.get("content") if isinstance(payload, dict) else None
    for name in ("text", "caption"):
        if isinstance(content, dict) and isinstance(content.get(name), str):
            filler = (" Lorem ipsum dolor sit amet." * (missing // 28 + 1))[:missing]
            return {**payload, "content": {**content, name: content[name] + filler}}
    return None


def _as_templated(event: str, payload: Any) -> Any:
    """``payload`` with its id already as long as the template's ids (``3EB0`` + 18 hex,
    a web id, so ``device`` says web), so padding measures the frame that will be sent."""
    field = UNIQUE_ID_FIELD.get(event)
    if field is None or not isinstance(payload, dict) or field not in payload:
        return payload
    payload = {**payload, field: "3EB0" + "0" * 18}
    if "device" in payload:
        payload["device"] = "web"
    return payload


def _generate(sim: Simulator, instance: str, event: str, min_size: int) -> Any:
    for _ in range(50):
        payload = _as_templated(event, sim.generate(instance, event))
        padded = _padded(payload, min_size) if min_size else payload
        if padded is not None:
            return padded
    return payload  # this event has nothing to pad (e.g. presence.update)


async def build_schedule(sim: Simulator, profile: Profile) -> list[tuple[str, str, FrameTemplate]]:
    """The sequence the run cycles through: (instance, event, template), seeded.

    Generating takes about a millisecond per hundred payloads, so it yields to the event
    loop as it goes: sockets keep answering pings while a large profile gets ready.
    """
    rng = random.Random(f"{sim.seed}:profile")
    events = [e for e, _ in profile.mix]
    weights = [w for _, w in profile.mix]
    length = max(2048, 2 * len(profile.instances) * len(events))
    schedule = []
    for n in range(length):
        if n % 256 == 255:
            await asyncio.sleep(0)
        instance = rng.choice(profile.instances)
        event = rng.choices(events, weights)[0]
        payload = _generate(sim, instance, event, profile.min_size)
        schedule.append((instance, event, make_template(event, payload)))
    return schedule


async def run_profile(sim: Simulator, profile: Profile) -> Counters:
    """Emit ``profile``'s traffic through the hub; return what this run emitted."""
    for name in profile.instances:
        sim.instance(name)  # unknown names fail before anything is sent
    schedule = await build_schedule(sim, profile)
    deliver = sim.hub.deliver
    serial = sim.frame_serial
    total = profile.total
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = delivered = position = 0
    size = len(schedule)
    while total is None or sent < total:
        elapsed = loop.time() - start
        if profile.duration is not None and elapsed >= profile.duration and profile.rate is None:
            break
        if profile.rate is not None:
            batch = int(elapsed * profile.rate) + 1 - sent
            if batch <= 0:
                await asyncio.sleep(min(0.005, 1 / profile.rate))
                continue
        else:
            batch = _BATCH
            if any(
                s.transport.get_write_buffer_size() > _FULL_SPEED_BACKLOG
                for s in sim.hub.subscribers()
            ):
                await asyncio.sleep(0.001)
                continue
        if total is not None:
            batch = min(batch, total - sent)
        now = int(time.time())
        for _ in range(batch):
            instance, event, template = schedule[position]
            position = position + 1 if position + 1 < size else 0
            if deliver(instance, event, template.render(next(serial), now)):
                delivered += 1
        sent += batch
        await asyncio.sleep(0)
    return Counters(emitted=sent, delivered=delivered, dropped=sent - delivered)
