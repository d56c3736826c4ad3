"""What every benchmark needs: the machine's facts, a private Kafka broker, child processes
whose CPU time and memory are read from ``/proc``, percentiles, and markdown tables.

Each measured part runs in its own process, as it would in production, so its CPU time is
its own and not the load generator's. CPU time comes from ``/proc/<pid>/stat`` (user +
system time of every thread), memory from ``/proc/<pid>/status`` (``VmRSS``/``VmHWM``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import re
import resource
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- machine facts
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, str]:
    """The facts a reader needs to compare a number with their own machine's."""
    from worker.devkafka.jars import KAFKA_VERSION

    mem_total = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": mem_total,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Kafka": f"Apache Kafka {KAFKA_VERSION} (single node, same machine)",
        "aiokafka": _version("aiokafka"),
        "faust-streaming": _version("faust-streaming"),
        "websockets": _version("websockets"),
        "orjson": _version("orjson"),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def command_line() -> str:
    """The command that produced these numbers, as a reader would type it."""
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"python -m bench {args}".strip()


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise the soft open-files limit (children inherit it); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- statistics
def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of already sorted values, nearest-rank method."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    return {
        "n": float(len(data)),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": data[-1] if data else math.nan,
    }


# --------------------------------------------------------------------------- formatting
def fmt_int(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.0f}"


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{round(value, digits) + 0.0:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = [list(map(str, headers)), ["---"] * len(headers)]
    body += [[str(cell) for cell in row] for row in rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in body)


@dataclass
class Report:
    """One benchmark's results: tables and notes, written to ``bench/results/<name>.md``."""

    name: str
    title: str
    facts: Mapping[str, str]
    command: str
    sections: list[str] = field(default_factory=list)
    #: One line per target: what was asked, what was measured, met or not.
    verdicts: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def table(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.sections.append(f"### {title}\n\n{markdown_table(headers, rows)}")

    def note(self, text: str) -> None:
        self.sections.append(text)

    def verdict(self, target: str, goal: str, measured: str, met: bool | None) -> None:
        self.verdicts.append((target, goal, measured, met))

    def markdown(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        took = time.time() - self.started
        facts = "\n".join(f"| {k} | {v} |" for k, v in self.facts.items())
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        parts = [
            f"## {self.title}",
            f"Measured {when} in {took:.0f} s with `{self.command}`; load average at the "
            f"end {load} (other work shares this machine: compare rows within a run).",
            f"| machine | |\n| --- | --- |\n{facts}",
        ]
        if self.verdicts:
            parts.append(
                markdown_table(
                    ("target", "goal", "measured", "met"),
                    [(t, g, m, _met(ok)) for t, g, m, ok in self.verdicts],
                )
            )
        parts += self.sections
        return "\n\n".join(parts) + "\n"

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.md"
        path.write_text(self.markdown(), encoding="utf-8")
        return path


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Usage:
    """CPU seconds and memory of one process at one moment."""

    at: float
    cpu: float
    rss: int
    peak_rss: int


def read_usage(pid: int) -> Usage:
    """User + system CPU seconds of every thread of ``pid``, and its resident memory."""
    now = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; fields after it are space separated.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return Usage(now, cpu, rss, peak)


def jit_cpu(pid: int) -> float:
    """CPU seconds so far of a JVM's JIT compiler threads (``C1/C2 CompilerThread<n>``).

    A JVM that was just started spends a good part of its CPU compiling hot code for its
    first minute or so of load; a benchmark of a long-running broker waits until that is
    over.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            if "CompilerThre" in stat[stat.index("(") : stat.rindex(")")]:
                fields = stat[stat.rindex(")") + 2 :].split()
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far, over all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # without guest time, which is already in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def cpu_per_event_us(before: Usage, after: Usage, events: int) -> float:
    return (after.cpu - before.cpu) / events * 1e6 if events > 0 else math.nan


def cpu_share(before: Usage, after: Usage) -> float:
    """Fraction of one core used between two readings."""
    wall = after.at - before.at
    return (after.cpu - before.cpu) / wall if wall > 0 else math.nan


class Child:
    """A child process whose output goes to a log file and whose usage can be read."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> Child:
        # ZAPFLOW_* variables would override the stage's settings behind the benchmark's back;
        # the event loop is not a setting, and passing it on lets a run compare loops.
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ZAPFLOW_") or k == "ZAPFLOW_EVENT_LOOP"
        }
        # The stages run with their work directory as cwd, where ``python -m worker`` would
        # import the installed package: put this checkout first, so that a benchmark run
        # from another checkout (a tree before a change) measures that checkout's code.
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        )
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        log_file = log.open("wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipes else log_file,
                stderr=log_file,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                limit=64 * 1024 * 1024,
            )
        finally:
            log_file.close()
        return cls(name, proc, log)

    def usage(self) -> Usage:
        return read_usage(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def log_problems(self) -> tuple[int, str]:
        """How many ERROR lines the log holds, and the most frequent of them (with the
        exception a logged traceback ends with), so that a stage failing on every event
        is seen in the results."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return 0, ""
        counts: dict[str, int] = {}
        total = 0
        for i, line in enumerate(lines):
            if "[ERROR]" not in line and " ERROR " not in line:
                continue
            total += 1
            message = re.sub(r"^.*?ERROR\]?\s*", "", line).strip()
            message = re.sub(r"[0-9a-f]{6,}|\d+", "N", message)[:160]
            for follow in lines[i + 1 : i + 80]:
                if follow and not follow.startswith((" ", "Traceback", "\t")):
                    if re.match(r"^[\w.]+(Error|Exception|Mismatch)\b", follow):
                        message += f" … {follow.strip()[:200]}"
                    break
            counts[message] = counts.get(message, 0) + 1
        if not counts:
            return 0, ""
        common, n = max(counts.items(), key=lambda kv: kv[1])
        return total, f"{n:,}× {common}"

    async def stop(self, within: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within`` seconds; returns the exit code."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        return self.proc.returncode


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def zapflow_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker", *args]


async def wait_for(
    condition: Any, within: float, what: str, interval: float = 0.1, child: Child | None = None
) -> Any:
    """Poll ``condition()`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if child is not None and not child.alive():
            raise BenchError(
                f"{child.name} exited with {child.proc.returncode} while waiting for {what}\n"
                f"--- {child.log} ---\n{child.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"\n--- {child.log} ---\n{child.log_tail()}" if child else ""
            raise BenchError(f"timed out after {within:g}s waiting for {what}{tail}")
        await asyncio.sleep(interval)


class BenchError(Exception):
    """A benchmark could not run; the message says which part and why."""


# --------------------------------------------------------------------------- Kafka
@dataclass
class Workspace:
    """A temporary directory and the Kafka broker every benchmark of one run shares."""

    root: Path
    bootstrap: str
    broker_note: str
    #: The private broker's process (None for an external cluster).
    broker_pid: int | None = None

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.asynccontextmanager
async def workspace(keep: bool = False) -> AsyncIterator[Workspace]:
    """A temporary directory and a Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS`` or a private one."""
    root = Path(tempfile.mkdtemp(prefix="zapflow-benchmarks-"))
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    try:
        if external:
            yield Workspace(root, external, f"KAFKA_BOOTSTRAP_SERVERS={external}")
        else:
            from worker.devkafka.broker import KafkaBroker

            broker = KafkaBroker(root / "kafka")
            started = time.monotonic()
            await asyncio.to_thread(broker.start)
            note = (
                f"private broker at {broker.bootstrap_servers}, "
                f"started in {time.monotonic() - started:.1f} s"
            )
            yield Workspace(root, broker.bootstrap_servers, note, broker.pid)
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


async def create_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    configs: Mapping[str, str] | None = None,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, partitions, 1, topic_configs=dict(configs or {})) for t in topics]
        )
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


class OffsetReader:
    """Reads how many records topics hold (end offsets) and a group has committed."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: Any = None
        self._admin: Any = None

    async def __aenter__(self) -> OffsetReader:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    @staticmethod
    async def partitions_of(consumer: Any, topic: str) -> list[Any]:
        from aiokafka import TopicPartition

        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(parts)]

    async def partitions(self, topics: Iterable[str]) -> list[Any]:
        result = []
        for topic in topics:
            result += await self.partitions_of(self._consumer, topic)
        return result

    async def end_total(self, topics: Iterable[str]) -> int:
        parts = await self.partitions(topics)
        if not parts:
            return 0
        ends = await self._consumer.end_offsets(parts)
        return int(sum(ends.values()))

    async def committed_total(self, group: str, topics: Iterable[str]) -> int:
        from aiokafka.errors import KafkaError

        wanted = set(topics)
        try:
            offsets = await self._admin.list_consumer_group_offsets(group)
        except KafkaError:  # the group (or the offsets topic) does not exist yet
            return 0
        return int(
            sum(
                meta.offset
                for tp, meta in offsets.items()
                if tp.topic in wanted and meta.offset > 0
            )
        )


# --------------------------------------------------------------------------- profiling
def profiler() -> str | None:
    """The py-spy executable named by ``BENCH_PYSPY`` (profiling is off without it)."""
    path = os.environ.get("BENCH_PYSPY")
    return path if path and Path(path).exists() else None


async def profile(child: Child, seconds: float, name: str) -> Path | None:
    """Sample ``child`` with py-spy for ``seconds`` into ``results/profiles/<name>.txt``
    (collapsed stacks) when ``BENCH_PYSPY`` is set; returns the file, or None.

    Only samples of threads holding the GIL (``--gil``): py-spy's own test for an idle
    thread passes threads waiting in the event loop's poll on this machine, and a third of
    a stage's samples were such waits, shown as the loop's "self" time (`perf` put uvloop's
    own code at 3 % of the rule stage's CPU). With ``--gil`` the samples add up to the
    CPU time the stage used.
    """
    spy = profiler()
    if spy is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    out = RESULTS_DIR / "profiles" / f"{slug}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(child.pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--function",
        "--gil",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    return out if out.exists() else None


#: Frames every stack passes through (event loop, start-up); left out of inclusive shares.
_GENERIC_FRAMES = (
    "asyncio/",
    "runpy",
    "threading.py",
    "<module>",
    "cli.py",
    "main (",
    "mode/",
    "faust/worker.py",
)


def top_frames(
    collapsed: Path, count: int = 15
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(self, inclusive) shares of the busiest functions in a py-spy collapsed-stack file."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            if not any(skip in frame for skip in _GENERIC_FRAMES):
                inclusive[frame] = inclusive.get(frame, 0) + samples
    if not total:
        return [], []

    def top(table: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:count]
        return [(frame, n / total) for frame, n in ranked]

    return top(own), top(inclusive)


def profile_note(report: Report, title: str, path: Path | None, count: int = 12) -> None:
    """Add the busiest functions of one profile to ``report``."""
    if path is None:
        return
    own, inclusive = top_frames(path, count)
    rel = path.relative_to(RESULTS_DIR.parent.parent)
    report.table(
        f"Profile: {title} (py-spy, {rel})",
        ("self %", "function (self time)", "incl. %", "function (inclusive)"),
        [
            (f"{o[1] * 100:.1f}", f"`{o[0]}`", f"{i[1] * 100:.1f}", f"`{i[0]}`")
            for o, i in zip(own, inclusive, strict=False)
        ],
    )
