"""``zapflow status``: ask a running zapflow process over its HTTP port and print what it says.

The process answers ``/status`` with one section per stage (ingest, rules, actions, ...).
Lists of records become tables; everything else becomes ``key: value`` lines, so a stage
can add fields without this module changing.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_HEADER_KEYS = ("started_at", "uptime_s", "event_loop", "ready", "checks")


class StatusUnavailable(Exception):
    """No zapflow process answered at the given address."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"no zapflow process answered at {self.url} ({self.reason}); is it running, and is "
            "--url its metrics port (config 'http.port', default 9464)?"
        )


def fetch_status(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StatusUnavailable(url, str(getattr(exc, "reason", exc))) from exc
    if not isinstance(data, dict):
        raise StatusUnavailable(url, "the answer was not a JSON object")
    return data


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(title: str, rows: Sequence[Mapping[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def render_status(status: Mapping[str, Any], console: Console) -> None:
    ready = "ready" if status.get("ready") else "NOT READY"
    loop = f" on {status['event_loop']}" if status.get("event_loop") else ""
    console.print(f"[bold]zapflow[/bold] up {status.get('uptime_s', '?')} s{loop} — {ready}")
    for name, check in (status.get("checks") or {}).items():
        mark = "✓" if check.get("ok") else "✗"
        console.print(f"  {mark} {name}: {check.get('detail')}")
    for section, body in status.items():
        if section in _HEADER_KEYS:
            continue
        console.print()
        if not isinstance(body, Mapping):
            console.print(f"[bold]{section}[/bold]: {_cell(body)}")
            continue
        scalars = {k: v for k, v in body.items() if not _is_rows(v)}
        if scalars:
            line = "  ".join(f"{k}={_cell(v)}" for k, v in scalars.items())
            console.print(f"[bold]{section}[/bold]  {line}")
        for key, value in body.items():
            if _is_rows(value):
                console.print(_table(f"{section}: {key}", value))


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def run(args: Any) -> int:
    from worker.cli import CommandError

    try:
        status = fetch_status(args.url)
    except StatusUnavailable as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        # Piped output is not cut to 80 columns: tables stay whole for grep and logs.
        render_status(status, Console(width=None if sys.stdout.isatty() else 200))
    return 0 if status.get("ready") else 3
