"""``zapflow dev`` (what ``make run`` starts): the whole flow on one machine, shown live.

1. an embedded Apache Kafka broker (or ``KAFKA_BOOTSTRAP_SERVERS``);
2. the CodeChat gateway simulator with a few instances, in this process;
3. a local alert inbox that the shipped rules' notify channels point at;
4. the worker, ``zapflow run`` with the shipped rules, as a child process;
5. demo traffic that exercises the shipped rules: contacts writing in, an escalation word,
   people joining a group, a connection that flaps and then is logged out; plus gentle
   background events of the other kinds;
6. a live view (or plain lines with ``--plain``) of subscriptions, events, rules, the
   gateway calls the actions made, and the alerts that arrived.

Ctrl-C (or ``--duration``) stops everything: traffic, worker, simulator, broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.console.inbox import AlertInbox
from worker.devkafka.broker import KafkaBroker, die_with_parent
from worker.devkafka.jars import DevKafkaError, cache_root
from worker.tasks import cancel_and_wait

INSTANCE_NAMES = ("loja-centro", "loja-norte", "loja-sul", "loja-oeste", "loja-leste")
SECRET = "zapflow-dev-secret"
APIKEY = "zapflow-dev-apikey"
#: Background events: everything but messages and connection changes, which the demo
#: script sends on purpose.
BACKGROUND_MIX = {
    "presence.update": 4.0,
    "messages.update": 3.0,
    "chats.update": 2.0,
    "contacts.upsert": 1.0,
    "call.upsert": 0.5,
    "groups.update": 0.5,
}


@dataclass
class DevState:
    """What the live view shows, refreshed from the worker, the simulator and the inbox."""

    started: float = field(default_factory=time.time)
    bootstrap: str = ""
    sim_url: str = ""
    status_url: str = ""
    worker_status: dict[str, Any] = field(default_factory=dict)
    worker_exit: int | None = None
    lines: list[str] = field(default_factory=list)
    sent_calls: int = 0
    alerts: int = 0
    welcomes: int = 0
    replies: int = 0
    #: event -> (frames so far, events per second over the last poll)
    topics: dict[str, tuple[int, float]] = field(default_factory=dict)
    _last_poll: float = 0.0

    def update_rates(self, now: float) -> None:
        """Per-topic totals and rates from the worker's subscription frame counts."""
        totals: dict[str, int] = {}
        for row in (self.worker_status.get("ingest") or {}).get("subscriptions", []):
            totals[row["event"]] = totals.get(row["event"], 0) + int(row.get("frames") or 0)
        elapsed = now - self._last_poll if self._last_poll else 0.0
        self.topics = {
            event: (
                total,
                (total - self.topics.get(event, (total, 0.0))[0]) / elapsed if elapsed else 0.0,
            )
            for event, total in totals.items()
        }
        self._last_poll = now


def worker_config(
    bootstrap: str, sim_ws_url: str, names: list[str], data: Path, http_port: int
) -> str:
    """The ``zapflow.yaml`` of the demo worker; tokens come from the environment."""
    instances = "\n".join(
        f"  - {{name: {name}, token: '${{env:ZAPFLOW_DEV_TOKEN_{i}}}'}}"
        for i, name in enumerate(names)
    )
    return f"""\
gateway:
  url: {sim_ws_url}
instances:
{instances}
kafka:
  bootstrap_servers: {bootstrap}
  partitions: 4
ingest:
  reconnect: {{first_delay: 1s, max_delay: 10s}}
  spool: {{path: {data / "spool"}}}
  summary_interval: 3600s
process:
  store: memory://
  data_dir: {data / "process"}
  faust: {{broker_session_timeout: 10, broker_heartbeat_interval: 1}}
actions:
  gateway: {{apikey: '${{env:ZAPFLOW_DEV_APIKEY}}'}}
http:
  port: {http_port}
"""


async def demo_traffic(sim: Any, names: list[str], note: Callable[[str], None]) -> None:
    """A repeating script that makes each shipped rule act at least once a minute."""
    shop, group_owner, flaky = names[0], names[1 % len(names)], names[2 % len(names)]
    cycle = 0
    while True:
        cycle += 1
        shop_factory = sim.factory(shop)
        await asyncio.sleep(2)
        await sim.emit(
            shop,
            "messages.upsert",
            shop_factory.received_text(time.time(), "Oi! Vocês abrem amanhã?"),
        )
        note(f"{shop}: a contact asks about opening hours")
        await asyncio.sleep(3)
        await sim.emit(
            shop,
            "messages.upsert",
            shop_factory.received_text(time.time(), "Quero cancelar meu pedido, é urgente!"),
        )
        note(f"{shop}: a contact writes an escalation word")
        await asyncio.sleep(3)
        groups = sim.factory(group_owner)
        group = groups.groups[0]
        newcomers = groups.contacts[(2 * cycle) % len(groups.contacts) :][:2] or groups.contacts[:2]
        await sim.emit(
            group_owner,
            "group-participants.update",
            groups.participants_event(group.jid, "add", newcomers, group.owner),
        )
        note(f"{group_owner}: {len(newcomers)} people join {group.jid}")
        flaky_factory = sim.factory(flaky)
        for reason in (428, 408, 515):
            await asyncio.sleep(3)
            await sim.emit(flaky, "connection.update", flaky_factory.connection("close", reason))
            await asyncio.sleep(1)
            await sim.emit(flaky, "connection.update", flaky_factory.connection("open", 200))
            note(f"{flaky}: connection closed ({reason}) and came back")
        await asyncio.sleep(5)
        await sim.emit(flaky, "connection.update", flaky_factory.connection("close", 401))
        note(f"{flaky}: logged out (401)")
        await asyncio.sleep(30)
        await sim.emit(flaky, "connection.update", flaky_factory.connection("open", 200))
        note(f"{flaky}: paired again")


async def _start_traffic(
    sim: Any, names: list[str], state: DevState, note: Callable[[str], None], rate: float
) -> None:
    waited = 0.0
    while not state.worker_status.get("ready"):
        await asyncio.sleep(0.5)
        waited += 0.5
        if waited == 30:
            note("still waiting for the worker to be ready (see its log)…")
    await asyncio.gather(
        demo_traffic(sim, names, note),
        sim.run_profile(names, rate=rate, duration=None, mix=BACKGROUND_MIX),
    )


def _fetch_status(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/status", timeout=2) as resp:
            data = json.loads(resp.read())
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_call(call: Any) -> str | None:
    """A line for one gateway REST call made by the worker's actions."""
    body = call.body if isinstance(call.body, dict) else {}
    if "/message/sendText/" in call.path:
        text = str((body.get("textMessage") or {}).get("text", ""))
        text = " ".join(text.split())
        return f"→ {call.instance} sends to {body.get('number')}: {text[:90]}"
    if "/group/updateParticipant/" in call.path:
        return f"→ {call.instance} group {body.get('action')} {body.get('participants')}"
    return None


def render(state: DevState) -> Any:
    """The live view as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    status = state.worker_status
    uptime = time.time() - state.started
    head = Table.grid(padding=(0, 2))
    head.add_row("Kafka", state.bootstrap, "simulator", state.sim_url)
    head.add_row("worker", state.status_url + "/metrics", "up", f"{uptime:.0f} s")
    ready = status.get("ready")
    head.add_row(
        "ready",
        "yes" if ready else ("worker exited" if state.worker_exit is not None else "starting…"),
        "seen",
        f"{state.replies} replies, {state.welcomes} welcomes, {state.alerts} alerts",
    )

    subs = Table(title="subscriptions", title_justify="left", expand=True)
    for col in ("instance", "open", "other", "frames"):
        subs.add_column(col)
    per_instance: dict[str, list[int]] = {}
    for row in (status.get("ingest") or {}).get("subscriptions", []):
        counts = per_instance.setdefault(row["instance"], [0, 0, 0])
        counts[0 if row["state"] == "open" else 1] += 1
        counts[2] += int(row.get("frames") or 0)
    for name, (opened, other, frames) in sorted(per_instance.items()):
        subs.add_row(name, str(opened), str(other), str(frames))

    topics = Table(title="events per topic", title_justify="left", expand=True)
    for col in ("topic", "events", "events/s"):
        topics.add_column(col)
    for event, (total, rate) in sorted(state.topics.items()):
        if total:
            topics.add_row(f"codechat.{event}", str(total), f"{rate:.1f}")

    rules = Table(title="rules", title_justify="left", expand=True)
    for col in ("rule", "evaluations", "fires", "suppressed"):
        rules.add_column(col)
    for row in (status.get("rules") or {}).get("rules", []):
        rules.add_row(
            row["rule"], str(row["evaluations"]), str(row["fires"]), str(row["suppressions"])
        )

    recent = "\n".join(state.lines[-14:]) or "waiting for the first events…"
    tips = (
        f"zapflow tail                      follow the topics (Kafka at {state.bootstrap})\n"
        f"zapflow status --url {state.status_url}   the worker's status; metrics at /metrics\n"
        "Ctrl-C stops everything."
    )
    return Group(
        Panel(head, title="zapflow dev"),
        subs,
        topics,
        rules,
        Panel(recent, title="what happened (actions → gateway, alerts ⚑)"),
        Panel(tips, title="try"),
    )


async def _dev(args: argparse.Namespace) -> int:
    from worker.simulator import Simulator

    state = DevState()
    plain = args.plain or not sys.stdout.isatty()
    run_dir = args.state_dir or cache_root() / "run" / "dev"

    def note(line: str) -> None:
        stamped = time.strftime("%H:%M:%S ") + line
        state.lines.append(stamped)
        del state.lines[:-200]
        if plain:
            print(stamped, flush=True)

    broker: KafkaBroker | None = None
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        state.bootstrap = external
        note(f"using Kafka at {external} (KAFKA_BOOTSTRAP_SERVERS)")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        broker = KafkaBroker(run_dir / "kafka")
        note("starting the embedded Kafka broker (the first run downloads it from Maven Central)…")
        await asyncio.to_thread(broker.start)
        state.bootstrap = broker.bootstrap_servers
        (run_dir / "bootstrap").write_text(state.bootstrap + "\n")
        (run_dir / "broker.pid").write_text(f"{broker.pid}\n")
        note(f"Kafka is up at {state.bootstrap}")

    sim = Simulator(secret=SECRET, apikey=APIKEY, port=0, seed=7)
    inbox = AlertInbox()
    worker: subprocess.Popen[bytes] | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        await sim.start()
        await inbox.start()
        names = list(INSTANCE_NAMES[: max(1, min(args.instances, len(INSTANCE_NAMES)))])
        tokens = [sim.create_instance(name).token for name in names]
        state.sim_url = sim.http_url
        note(f"simulator on {sim.http_url} with instances {', '.join(names)}")

        data = run_dir / "worker"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "zapflow.yaml"
        config.write_text(worker_config(state.bootstrap, sim.ws_url, names, data, args.http_port))
        state.status_url = f"http://127.0.0.1:{args.http_port}"
        env = {
            **os.environ,
            "ZAPFLOW_OPS_WEBHOOK": inbox.url("/ops"),
            "ZAPFLOW_SUPPORT_WEBHOOK": inbox.url("/support"),
            "ZAPFLOW_DEV_APIKEY": APIKEY,
            **{f"ZAPFLOW_DEV_TOKEN_{i}": token for i, token in enumerate(tokens)},
        }
        log = (data / "worker.log").open("ab")
        worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [
                sys.executable,
                "-m",
                "worker",
                "run",
                "--config",
                str(config),
                "--rules",
                str(args.rules),
                "--quiet",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl() runs before exec
        )
        log.close()
        note(f"worker started (pid {worker.pid}), log in {data / 'worker.log'}")

        tasks.append(asyncio.create_task(demo_traffic(sim, names, note)))
        tasks.append(
            asyncio.create_task(
                sim.run_profile(names, rate=args.rate, duration=None, mix=BACKGROUND_MIX)
            )
        )
        return await _watch(
            args, state=state, sim=sim, inbox=inbox, worker=worker, note=note, plain=plain
        )
    finally:
        await cancel_and_wait(*tasks)
        if worker is not None and worker.poll() is None:
            note("stopping the worker…")
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, 30)
            except subprocess.TimeoutExpired:
                worker.kill()
                await asyncio.to_thread(worker.wait)
        await inbox.stop()
        await sim.stop()
        if broker is not None:
            note("stopping Kafka…")
            await asyncio.to_thread(broker.stop)
        note("stopped.")


async def _watch(
    args: argparse.Namespace,
    *,
    state: DevState,
    sim: Any,
    inbox: AlertInbox,
    worker: subprocess.Popen[bytes],
    note: Callable[[str], None],
    plain: bool,
) -> int:
    live: Any = None
    if not plain:
        from rich.live import Live

        live = Live(render(state), refresh_per_second=2, screen=False)
        live.start()
    seen_calls = 0
    seen_alerts = 0
    deadline = time.monotonic() + args.duration if args.duration else None
    was_ready = False
    try:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            state.worker_status = await asyncio.to_thread(_fetch_status, state.status_url)
            state.update_rates(time.monotonic())
            if state.worker_status.get("ready") and not was_ready:
                was_ready = True
                note("worker ready: subscriptions open, rules loaded, Kafka reachable")
            calls = sim.rest_calls
            for call in calls[seen_calls:]:
                line = describe_call(call)
                if line:
                    state.sent_calls += 1
                    if "Bem-vindo" in line:
                        state.welcomes += 1
                    elif "sendText" in call.path:
                        state.replies += 1
                    note(line)
            seen_calls = len(calls)
            deliveries = list(inbox.deliveries)
            for delivery in deliveries[max(0, len(deliveries) - (inbox.total - seen_alerts)) :]:
                state.alerts += 1
                note(f"⚑ alert on {delivery.path}: {' '.join(delivery.text.split())[:110]}")
            seen_alerts = inbox.total
            if worker.poll() is not None:
                state.worker_exit = worker.returncode
                note(f"the worker exited with status {worker.returncode}; see its log")
                return 1
            if live is not None:
                live.update(render(state))
    finally:
        if live is not None:
            live.stop()
    return 0


def run_dev(args: argparse.Namespace) -> int:
    from worker.cli import CommandError

    if not Path(args.rules).is_dir():
        raise CommandError(f"rules directory {args.rules} does not exist; pass --rules DIR")
    loop = asyncio.new_event_loop()
    main = loop.create_task(_dev(args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    try:
        return loop.run_until_complete(main)
    except asyncio.CancelledError:
        return 0
    except DevKafkaError as exc:
        raise CommandError(str(exc)) from None
    finally:
        loop.close()
