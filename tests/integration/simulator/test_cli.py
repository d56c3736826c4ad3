"""``zapflow simulate`` as a user runs it: a subprocess whose printed tokens work."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import orjson
import websockets

TOKEN_ROW = re.compile(r"^(sim-\d+)\s+(\d+)\s+(\S+\.\S+\.\S+)$")


async def _read_banner(stdout: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    url, tokens = "", {}
    while True:
        raw = await asyncio.wait_for(stdout.readline(), 30)
        if not raw:
            raise AssertionError("the simulator ended before printing its banner")
        line = raw.decode().rstrip()
        if line.startswith("CodeChat whatsapp-api"):
            url = line.rsplit(" ", 1)[1]
        if match := TOKEN_ROW.match(line):
            tokens[match.group(1)] = match.group(3)
        if line == "Ctrl+C stops.":
            return url, tokens


async def test_simulate_prints_working_tokens_and_stops_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "simulate", "--port", "0", "--instances", "2",
        "--rate", "400", "--mix", "messages.upsert=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        http_url, tokens = await _read_banner(process.stdout)
        assert sorted(tokens) == ["sim-1", "sim-2"]
        ws_url = http_url.replace("http://", "ws://") + "/ws/events"
        for name, token in tokens.items():
            async with websockets.connect(f"{ws_url}?event=messages.upsert&token={token}") as ws:
                event = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert event["instanceId"] == int(name.split("-")[1])
                assert event["keyFromMe"] is False
        process.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0
        assert b"stopped: " in out
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_scenario_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("steps:\n  - at: 1\n    emit: {instance: x, event: messages.delete}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "simulate", "--port", "0", "--scenario", str(scenario),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().splitlines() == [
        f"{scenario}:2: step 1: the gateway never sends 'messages.delete'; use one of: "
        "qrcode.updated, connection.update, messages.upsert, messages.update, send.message, "
        "contacts.upsert, presence.update, chats.update, chats.upsert, groups.upsert, "
        "groups.update, group-participants.update, call.upsert",
        f"zapflow: error: {scenario}: the scenario has problems; nothing started",
    ]
