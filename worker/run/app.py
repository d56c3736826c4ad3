"""Assembling ``zapflow run``: every stage that is asked for, in one process and one event loop.

- process: the Faust app of the rule stage (agents, state tables, timers, reload);
- actions: the executor, registered on the same Faust app (one consumer group, one worker);
- ingest: the subscriptions, as a service the Faust worker starts first and stops last;
- the status port (metrics, health, readiness, status), as another service.

When only ingest runs, no Faust app is built at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mode import Service

from worker import __version__
from worker.eventloop import in_use as event_loop_in_use
from worker.events import actions_topic, dlq_topic, event_topic
from worker.fleet.roster import ownership_status
from worker.ingest.service import IngestService
from worker.ingest.stats import SubscriptionState
from worker.kafka_security import client_settings, faust_credentials
from worker.observability.logs import logging_config
from worker.observability.server import Observability, StatusServer
from worker.run.config import RunConfig
from worker.run.metrics import IngestCollector, ProcessCollector, RuleTally, TallyingEngine
from worker.run.services import IngestRunner, StatusRunner
from worker.stopping import stop_budget, stop_consumer
from worker.streaming import prepare_worker

log = logging.getLogger("zapflow.run")


class StartError(Exception):
    """``zapflow run`` cannot start; the message says why and what to do."""


@dataclass
class KafkaProbe:
    """Whether the Kafka cluster answered lately; refreshed in the background for /readyz."""

    bootstrap_servers: str
    #: Security settings of the aiokafka client (worker.kafka_security).
    client: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    detail: str = "not checked yet"
    checked_at: float = 0.0

    async def check(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000, **self.client
        )
        try:
            async with asyncio.timeout(6):
                await admin.start()
            async with asyncio.timeout(6):
                cluster = await admin.describe_cluster()
            brokers = len(cluster.get("brokers", []))
            self.ok, self.detail = brokers > 0, f"{self.bootstrap_servers} ({brokers} broker(s))"
        except Exception as exc:
            self.ok, self.detail = (
                False,
                f"{self.bootstrap_servers} unreachable ({type(exc).__name__})",
            )
        finally:
            await admin.close()
            self.checked_at = time.time()


@dataclass
class LagProbe:
    """Consumer lag of the worker's consumer group, per topic partition, for /metrics."""

    bootstrap_servers: str
    group_id: str
    #: Security settings of the aiokafka clients (worker.kafka_security).
    client: dict[str, Any] = field(default_factory=dict)
    #: (topic, partition) -> records not yet committed by the group
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    async def check(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000, **self.client
        )
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, **self.client)
        try:
            await admin.start()
            committed = await admin.list_consumer_group_offsets(self.group_id)
            if not committed:
                return
            await consumer.start()
            ends = await consumer.end_offsets(list(committed))
            self.lag = {
                (tp.topic, tp.partition): max(0, ends[tp] - meta.offset)
                for tp, meta in committed.items()
                if meta.offset >= 0 and tp in ends
            }
        except Exception:  # the Kafka probe reports reachability; lag is best effort
            log.debug("consumer lag of %s not read", self.group_id, exc_info=True)
        finally:
            await stop_consumer(consumer)
            await admin.close()


class LagCollector:
    """``zapflow_consumer_lag`` from :class:`LagProbe`."""

    def __init__(self, probe: LagProbe) -> None:
        self.probe = probe

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "zapflow_consumer_lag",
            "Records in the topic not yet committed by the worker's consumer group.",
            labels=["group", "topic", "partition"],
        )
        for (topic, partition), lag in sorted(self.probe.lag.items()):
            family.add_metric([self.probe.group_id, topic, str(partition)], lag)
        yield family


class KafkaProbeRunner(Service):
    """Checks the cluster (and the consumer lag) every few seconds."""

    def __init__(
        self, probe: KafkaProbe, lag: LagProbe | None = None, interval: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.probe = probe
        self.lag = lag
        self.interval = interval

    @Service.task
    async def _probe(self) -> None:
        while not self.should_stop:
            await self.probe.check()
            if self.lag is not None and self.probe.ok:
                await self.lag.check()
            await self.sleep(self.interval)


@dataclass
class Assembly:
    """What ``zapflow run`` built, for the CLI and for tests."""

    config: RunConfig
    obs: Observability
    services: list[Service] = field(default_factory=list)
    app: Any = None
    ingest: IngestService | None = None
    processor: Any = None
    watcher: Any = None
    executor: Any = None
    tally: RuleTally = field(default_factory=RuleTally)
    topics: list[str] = field(default_factory=list)
    #: The topics the Faust app consumes (anchored before it starts, see worker.offsets).
    consumed: list[str] = field(default_factory=list)
    #: The Faust app's own topics (changelogs, ticks) and their settings, created up front.
    internal: dict[str, dict[str, str]] = field(default_factory=dict)
    status_server: StatusServer | None = None
    #: Keyword arguments of every aiokafka client of the run (``kafka.security``).
    kafka_client: dict[str, Any] = field(default_factory=dict)
    #: Called on SIGHUP: the rules reload, the instances reload (see worker.run.reload).
    on_sighup: list[Callable[[], None]] = field(default_factory=list)
    kafka_probe: KafkaProbe | None = None

    def banner(self) -> str:
        """The start-up lines: what runs, against what."""
        cfg = self.config
        kafka = cfg.shared.kafka
        lines = [
            f"zapflow {__version__}: running {', '.join(cfg.stages)} "
            f"(config {cfg.path}, event loop {event_loop_in_use()})"
        ]
        lines.append(
            f"  kafka     {kafka.bootstrap_servers}, topics {kafka.topic_prefix}* "
            f"({kafka.partitions} partitions, replication {kafka.replication_factor})"
        )
        if self.ingest is not None:
            subs = len(cfg.shared.subscriptions())
            lines.append(
                f"  ingest    {subs} subscriptions over {len(cfg.shared.instances)} instances "
                f"from {cfg.shared.gateway_url}"
            )
        if self.watcher is not None:
            bundle = self.watcher.current.bundle
            lines.append(
                f"  rules     {len(getattr(bundle, 'rules', ()))} rules from {self.watcher.directory}, "
                f"version {bundle.version}, on {', '.join(sorted(bundle.events))}"
            )
        if self.executor is not None:
            gateway = self.executor.settings.gateway
            lines.append(f"  actions   gateway REST {gateway.url} (auth {gateway.auth})")
        if self.status_server is not None:
            url = f"http://{cfg.http.host}:{cfg.http.port}"
            lines.append(f"  http      {url}/metrics /healthz /readyz /status")
        return "\n".join(lines)


def assemble(
    config: RunConfig,
    rules_dir: Path,
    *,
    output: Callable[[str], None] | None = None,
) -> Assembly:
    """Build every stage of ``config.stages``; nothing is started yet.

    Raises:
        StartError: the rules do not load.
    """
    from worker.rules import RuleLoadError

    obs = Observability()
    built = Assembly(config=config, obs=obs)
    kafka = config.shared.kafka

    if config.process is not None:
        from worker.process.app import build_app
        from worker.process.reload import RulesWatcher

        engine = TallyingEngine(built.tally)
        try:
            watcher = RulesWatcher.start(rules_dir, engine)
        except RuleLoadError as exc:
            raise StartError(f"rules in {rules_dir} do not load:\n{exc}") from None
        process_app = build_app(
            _with_credentials(config.process, kafka.security), watcher, engine, sighup=False
        )
        built.on_sighup.append(process_app.request_reload)
        built.app, built.processor, built.watcher = process_app.app, process_app.processor, watcher
        built.topics += [event_topic(e, kafka.topic_prefix) for e in process_app.subscribed]
        built.topics.append(actions_topic(kafka.topic_prefix))
        built.consumed += [event_topic(e, kafka.topic_prefix) for e in process_app.subscribed]
        built.internal[process_app.ticks.get_topic_name()] = {}
        # Envelopes on their way to rekeyed rules: consumed, so anchored like the sources.
        built.internal[process_app.rekeyed.get_topic_name()] = {}
        built.consumed.append(process_app.rekeyed.get_topic_name())
        obs.registry.register(
            ProcessCollector(
                process_app.processor.counters,
                built.tally,
                lambda: str(watcher.current.bundle.version),
            )
        )
        obs.readiness["rules"] = lambda: (
            True,
            f"{len(getattr(watcher.current.bundle, 'rules', ()))} rules, version {watcher.current.bundle.version}",
        )
        obs.status["rules"] = lambda: {
            "bundle_version": watcher.current.bundle.version,
            **_process_counters(process_app.processor.counters),
            "rules": [
                {"rule": rule, **row} for rule, row in sorted(built.tally.per_rule().items())
            ],
        }

    if config.actions is not None:
        from worker.actions.executor import register_executor
        from worker.actions.metrics import ActionsCollector

        if built.app is None:
            built.app = _executor_only_app(config)
        built.executor = register_executor(built.app, config.actions)
        built.topics += [actions_topic(kafka.topic_prefix), dlq_topic(kafka.topic_prefix)]
        built.consumed.append(actions_topic(kafka.topic_prefix))
        executor = built.executor
        obs.status["actions"] = lambda: {
            "pending": executor.pending,
            "in_flight": executor.in_flight,
            "performed": sum(executor.stats.performed.values()),
            "dead_letters": sum(executor.stats.dead_lettered.values()),
        }
        obs.registry.register(ActionsCollector(executor))

    if config.ingest is not None:
        from worker.run.reload import reload_soon

        built.ingest = IngestService(config.ingest, output=output)
        built.on_sighup.append(lambda: reload_soon(built, output))
        budget = stop_budget(built.app) if built.app is not None else None
        built.services.append(IngestRunner(built.ingest, budget))
        stats = built.ingest.stats
        obs.registry.register(IngestCollector(stats))
        obs.readiness["subscriptions"] = lambda: _subscriptions_ready(stats)
        obs.status["ingest"] = lambda: _ingest_status(stats)
        ingest = built.ingest
        obs.status["ownership"] = lambda: ownership_status(ingest)

    if built.app is not None:
        from worker.consumer import ConsumerCollector
        from worker.process.topics import internal_topics

        built.internal.update(internal_topics(built.app))
        obs.registry.register(ConsumerCollector(built.app))
    client = built.kafka_client = client_settings(kafka.security)
    probe = built.kafka_probe = KafkaProbe(kafka.bootstrap_servers, client)
    lag = None
    if built.app is not None:
        lag = LagProbe(kafka.bootstrap_servers, str(built.app.conf.id), client)
        obs.registry.register(LagCollector(lag))
        obs.readiness["consumers"] = _first_assignment(built.app)
    built.services.append(KafkaProbeRunner(probe, lag))
    obs.readiness["kafka"] = lambda: (probe.ok, probe.detail)

    if config.http.enabled:
        built.status_server = StatusServer(obs, host=config.http.host, port=config.http.port)
        built.services.append(StatusRunner(built.status_server))
    built.topics = sorted(set(built.topics))
    return built


def _first_assignment(app: Any) -> Callable[[], tuple[bool, str]]:
    """Readiness of the Faust stages: consuming once their first rebalance has completed.

    Until then ingest may already run, but nothing reads the topics; a deploy that waits
    for ``/readyz`` should wait for that too.
    """
    assigned = False

    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        nonlocal assigned
        assigned = True

    app.on_rebalance_complete.connect(on_rebalance_complete)

    def check() -> tuple[bool, str]:
        if assigned:
            return True, "partitions assigned, consuming"
        return False, "waiting for the first partition assignment"

    return check


def _with_credentials(settings: Any, security: Any) -> Any:
    """The process settings with the Faust app's ``broker_credentials`` from ``kafka.security``."""
    credentials = faust_credentials(security)
    if credentials is None:
        return settings
    return dataclasses.replace(
        settings, faust={"broker_credentials": credentials, **settings.faust}
    )


def _executor_only_app(config: RunConfig) -> Any:
    import faust

    from worker.batching import use_broker_batching
    from worker.consumer import use_gapless_consumer
    from worker.streaming import QuietMonitor

    assert config.actions is not None
    kafka = config.shared.kafka
    app = faust.App(
        "zapflow-actions",
        broker=[f"kafka://{s.strip()}" for s in kafka.bootstrap_servers.split(",")],
        store="rocksdb://",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        table_standby_replicas=0,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_credentials=faust_credentials(kafka.security),
        Monitor=QuietMonitor,
    )
    return use_broker_batching(use_gapless_consumer(app))


def _process_counters(counters: Any) -> dict[str, int]:
    return {k: int(v) for k, v in vars(counters).items() if isinstance(v, int)}


def _subscriptions_ready(stats: Any) -> tuple[bool, str]:
    subs = list(stats.subscriptions.values())
    waiting = [s for s in subs if s.connects == 0 and s.state is not SubscriptionState.AUTH_FAILED]
    counts = stats.count_states()
    detail = (
        f"{counts[SubscriptionState.OPEN]} open, {counts[SubscriptionState.AUTH_FAILED]} auth-failed, "
        f"{len(waiting)} not yet connected"
    )
    return (bool(subs) and not waiting), detail


def _ingest_status(stats: Any) -> dict[str, Any]:
    rows = []
    for sub in sorted(stats.subscriptions.values(), key=lambda s: (s.instance, s.event)):
        rows.append(
            {
                "instance": sub.instance,
                "event": sub.event,
                "state": str(sub.state),
                "since": getattr(sub, "since", None),
                "last_event": getattr(sub, "last_frame_at", None),
                "frames": sub.frames,
                "reconnects": sub.reconnects,
                "auth_failures": sub.auth_failures,
            }
        )
    return {
        "received": stats.received,
        "produced": stats.produced,
        "invalid_frames": stats.invalid_frames,
        "kafka": stats.mode,
        "spool_depth": stats.spool_depth,
        "subscriptions": rows,
    }


def run(
    config: RunConfig,
    rules_dir: Path,
    *,
    log_format: str = "text",
    log_level: str = "info",
    quiet: bool = False,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status.

    The status port opens first, so ``/healthz`` answers and ``/readyz`` says what is
    missing while the process waits for Kafka to create its topics.
    """
    import logging.config
    import signal

    def say(line: str) -> None:
        print(line, flush=True)

    logs = logging_config(log_format, log_level)
    logging.config.dictConfig(logs)
    built = assemble(config, rules_dir, output=None if quiet else say)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if built.status_server is not None:
            loop.run_until_complete(built.status_server.start())
        ready = loop.run_until_complete(_prepare_kafka(config, built, stop))
    except Exception as exc:
        loop.run_until_complete(_stop_server(built))
        loop.close()
        raise StartError(str(exc)) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    if not ready:  # stopped while waiting for Kafka
        loop.run_until_complete(_stop_server(built))
        loop.close()
        return 0
    if not quiet:
        say(built.banner())
    if built.on_sighup:
        # Taken before the stages start, so a SIGHUP at any moment reloads and never kills.
        loop.add_signal_handler(signal.SIGHUP, _call_each, tuple(built.on_sighup))
    if built.app is None:
        from mode import Worker

        worker: Any = Worker(
            *built.services,
            loop=loop,
            loglevel=log_level,
            logging_config=logs,
            redirect_stdouts=False,
        )
    else:
        import faust

        worker = faust.Worker(
            built.app,
            *built.services,
            loop=loop,
            loglevel=log_level,
            logging_config=logs,
            redirect_stdouts=False,
        )
    prepare_worker(worker)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    return 0


def _call_each(callbacks: tuple[Callable[[], None], ...]) -> None:
    for callback in callbacks:
        callback()


async def _stop_server(built: Assembly) -> None:
    if built.status_server is not None:
        await built.status_server.stop()


async def _prepare_kafka(config: RunConfig, built: Assembly, stop: asyncio.Event) -> bool:
    """Wait until Kafka answers (ingest alone does not need it: it spools), create topics.

    Returns False if told to stop meanwhile.
    """
    kafka = config.shared.kafka
    if built.app is None:
        return True
    probe = built.kafka_probe
    assert probe is not None, "assemble() makes the probe"
    delay, told = 1.0, False
    while True:
        await probe.check()
        if probe.ok:
            break
        if not told:
            log.warning(
                "waiting for Kafka at %s before starting the stages", kafka.bootstrap_servers
            )
            told = True
        try:
            async with asyncio.timeout(delay):
                await stop.wait()
            return False
        except TimeoutError:
            delay = min(delay * 2, 10.0)
    await _create_topics(kafka, built)
    from worker.offsets import anchor_offsets

    await anchor_offsets(
        kafka.bootstrap_servers,
        str(built.app.conf.id),
        built.consumed,
        client=built.kafka_client,
    )
    return True


async def _create_topics(kafka: Any, built: Assembly) -> None:
    if not built.topics or not kafka.create_topics:
        return
    from worker.topics import ensure_topics

    await ensure_topics(
        kafka.bootstrap_servers,
        [*built.topics, *built.internal],
        configs=built.internal,
        client=built.kafka_client,
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
    )


__all__ = ["Assembly", "StartError", "assemble", "run"]
