"""``python -m bench [ingest|rules|latency|subscriptions ...] [--quick]``: run the benchmarks,
print their tables, write ``bench/results/<name>.md`` and a summary."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import traceback

from bench.harness import (
    RESULTS_DIR,
    BenchError,
    Report,
    command_line,
    machine_facts,
    markdown_table,
    raise_open_files_limit,
    workspace,
)

#: name -> (module, title). The order is the order of a full run.
BENCHMARKS = {
    "ingest": ("bench.bench_ingest", "Ingest throughput"),
    "rules": ("bench.bench_process", "Rules throughput"),
    "latency": ("bench.bench_latency", "End-to-end latency"),
    "subscriptions": ("bench.bench_subscriptions", "Subscription scale"),
    "housekeeping": ("bench.bench_housekeeping", "Housekeeping walks"),
}


async def run(names: list[str], quick: bool, keep: bool) -> int:
    raise_open_files_limit()
    facts = machine_facts()
    command = command_line()
    reports: list[Report] = []
    failed: list[str] = []
    started = time.monotonic()
    async with workspace(keep=keep) as ws:
        facts = {**facts, "Kafka broker": ws.broker_note}
        print(f"workspace {ws.root}; Kafka {ws.broker_note}", flush=True)
        for name in names:
            module_name, title = BENCHMARKS[name]
            report = Report(name, title, facts, command)
            print(f"\n== {title} ==", flush=True)
            t0 = time.monotonic()
            try:
                module = importlib.import_module(module_name)
                await module.run(ws, report, quick=quick)
            except (BenchError, Exception) as exc:
                failed.append(name)
                detail = str(exc) if isinstance(exc, BenchError) else traceback.format_exc()
                report.note(f"**The benchmark did not complete:**\n\n```\n{detail}\n```")
                print(detail, file=sys.stderr, flush=True)
            report.note(f"_{title}: {time.monotonic() - t0:.0f} s._")
            path = report.write()
            reports.append(report)
            print(report.markdown(), flush=True)
            print(f"(written to {path})", flush=True)
    summary = summary_markdown(reports, command, time.monotonic() - started)
    print(summary)
    if set(names) == set(BENCHMARKS):
        (RESULTS_DIR / "summary.md").write_text(summary, encoding="utf-8")
    return 1 if failed else 0


def summary_markdown(reports: list[Report], command: str, seconds: float) -> str:
    rows = [
        (r.title, target, goal, measured, "n/a" if ok is None else ("yes" if ok else "**no**"))
        for r in reports
        for target, goal, measured, ok in r.verdicts
    ]
    facts = reports[0].facts if reports else {}
    machine = f"{facts.get('CPU', '?')}, {facts.get('cores', '?')} cores, Python {facts.get('Python', '?')}"
    return (
        "## Summary\n\n"
        f"`{command}` on {machine}, {facts.get('Kafka', '')}; took {seconds:.0f} s.\n\n"
        + markdown_table(("benchmark", "target", "goal", "measured", "met"), rows)
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks, print their tables and write bench/results/<name>.md "
        "(and summary.md after a full run).",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter windows, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    return asyncio.run(run(names, args.quick, args.keep))


if __name__ == "__main__":
    sys.exit(main())
