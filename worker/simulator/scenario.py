"""Scripted scenarios: a YAML timeline of events and faults.

```yaml
instances: [shop-bot]                 # created when missing
steps:
  - at: 0.5                            # seconds from the start ...
    emit: {instance: shop-bot, event: messages.upsert}
  - after: 1                           # ... or after the previous step
    emit:
      instance: shop-bot
      event: connection.update
      set: {state: close, statusReason: 428}   # merged over a generated payload
  - after: 0.2
    emit: {instance: shop-bot, event: messages.upsert, count: 10, every: 0.1}
  - after: 1
    fault: {close_sockets: {instance: shop-bot}}
  - after: 1
    fault: {refuse_handshakes: 3}
  - after: 1
    profile: {instances: [shop-bot], rate: 200, duration: 5}
```

Faults: ``close_sockets: {instance?, event?}``, ``refuse_handshakes: N``,
``send_raw: {instance, event, text | base64}``, ``send_large: {instance, event, size}``,
``answer_pings: true|false``, ``restart: {downtime?}``.

Loading is pure and reports every problem as ``file:line: what, what was expected``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from worker.events import SENT_EVENTS

if TYPE_CHECKING:
    from worker.simulator.simulator import Simulator

_LINE: Final = "__line__"
_TOP_KEYS: Final = ("instances", "steps", "name")
_STEP_KEYS: Final = ("at", "after", "emit", "fault", "profile")
_ACTIONS: Final = ("emit", "fault", "profile")
_EMIT_KEYS: Final = ("instance", "event", "payload", "set", "count", "every")
_FAULTS: Final = (
    "close_sockets",
    "refuse_handshakes",
    "send_raw",
    "send_large",
    "answer_pings",
    "restart",
)
_PROFILE_KEYS: Final = ("instances", "rate", "duration", "count", "mix", "min_size")


class ScenarioError(ValueError):
    """A scenario file that cannot run; ``problems`` are the lines to show, one each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _LineLoader(yaml.SafeLoader):
    """Keeps the 1-based line of every mapping under ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[_LINE] = node.start_mark.line + 1
        return mapping


@dataclass(frozen=True)
class Step:
    at: float
    """Seconds from the start of the scenario."""
    action: str
    """``emit``, ``fault`` or ``profile``."""
    args: Mapping[str, Any]
    line: int


@dataclass(frozen=True)
class Scenario:
    name: str
    instances: tuple[str, ...]
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def length(self) -> float:
        return self.steps[-1].at if self.steps else 0.0


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != _LINE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _unknown(where: str, key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown key {key!r}{hint}; expected one of: {', '.join(allowed)}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _check_emit(where: str, args: Any, problems: list[str]) -> None:
    if not isinstance(args, dict):
        problems.append(f"{where}: emit needs a mapping with instance and event")
        return
    problems.extend(_unknown(where, k, _EMIT_KEYS) for k in args if k not in (*_EMIT_KEYS, _LINE))
    for key in ("instance", "event"):
        if not isinstance(args.get(key), str):
            problems.append(f"{where}: emit needs {key} (a string)")
    event = args.get("event")
    if isinstance(event, str) and event not in SENT_EVENTS:
        problems.append(
            f"{where}: the gateway never sends {event!r}; use one of: {', '.join(SENT_EVENTS)}"
        )
    if "payload" in args and "set" in args:
        problems.append(f"{where}: give payload or set, not both")
    if "set" in args and not isinstance(args["set"], dict):
        problems.append(f"{where}: set must be a mapping of fields")
    if "count" in args and not (isinstance(args["count"], int) and args["count"] >= 1):
        problems.append(f"{where}: count must be a whole number of 1 or more")
    if "every" in args and not _number(args["every"]):
        problems.append(f"{where}: every must be a number of seconds")


def _check_fault(where: str, args: Any, problems: list[str]) -> None:
    name = next((k for k in args if k != _LINE), None) if isinstance(args, dict) else args
    if isinstance(args, str):
        args = {args: {}}
    if not isinstance(args, dict) or len([k for k in args if k != _LINE]) != 1:
        problems.append(f"{where}: fault needs exactly one of: {', '.join(_FAULTS)}")
        return
    if name not in _FAULTS:
        problems.append(_unknown(where, str(name), _FAULTS))
        return
    value = args[name]
    if name == "refuse_handshakes" and not (isinstance(value, int) and value >= 0):
        problems.append(f"{where}: refuse_handshakes needs a count")
    elif name == "answer_pings" and not isinstance(value, bool):
        problems.append(f"{where}: answer_pings needs true or false")
    elif name in ("send_raw", "send_large"):
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) for k in ("instance", "event")
        ):
            problems.append(f"{where}: {name} needs instance and event")
        elif name == "send_raw" and ("text" in value) == ("base64" in value):
            problems.append(f"{where}: send_raw needs text or base64 (one of them)")
        elif name == "send_raw" and "base64" in value:
            try:
                base64.b64decode(str(value["base64"]), validate=True)
            except binascii.Error:
                problems.append(f"{where}: send_raw base64 is not valid base64")
        elif name == "send_large" and not (
            isinstance(value.get("size"), int) and value["size"] > 0
        ):
            problems.append(f"{where}: send_large needs size (bytes)")


def _check_profile(where: str, args: Any, problems: list[str]) -> None:
    if not isinstance(args, dict):
        problems.append(f"{where}: profile needs a mapping")
        return
    problems.extend(
        _unknown(where, k, _PROFILE_KEYS) for k in args if k not in (*_PROFILE_KEYS, _LINE)
    )
    if "duration" not in args and "count" not in args:
        problems.append(f"{where}: profile needs duration or count, or it would never end")


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and check a scenario. Raises ScenarioError listing every problem."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ScenarioError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(doc, dict):
        raise ScenarioError([f"{source}:1: a scenario is a mapping with 'steps'"])
    problems = [
        _unknown(f"{source}:{doc[_LINE]}", k, _TOP_KEYS)
        for k in doc
        if k not in (*_TOP_KEYS, _LINE)
    ]
    instances = doc.get("instances", [])
    if not isinstance(instances, list) or not all(isinstance(i, str) for i in instances):
        problems.append(f"{source}:{doc[_LINE]}: instances must be a list of names")
        instances = []
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list):
        problems.append(f"{source}:{doc[_LINE]}: steps must be a list")
        raw_steps = []
    steps: list[Step] = []
    clock = 0.0
    for number, raw in enumerate(raw_steps, start=1):
        line: int = raw[_LINE] if isinstance(raw, dict) else doc[_LINE]
        where = f"{source}:{line}: step {number}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: a step is a mapping")
            continue
        problems.extend(
            _unknown(where, k, _STEP_KEYS) for k in raw if k not in (*_STEP_KEYS, _LINE)
        )
        actions = [a for a in _ACTIONS if a in raw]
        if len(actions) != 1:
            problems.append(f"{where}: a step needs exactly one of: {', '.join(_ACTIONS)}")
            continue
        if "at" in raw and "after" in raw:
            problems.append(f"{where}: give at or after, not both")
            continue
        timing: Any = raw.get("at", raw.get("after", 0))
        if not _number(timing):
            problems.append(f"{where}: at/after must be a number of seconds, got {timing!r}")
            continue
        at = float(timing) if "at" in raw else clock + float(timing)
        if at < clock:
            problems.append(f"{where}: at {at:g} s is before the previous step ({clock:g} s)")
            continue
        clock = at
        action = actions[0]
        {"emit": _check_emit, "fault": _check_fault, "profile": _check_profile}[action](
            where, raw[action], problems
        )
        args = raw[action] if isinstance(raw[action], dict) else {str(raw[action]): {}}
        steps.append(Step(at, action, _strip(args), line))
    if problems:
        raise ScenarioError(problems)
    return Scenario(str(doc.get("name", source)), tuple(instances), tuple(steps))


SHIPPED: Final = Path(__file__).parent / "scenarios"
"""Scenarios that ship with zapflow; ``--scenario flapping`` finds ``flapping.yaml`` here."""


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def load_scenario(path: Path) -> Scenario:
    """Load a scenario file, or a shipped scenario by name when no such file exists."""
    if not path.exists() and path.suffix == "" and (SHIPPED / f"{path.name}.yaml").exists():
        path = SHIPPED / f"{path.name}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        shipped = ", ".join(shipped_scenarios())
        raise ScenarioError(
            [f"{path}: cannot read the scenario: {exc.strerror} (shipped scenarios: {shipped})"]
        ) from None
    return parse_scenario(text, str(path))


async def _run_step(sim: Simulator, step: Step) -> None:
    args = dict(step.args)
    if step.action == "emit":
        count, every = int(args.get("count", 1)), float(args.get("every", 0))
        for n in range(count):
            payload = args.get("payload")
            if "set" in args:
                generated = sim.generate(args["instance"], args["event"])
                payload = {**generated, **args["set"]} if isinstance(generated, dict) else generated
            await sim.emit(args["instance"], args["event"], payload)
            if every and n + 1 < count:
                await asyncio.sleep(every)
    elif step.action == "profile":
        instances = args.pop("instances", None) or [i.name for i in sim.instances]
        await sim.run_profile(instances, **args)
    else:
        name, value = next(iter(args.items()))
        if name == "close_sockets":
            await sim.close_sockets(**(value or {}))
        elif name == "refuse_handshakes":
            sim.refuse_handshakes(int(value))
        elif name == "send_raw":
            data: str | bytes = (
                value["text"] if "text" in value else base64.b64decode(value["base64"])
            )
            await sim.send_raw(value["instance"], value["event"], data)
        elif name == "send_large":
            await sim.send_large(value["instance"], value["event"], int(value["size"]))
        elif name == "answer_pings":
            sim.answer_pings(bool(value))
        elif name == "restart":
            await sim.restart(**(value or {}))


async def run_scenario(sim: Simulator, scenario: Scenario) -> None:
    """Create missing instances, then play the steps on time (a slow step delays later ones)."""
    known = {i.name for i in sim.instances}
    for name in scenario.instances:
        if name not in known:
            sim.create_instance(name)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for step in scenario.steps:
        delay = start + step.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await _run_step(sim, step)
