"""``zapflow simulate``: a CodeChat ``whatsapp-api`` 1.3.x gateway simulator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8084


def _mix(text: str) -> dict[str, float]:
    """``messages.upsert=60,messages.update=20`` -> weights."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        event, _, weight = part.partition("=")
        try:
            mix[event.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"weight of {event.strip()!r} is not a number: {weight!r}"
            ) from None
    return mix


def _rate(text: str) -> float | None:
    """Events per second, or ``max`` (None) for as fast as subscribers take them."""
    if text == "max":
        return None
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'max': {text!r}") from None
    if rate < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more events/s, got {text}")
    return rate


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run a CodeChat whatsapp-api gateway simulator (WebSocket, REST, load, faults)",
        description=(
            "Serve a CodeChat whatsapp-api 1.3.x look-alike: WebSocket /ws/events and the "
            "REST API on one port, plus a /_sim/ control API. Prints the instances, their "
            "tokens and the URLs to use, then runs until interrupted."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port, 0 = any free one (default %(default)s)",
    )
    parser.add_argument(
        "--instances", type=int, default=1, metavar="N", help="instances to create (default 1)"
    )
    parser.add_argument(
        "--names",
        default=None,
        metavar="A,B",
        help="instance names instead of sim-1..sim-N",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help=(
            "generated events per second over all instances, or 'max' (default 0: only on request)"
        ),
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=None,
        metavar="E=W,...",
        help="event mix for --rate, e.g. messages.upsert=60,messages.update=20",
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=0,
        metavar="BYTES",
        help="pad generated messages to this size",
    )
    parser.add_argument(
        "--scenario",
        default=None,
        metavar="FILE",
        help="YAML scenario to play: a file, or a shipped one by name (flapping, busy-shop)",
    )
    parser.add_argument(
        "--secret", default="sim-secret", help="JWT secret (AUTHENTICATION_JWT_SECRET)"
    )
    parser.add_argument(
        "--apikey", default="sim-apikey", help="global api key (AUTHENTICATION_GLOBAL_AUTH_TOKEN)"
    )
    parser.add_argument(
        "--jwt-expires-in",
        default="0",
        metavar="S",
        help='AUTHENTICATION_JWT_EXPIRES_IN as upstream reads it: "0" = never, else 3600 s',
    )
    parser.add_argument("--seed", type=int, default=1, help="payload seed (default 1)")
    parser.add_argument(
        "--participants",
        choices=("v7", "v6"),
        default="v7",
        help="group participants as v7 objects or v6 strings (default v7)",
    )
    parser.add_argument(
        "--tokens-dir",
        type=Path,
        default=None,
        help="also write each instance's token to DIR/<instance>.token (for ${file:...} config)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log handshakes and socket changes to stderr"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import errno
    import signal
    import sys
    from pathlib import Path

    from worker.cli import CommandError
    from worker.simulator import Simulator
    from worker.simulator.scenario import ScenarioError, load_scenario, run_scenario
    from worker.simulator.traffic import Profile, ProfileError

    _raise_open_file_limit()
    names = [n.strip() for n in args.names.split(",")] if args.names else []
    names = [n for n in names if n] or [f"sim-{n}" for n in range(1, args.instances + 1)]
    scenario = None
    if args.scenario:
        try:
            scenario = load_scenario(Path(args.scenario))
        except ScenarioError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            raise CommandError(
                f"{args.scenario}: the scenario has problems; nothing started"
            ) from None
    generating = args.rate is None or args.rate > 0
    if generating:
        try:
            Profile.build(names, rate=args.rate, mix=args.mix, min_size=args.min_size)
        except ProfileError as exc:
            raise CommandError(str(exc)) from None

    sim = Simulator(
        secret=args.secret,
        apikey=args.apikey or None,
        host=args.host,
        port=args.port,
        seed=args.seed,
        jwt_expires_in=args.jwt_expires_in,
        participants_style=args.participants,
    )
    try:
        await sim.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {args.port} on {args.host} is already in use; "
                "choose another with --port (0 = any free port)"
            ) from None
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    for name in names:
        sim.create_instance(name)
    if args.tokens_dir is not None:
        args.tokens_dir.mkdir(parents=True, exist_ok=True)
        for instance in sim.instances:
            (args.tokens_dir / f"{instance.name}.token").write_text(instance.token + "\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    _print_banner(sim, args)
    if generating:
        sim.spawn(sim.run_profile(names, rate=args.rate, mix=args.mix, min_size=args.min_size))
    if scenario is not None:
        name = scenario.name

        async def play() -> None:
            await run_scenario(sim, scenario)
            print(f"scenario {name!r} finished", flush=True)

        sim.spawn(play())
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(Exception):
            await sim.stop()
    counters = sim.counters()
    print(
        f"stopped: {counters.emitted} events emitted, {counters.delivered} delivered, "
        f"{counters.dropped} dropped; {len(sim.rest_calls)} REST calls",
        flush=True,
    )
    return 0


def _print_banner(sim: Any, args: argparse.Namespace) -> None:
    if args.rate is None:
        traffic = f"as fast as subscribers take it, over {len(sim.instances)} instance(s)"
    elif args.rate:
        traffic = f"{args.rate:g} events/s over {len(sim.instances)} instance(s)"
    else:
        traffic = "none generated (POST /_sim/emit or /_sim/profile)"
    lines = [
        f"CodeChat whatsapp-api 1.3.x simulator on {sim.http_url}",
        f"  socket   {sim.ws_url}?event=<event>&token=<token>",
        f"  rest     {sim.http_url}   global apikey: {args.apikey or '(none: open auth)'}",
        f"  control  {sim.http_url}/_sim/",
        f"  traffic  {traffic}",
        "",
        f"{'instance':<20} {'id':>3}  token",
    ]
    lines += [f"{i.name:<20} {i.id:>3}  {i.token}" for i in sim.instances]
    first = sim.instances[0].name if sim.instances else None
    if first is not None:
        lines += ["", f"e.g. {sim.subscription_url(first, 'messages.upsert')}"]
    lines.append("Ctrl+C stops.")
    print("\n".join(lines), flush=True)


def _raise_open_file_limit() -> None:
    """Let the simulator hold thousands of sockets (one per instance and event)."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # If raising fails, keep the soft limit; accept() will say so when it runs out.
    with contextlib.suppress(ValueError, OSError):
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
