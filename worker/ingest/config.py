"""Ingest settings, read from the ``gateway``, ``instances``, ``kafka`` and ``ingest`` sections.

Example (the full list with defaults is in docs/configuration.md)::

    gateway:
      url: ws://localhost:8084/ws/events
    instances:
      - name: shop-bot
        token: ${env:SHOP_BOT_TOKEN}
        events: [messages.upsert, connection.update]   # default: the 14 streamed events
    kafka:
      bootstrap_servers: localhost:9092
    ingest:
      reconnect: {first_delay: 5s, max_delay: 60s}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from worker.config import ConfigDocument, ConfigSection, Secret, did_you_mean
from worker.events import ACCEPTED_EVENTS, DEFAULT_TOPIC_PREFIX, STREAMED_EVENTS
from worker.fleet.config import OwnershipConfig, ownership_config
from worker.ingest.backoff import ReconnectPolicy

DEFAULT_GATEWAY_URL: Final = "ws://localhost:8084/ws/events"
COMPRESSIONS: Final = ("gzip", "lz4", "zstd", "snappy", "none")
SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MAX_FRAME_LIMIT: Final = 700 * 1024
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class InstanceConfig:
    """One gateway instance to subscribe to."""

    name: str
    token: Secret
    events: tuple[str, ...]


@dataclass(frozen=True)
class KafkaSecurity:
    """Settings passed to aiokafka for an authenticated or encrypted cluster."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True)
class ProducerTuning:
    """Batching and delivery settings of the Kafka producer."""

    linger_ms: int = 10
    max_batch_size: int = 256 * 1024
    #: zstd (level 3, through cramjam, a dependency): about 2 µs of CPU per envelope and
    #: 6.3 times smaller. aiokafka's lz4 is LZ4 HC at level 9 (7 µs, 4.8 times), its gzip
    #: level 9 (18 µs, 6.2 times), snappy 1.2 µs (3.5 times); ``none`` is accepted too.
    #: Measured by ``python -m bench ingest`` (its codec table).
    compression: str = "zstd"
    #: aiokafka's request timeout; also how long a send may wait for buffer space.
    request_timeout: float = 30.0
    #: Past this, unacknowledged events count as undeliverable and new ones go to the spool.
    delivery_timeout: float = 10.0
    #: On shutdown, how long to wait for in-flight events before spooling them.
    flush_timeout: float = 10.0


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    partitions: int = 8
    replication_factor: int = 1
    create_topics: bool = True
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    producer: ProducerTuning = field(default_factory=ProducerTuning)


@dataclass(frozen=True)
class SpoolConfig:
    path: Path = Path(".zapflow/ingest-spool.sqlite")
    max_bytes: int = 1024**3
    #: Fill ratio at which a warning is logged.
    warn_ratio: float = 0.8


@dataclass(frozen=True)
class IngestConfig:
    gateway_url: str
    instances: tuple[InstanceConfig, ...]
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    open_timeout: float = 10.0
    #: A subscription silent this long is re-established make-before-break (0 = never).
    resubscribe_after_silence: float = 600.0
    max_frame_bytes: int = 512 * 1024
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    summary_interval: float = 30.0
    #: Several processes sharing the subscriptions (worker/fleet); off by default.
    ownership: OwnershipConfig = field(default_factory=OwnershipConfig)
    #: The gateway's global apikey (only used to discover instances).
    apikey: Secret | None = None
    #: Add every instance the gateway lists (GET /instance/fetchInstances) at start.
    discover: bool = False
    #: Events of discovered instances.
    default_events: tuple[str, ...] = STREAMED_EVENTS

    @property
    def gateway_host(self) -> str:
        """``host:port`` of the gateway, as written in each envelope's ``source.gateway``."""
        return urlsplit(self.gateway_url).netloc

    def subscriptions(self) -> list[tuple[InstanceConfig, str]]:
        return [(inst, event) for inst in self.instances for event in inst.events]

    def topics(self) -> list[str]:
        """Every topic ingest may write: the configured events' and the invalid topic."""
        prefix = self.kafka.topic_prefix
        events = sorted({event for inst in self.instances for event in inst.events})
        return [f"{prefix}{event}" for event in events] + [f"{prefix}invalid"]


TOP_KEYS: Final = ("gateway", "instances", "kafka", "ingest")


def _event_list(section: ConfigSection, key: str, default: Any) -> tuple[str, ...]:
    events = section.string_list(key, default)
    if not events:
        raise section.error(
            key, "empty list", "list at least one event or remove the key for all 14"
        )
    valid = ", ".join(STREAMED_EVENTS)
    for i, name in enumerate(events):
        where = f"{key}[{i}]"
        if name == "messaging-history.set":
            raise section.error(
                where,
                "'messaging-history.set' is never sent over the gateway's socket",
                f"remove it; valid events: {valid}",
            )
        if name in ACCEPTED_EVENTS and name not in STREAMED_EVENTS:
            raise section.error(
                where,
                f"{name!r} is accepted by the gateway but never sent over its socket",
                f"remove it; valid events: {valid}",
            )
        if name not in STREAMED_EVENTS:
            raise section.error(
                where,
                f"unknown event {name!r}{did_you_mean(name, STREAMED_EVENTS)}",
                f"valid events: {valid}",
            )
    if len(set(events)) != len(events):
        dup = next(e for e in events if events.count(e) > 1)
        raise section.error(key, f"event {dup!r} is listed twice", "list each event once")
    return tuple(events)


def _gateway_url(section: ConfigSection) -> str:
    url = section.string("url", DEFAULT_GATEWAY_URL)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise section.error(
            "url",
            f"expected a ws:// or wss:// URL, found {url!r}",
            f"write e.g. {DEFAULT_GATEWAY_URL}",
        )
    if parts.query:
        raise section.error(
            "url",
            "the URL must not carry a query; zapflow adds ?event=…&token=… itself",
            f"write e.g. {DEFAULT_GATEWAY_URL}",
        )
    if parts.path != "/ws/events":
        # CodeChat answers any other path, even with a trailing slash, with a bare 401.
        raise section.error(
            "url",
            f"the gateway only serves /ws/events, found path {parts.path or '/'!r}",
            f"write e.g. {parts.scheme}://{parts.netloc}/ws/events",
        )
    return url


def _kafka(section: ConfigSection) -> KafkaConfig:
    section.check_keys(
        (
            "bootstrap_servers",
            "topic_prefix",
            "partitions",
            "replication_factor",
            "create_topics",
            "security",
            "producer",
        )
    )
    sec = section.section("security")
    sec.check_keys(
        (
            "protocol",
            "sasl_mechanism",
            "sasl_username",
            "sasl_password",
            "ssl_cafile",
            "ssl_certfile",
            "ssl_keyfile",
        )
    )
    protocol = sec.choice("protocol", SECURITY_PROTOCOLS, "PLAINTEXT")
    mechanism = (
        sec.choice("sasl_mechanism", SASL_MECHANISMS, None) if sec.has("sasl_mechanism") else None
    )
    if protocol.startswith("SASL") and mechanism is None:
        raise sec.error(
            "sasl_mechanism",
            f"missing for protocol {protocol}",
            "use one of: " + ", ".join(SASL_MECHANISMS),
        )
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=sec.string("sasl_username", None) if sec.has("sasl_username") else None,
        sasl_password=sec.secret("sasl_password", None),
        ssl_cafile=sec.string("ssl_cafile", None) if sec.has("ssl_cafile") else None,
        ssl_certfile=sec.string("ssl_certfile", None) if sec.has("ssl_certfile") else None,
        ssl_keyfile=sec.string("ssl_keyfile", None) if sec.has("ssl_keyfile") else None,
    )
    prod = section.section("producer")
    prod.check_keys(
        (
            "linger_ms",
            "max_batch_size",
            "compression",
            "request_timeout",
            "delivery_timeout",
            "flush_timeout",
        )
    )
    defaults = ProducerTuning()
    producer = ProducerTuning(
        linger_ms=prod.integer("linger_ms", defaults.linger_ms, minimum=0, example=10),
        max_batch_size=prod.size("max_batch_size", defaults.max_batch_size, minimum=1024),
        compression=prod.choice("compression", COMPRESSIONS, defaults.compression),
        request_timeout=prod.duration("request_timeout", defaults.request_timeout, minimum=1.0),
        delivery_timeout=prod.duration("delivery_timeout", defaults.delivery_timeout, minimum=0.5),
        flush_timeout=prod.duration("flush_timeout", defaults.flush_timeout),
    )
    base = KafkaConfig()
    prefix = section.string("topic_prefix", base.topic_prefix)
    if any(c in prefix for c in " /\\:,") or len(prefix) > 200:
        raise section.error(
            "topic_prefix",
            f"{prefix!r} cannot start a Kafka topic name",
            "use letters, digits, '.', '_' and '-', e.g. codechat.",
        )
    return KafkaConfig(
        bootstrap_servers=section.string("bootstrap_servers", base.bootstrap_servers),
        topic_prefix=prefix,
        partitions=section.integer("partitions", base.partitions, minimum=1, example=8),
        replication_factor=section.integer(
            "replication_factor", base.replication_factor, minimum=1, example=3
        ),
        create_topics=section.boolean("create_topics", base.create_topics),
        security=security,
        producer=producer,
    )


def _instances(
    root: ConfigSection, default_events: tuple[str, ...], discover: bool
) -> tuple[InstanceConfig, ...]:
    sections = root.sections("instances")
    if not sections and not discover:
        raise root.error(
            "instances",
            "no instances configured",
            "add e.g. '- {name: shop-bot, token: ${env:SHOP_BOT_TOKEN}}' under instances:, "
            "or set gateway.discover: true with gateway.apikey",
        )
    seen: set[str] = set()
    result = []
    for inst in sections:
        inst.check_keys(("name", "token", "events"))
        name = inst.string("name")
        if not name.strip() or any(c.isspace() for c in name):
            raise inst.error("name", f"{name!r} is not an instance name", "write e.g. shop-bot")
        if name in seen:
            raise inst.error("name", f"instance {name!r} is listed twice", "list it once")
        seen.add(name)
        token = inst.secret("token")
        assert token is not None
        events = _event_list(inst, "events", list(default_events))
        result.append(InstanceConfig(name=name, token=token, events=events))
    return tuple(result)


def kafka_config(document: ConfigDocument) -> KafkaConfig:
    """Only the ``kafka`` section (for commands that read topics, such as ``zapflow tail``)."""
    return _kafka(document.root().section("kafka"))


def ingest_config(document: ConfigDocument) -> IngestConfig:
    """Read and check the ingest settings.

    Raises:
        worker.config.ConfigError: naming the file (or variable), key and fix.
    """
    root = document.root()
    gateway = root.section("gateway")
    gateway.check_keys(("url", "apikey", "discover"))
    url = _gateway_url(gateway)
    apikey = gateway.secret("apikey", None)
    discover = gateway.boolean("discover", False)
    if discover and apikey is None:
        raise gateway.error(
            "apikey",
            "missing; discovering instances needs the gateway's global apikey",
            "add apikey: ${env:CODECHAT_APIKEY} under gateway:",
        )
    ing = root.section("ingest")
    ing.check_keys(
        (
            "events",
            "reconnect",
            "ping_interval",
            "ping_timeout",
            "open_timeout",
            "resubscribe_after_silence",
            "max_frame_size",
            "spool",
            "summary_interval",
            "ownership",
        )
    )
    default_events = _event_list(ing, "events", list(STREAMED_EVENTS))
    rec = ing.section("reconnect")
    rec.check_keys(("first_delay", "max_delay", "factor", "stable_after"))
    base = ReconnectPolicy()
    policy = ReconnectPolicy(
        first_delay=rec.duration("first_delay", base.first_delay, minimum=0.01),
        max_delay=rec.duration("max_delay", base.max_delay, minimum=0.01),
        factor=rec.number("factor", base.factor, minimum=1.0),
        stable_after=rec.duration("stable_after", base.stable_after),
    )
    if policy.max_delay < policy.first_delay:
        raise rec.error(
            "max_delay",
            f"{policy.max_delay:g}s is shorter than first_delay {policy.first_delay:g}s",
            "make max_delay at least first_delay",
        )
    spool = ing.section("spool")
    spool.check_keys(("path", "max_bytes", "warn_ratio"))
    spool_base = SpoolConfig()
    spool_path = Path(spool.string("path", str(spool_base.path)))
    if not spool_path.is_absolute():
        spool_path = document.path.parent / spool_path
    warn_ratio = spool.number("warn_ratio", spool_base.warn_ratio, minimum=0.0)
    if warn_ratio > 1.0:
        raise spool.error("warn_ratio", f"must be at most 1, found {warn_ratio:g}", "write 0.8")
    defaults = IngestConfig(gateway_url=url, instances=())
    max_frame_bytes = ing.size("max_frame_size", defaults.max_frame_bytes, minimum=1024)
    if max_frame_bytes > MAX_FRAME_LIMIT:
        # Invalid frames are stored base64-encoded (4/3 larger) in one Kafka message,
        # and Kafka refuses messages over 1 MiB unless the broker is reconfigured.
        raise ing.error(
            "max_frame_size",
            f"must be at most {MAX_FRAME_LIMIT // 1024}KiB, found {max_frame_bytes} bytes",
            "Kafka's default message limit is 1MiB and invalid frames are kept in base64",
        )
    return IngestConfig(
        gateway_url=url,
        instances=_instances(root, default_events, discover),
        apikey=apikey,
        discover=discover,
        default_events=default_events,
        kafka=_kafka(root.section("kafka")),
        reconnect=policy,
        ping_interval=ing.duration("ping_interval", defaults.ping_interval, minimum=0.1),
        ping_timeout=ing.duration("ping_timeout", defaults.ping_timeout, minimum=0.1),
        open_timeout=ing.duration("open_timeout", defaults.open_timeout, minimum=0.1),
        resubscribe_after_silence=ing.duration(
            "resubscribe_after_silence", defaults.resubscribe_after_silence
        ),
        max_frame_bytes=max_frame_bytes,
        spool=SpoolConfig(
            path=spool_path,
            max_bytes=spool.size("max_bytes", spool_base.max_bytes, minimum=1024 * 1024),
            warn_ratio=warn_ratio,
        ),
        summary_interval=ing.duration("summary_interval", defaults.summary_interval, minimum=1.0),
        ownership=ownership_config(
            ing,
            ing.duration("resubscribe_after_silence", defaults.resubscribe_after_silence),
        ),
    )
