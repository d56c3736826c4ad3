"""The simulator in a process of its own, driven over stdin/stdout with JSON lines.

``python -m bench.simproc --instances 100 --events messages.upsert --tokens DIR`` creates
``bench-0000`` … instances, writes each one's token to ``DIR/<name>`` (ingest reads them as
``${file:…}`` secrets), prints ``{"port": P}`` and then answers one JSON line per command:

- ``{"op": "live"}`` → ``{"live": N}``: (instance, event) keys with a live subscriber;
- ``{"op": "flood", "duration": s, "min_size": bytes}`` → starts full-speed messages.upsert
  traffic over every instance, answers at once; ``{"op": "wait"}`` answers its counters;
- ``{"op": "paced", "rate": r, "duration": s, "min_size": bytes, "settle": s}`` → emits
  direct messages at a fixed rate, remembering each one's emit time, waits ``settle`` s for
  the replies, and answers the latencies of the sendText calls that quote each message id;
- ``{"op": "drop", "expect": N, "within": s}`` → closes every socket and answers how long
  until ``N`` keys had a live subscriber again;
- ``{"op": "stop"}``.

The load generator must not share a core's time slices with what it measures in the same
interpreter, so the benchmarks run it here and read this process's CPU time separately.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from worker.heap import freeze_startup_heap
from worker.simulator import Simulator
from worker.simulator.frames import FrameTemplate, make_template

PROBE = re.compile(r"probe (\S+)")


def reply(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


class _Replies:
    """The sendText calls since ``start`` that answer one of ``emitted``, counted as they come.

    Replies to messages of an earlier run (stragglers of a warm-up or a backlog) do not count:
    counting them would end the wait before this run's last replies, which would then count
    as unanswered here and as stray calls in the next run.
    """

    def __init__(self, calls: list[Any], start: int, emitted: dict[str, float]) -> None:
        self._calls = calls
        self._next = start
        self._emitted = emitted
        self._answered: set[str] = set()

    def count(self) -> int:
        calls = self._calls
        while self._next < len(calls):
            call = calls[self._next]
            self._next += 1
            key = _probe_key(call)
            if key is not None and key in self._emitted:
                self._answered.add(key)
        return len(self._answered)


def _probe_key(call: Any) -> str | None:
    """The message id a sendText call answers (``probe <id>``), or ``None``."""
    if not call.path.startswith("/message/sendText/"):
        return None
    match = PROBE.search((call.body or {}).get("textMessage", {}).get("text", ""))
    return match.group(1) if match else None


class Driver:
    def __init__(self, sim: Simulator, names: list[str], events: list[str]) -> None:
        self.sim = sim
        self.names = names
        self.events = events
        self.flood: asyncio.Task[Any] | None = None

    def live(self) -> int:
        live = self.sim.hub.live
        return sum(1 for n in self.names for e in self.events if live(n, e) is not None)

    def direct_templates(self, count: int, min_size: int) -> list[tuple[str, FrameTemplate]]:
        """Messages from contacts in direct chats (a reply to a group needs a known group)."""
        from worker.simulator.traffic import _padded

        found: list[tuple[str, FrameTemplate]] = []
        attempts = 0
        while len(found) < count and attempts < count * 50:
            attempts += 1
            name = self.names[attempts % len(self.names)]
            payload = self.sim.generate(name, "messages.upsert")
            if payload.get("keyFromMe") or payload.get("isGroup"):
                continue
            if not str(payload.get("keyRemoteJid", "")).endswith("@s.whatsapp.net"):
                continue
            padded = _padded(payload, min_size) if min_size else payload
            if padded is None:  # a media message without text to lengthen
                continue
            payload = {**padded, "device": "web"}
            found.append((name, make_template("messages.upsert", payload, id_prefix="3EB0")))
        return found

    async def paced(self, rate: float, duration: float, min_size: int, settle: float) -> Any:
        templates = self.direct_templates(256, min_size)
        deliver = self.sim.hub.deliver
        serial = self.sim.frame_serial
        # What earlier runs left (recorded calls, the instances' message stores) is kept to
        # the end: out of the collector's full collections, which would otherwise pause the
        # instrument mid-run (62 ms seen) and count as latency.
        freeze_startup_heap()
        calls_before = len(self.sim.rest_calls)
        emitted: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        total = round(rate * duration)
        start = loop.time()
        sent = dropped = 0
        position = 0
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(max(0.0, start + (sent + 1) / rate - loop.time()))
                continue
            now = int(time.time())
            for _ in range(due - sent):
                name, template = templates[position]
                position = (position + 1) % len(templates)
                n = next(serial)
                frame = template.render(n, now)
                at = time.time()
                if deliver(name, "messages.upsert", frame):
                    emitted[f"{template.id_prefix}{n:0{template.id_width}X}"] = at
                else:
                    dropped += 1
                sent += 1
            await asyncio.sleep(0)
        emit_seconds = loop.time() - start
        deadline = loop.time() + settle
        replies = _Replies(self.sim.rest_calls, calls_before, emitted)
        while loop.time() < deadline:
            if replies.count() >= len(emitted):
                break
            await asyncio.sleep(0.05)
        latencies: list[float] = []
        samples: list[tuple[str, float, float | None]] = []
        sent_at = dict(emitted)
        statuses: dict[str, int] = {}
        for call in self.sim.rest_calls[calls_before:]:
            if not call.path.startswith("/message/sendText/"):
                continue
            statuses[str(call.status)] = statuses.get(str(call.status), 0) + 1
            key = _probe_key(call)
            if key is not None and key in emitted:
                latencies.append((call.at - emitted.pop(key)) * 1000)
                samples.append((key, sent_at[key], call.at))
        samples += [(key, at, None) for key, at in emitted.items()]
        arrivals = sorted(at for _, _, at in samples if at is not None)
        call_rate = (
            (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            if len(arrivals) > 1 and arrivals[-1] > arrivals[0]
            else None
        )
        return {
            "emitted": sent,
            "dropped": dropped,
            "emit_seconds": emit_seconds,
            "latencies_ms": latencies,
            "unanswered": len(emitted),
            "statuses": statuses,
            "samples": samples,
            "answer_rate": call_rate,
        }

    async def drop(self, expect: int, within: float) -> Any:
        start = time.monotonic()
        closed = await self.sim.close_sockets()
        deadline = start + within
        while time.monotonic() < deadline:
            live = self.live()
            if live >= expect:
                return {"closed": closed, "seconds": time.monotonic() - start, "live": live}
            await asyncio.sleep(0.01)
        return {"closed": closed, "seconds": None, "live": self.live()}

    async def handle(self, cmd: dict[str, Any]) -> Any:
        op = cmd.get("op")
        if op == "live":
            return {"live": self.live()}
        if op == "flood":
            self.flood = asyncio.ensure_future(
                self.sim.run_profile(
                    self.names,
                    rate=cmd.get("rate"),
                    duration=cmd["duration"],
                    mix={"messages.upsert": 1},
                    min_size=cmd.get("min_size", 0),
                )
            )
            return {"started": True}
        if op == "wait":
            if self.flood is None:
                return {"error": "no flood running"}
            counters = await self.flood
            self.flood = None
            return {
                "emitted": counters.emitted,
                "delivered": counters.delivered,
                "dropped": counters.dropped,
            }
        if op == "paced":
            return await self.paced(
                cmd["rate"], cmd["duration"], cmd.get("min_size", 0), cmd.get("settle", 5.0)
            )
        if op == "drop":
            return await self.drop(cmd["expect"], cmd.get("within", 120.0))
        if op == "rest_calls":
            return {"count": len(self.sim.rest_calls)}
        return {"error": f"unknown op {op!r}"}


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--events", default="messages.upsert")
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    sim = Simulator(secret="bench-secret", apikey="bench-apikey", seed=args.seed)
    await sim.start()
    args.tokens.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(args.instances):
        inst = sim.create_instance(f"bench-{i:04d}")
        (args.tokens / inst.name).write_text(inst.token)
        names.append(inst.name)
    driver = Driver(sim, names, args.events.split(","))
    reply({"port": sim.port, "instances": len(names)})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = orjson.loads(line)
            if cmd.get("op") == "stop":
                break
            reply(await driver.handle(cmd))
    finally:
        await sim.stop()


if __name__ == "__main__":
    asyncio.run(main())
