"""A single-node KRaft Apache Kafka broker (combined broker + controller) as a plain Java process.

Used by ``zapflow dev``, ``zapflow kafka start`` and the test suite. The broker listens on
127.0.0.1 only, with settings for one node: replication factors 1, one partition for the
internal topics and no initial rebalance delay, so consumer groups form at once.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.devkafka.jars import KAFKA_VERSION, DevKafkaError, fetch_jars, java_executable

#: JVM flags as Kafka's own scripts set them, with a heap that leaves room on a 2-core box.
_JVM_FLAGS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = info
"""

_PR_SET_PDEATHSIG = 1


class BrokerStartError(DevKafkaError):
    """The broker process exited or did not become ready; carries its log tail."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(reason, log_tail)
        self.reason = reason
        self.log_tail = log_tail

    def __str__(self) -> str:
        return f"{self.reason}\n--- last lines of the broker log ---\n{self.log_tail}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_cluster_id() -> str:
    """A cluster id in Kafka's own format: URL-safe base64 of 16 random bytes, unpadded.

    Like Kafka's ``Uuid.randomUuid``, never one that starts with ``-``: the storage tool's
    command line would take it for an option (one id in 64 did, and formatting failed).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


#: The broker's own SASL/PLAIN user (it connects to itself as one) when users are given.
BROKER_USER = ("zapflow-broker", "zapflow-broker-secret")


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    sasl_users: Mapping[str, str] | None = None,
) -> str:
    """The broker configuration for one combined node on 127.0.0.1.

    With ``sasl_users`` (name -> password) the client port speaks SASL_PLAINTEXT with the
    PLAIN mechanism and accepts exactly those users: a cluster that wants credentials, for
    testing the clients that must send them.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "data"),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.partitions": "1",
        "num.recovery.threads.per.data.dir": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    if sasl_users:
        users = {BROKER_USER[0]: BROKER_USER[1], **sasl_users}
        accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
        settings.update(
            {
                "listeners": (
                    f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
                ),
                "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
                "inter.broker.listener.name": "SASL_PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{BROKER_USER[0]}" password="{BROKER_USER[1]}" {accounts};'
                ),
            }
        )
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the broker when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class KafkaBroker:
    """One broker process with its own data directory.

    ``stop()`` then ``start()`` restarts it on the same port with its data kept, which is
    how tests take Kafka away and bring it back.

    Args:
        data_dir: holds ``server.properties``, the log4j config, the broker log and the data.
        port: the client port; a free one is chosen when omitted.
        detach: keep the broker running after this process exits (``zapflow kafka start``);
            otherwise the broker is tied to this process and dies with it.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        detach: bool = False,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.detach = detach
        self.sasl_users = dict(sasl_users or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def client_settings(self) -> dict[str, Any]:
        """aiokafka keyword arguments to connect (as the broker's own user, with SASL)."""
        if not self.sasl_users:
            return {}
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": BROKER_USER[0],
            "sasl_plain_password": BROKER_USER[1],
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _prepare(self, java: str, libs: Path) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            server_properties(self.data_dir, self.port, self.controller_port, self.sasl_users)
        )
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))
        if not (self.data_dir / "data" / "meta.properties").exists():
            cmd = [
                java,
                "-Xmx256m",
                "-cp",
                f"{libs}/*",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                new_cluster_id(),
                "-c",
                str(props),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BrokerStartError(
                    f"formatting the Kafka data directory {self.data_dir} failed",
                    (proc.stdout + proc.stderr)[-3000:],
                )
        return props

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker and return once it serves metadata requests.

        Raises:
            DevKafkaError: Java or Maven is missing, or the jars cannot be fetched.
            BrokerStartError: the broker died or was not ready within ``timeout``.
        """
        if self.running:
            return
        java = java_executable()
        libs = fetch_jars()
        props = self._prepare(java, libs)
        # A restart keeps the data directory; the controller port may have been taken meanwhile.
        cmd = [
            java,
            *_JVM_FLAGS,
            f"-Dkafka.logs.dir={self.data_dir}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(props),
        ]
        out = (self.data_dir / "broker.out").open("ab")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Only prctl() runs between fork and exec, which is safe with threads.
            preexec_fn=None if self.detach else die_with_parent,  # noqa: PLW1509
        )
        out.close()
        (self.data_dir / "broker.pid").write_text(f"{self._proc.pid}\n")
        (self.data_dir / "bootstrap").write_text(self.bootstrap_servers + "\n")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise BrokerStartError(
                    f"the Kafka broker exited with code {code} while starting", self.log_tail()
                )
            if _port_open(self.port) and _serves_metadata(
                self.bootstrap_servers, self.client_settings
            ):
                return
            time.sleep(0.25)
        raise BrokerStartError(
            f"the Kafka broker did not become ready on {self.bootstrap_servers} "
            f"within {timeout:.0f} s",
            self.log_tail(),
        )

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.log_path, self.data_dir / "broker.out"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append("\n".join(text))
        return "\n".join(chunks) or "(the broker wrote no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker: SIGTERM for a controlled shutdown, SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        terminate_process(proc.pid, timeout, wait=proc.wait)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "broker.pid").unlink()

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate_process(pid: int, timeout: float, wait: object = None) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(wait):
            try:
                wait(timeout=0.2)
                return
            except subprocess.TimeoutExpired:
                continue
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if callable(wait):
        wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return status != "Z"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _serves_metadata(bootstrap: str, client: Mapping[str, Any] | None = None) -> bool:
    """True once the broker answers a metadata request with itself in the cluster."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=3000, **dict(client or {})
        )
        try:
            async with asyncio.timeout(5):
                await admin.start()
                cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    def run() -> bool:
        try:
            return asyncio.run(probe())
        except Exception:
            return False

    # A thread of its own, so start() also works when called from inside an event loop
    # (tests should still use asyncio.to_thread(broker.start) to keep their loop running).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


__all__ = ["KAFKA_VERSION", "BrokerStartError", "DevKafkaError", "KafkaBroker", "free_port"]
