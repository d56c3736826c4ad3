"""docker-compose.yml and the Dockerfile, checked without a Docker engine: structure, images,
ports, volumes, health checks, and that the configuration and rules they mount are valid."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets
import yaml

from tests.helpers import wait_for
from worker.devkafka.broker import free_port
from worker.devkafka.jars import KAFKA_VERSION
from worker.run.config import load_run_config

ROOT = Path(__file__).parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_kafka_zapflow_and_a_sim_profile() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"kafka", "zapflow", "sim"}
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert "profiles" not in services["kafka"] and "profiles" not in services["zapflow"]
    assert services["sim"]["profiles"] == ["sim"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "test" in service.get("healthcheck", {}), name
    assert services["zapflow"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "9464:9464" in services["zapflow"]["ports"]
    assert "8084:8084" in services["sim"]["ports"]


def test_compose_volumes_are_declared_and_mounted_files_exist() -> None:
    declared = set(COMPOSE["volumes"])
    for service in COMPOSE["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), mount
            else:
                assert source in declared, mount


def test_the_kafka_service_is_a_single_kraft_node() -> None:
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    config = yaml.safe_load((ROOT / "deploy" / "zapflow.yaml").read_text())
    assert config["kafka"]["bootstrap_servers"] == "kafka:9092"


def test_the_dockerfile_copies_what_exists_and_runs_what_compose_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert re.search(r"^FROM python:3\.11", dockerfile, flags=re.M)
    command = COMPOSE["services"]["zapflow"]["command"]
    assert command == [
        "run",
        "--config",
        "/etc/zapflow/zapflow.yaml",
        "--rules",
        "/etc/zapflow/rules",
    ]
    assert '"--config", "/etc/zapflow/zapflow.yaml", "--rules", "/etc/zapflow/rules"' in dockerfile


def test_the_mounted_config_and_rules_are_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    text = (ROOT / "deploy" / "zapflow.yaml").read_text()
    for name in re.findall(r"/run/zapflow/tokens/([\w-]+)\.token", text):
        (tokens / f"{name}.token").write_text("eyJhbGciOiJIUzI1NiJ9.e30.sig\n")
    config = tmp_path / "zapflow.yaml"
    config.write_text(text.replace("/run/zapflow/tokens", str(tokens)))
    monkeypatch.setenv("CODECHAT_APIKEY", "k")
    loaded = load_run_config(config)
    assert [i.name for i in loaded.shared.instances] == ["loja-centro", "loja-norte", "loja-sul"]
    assert loaded.http.host == "0.0.0.0"
    sim_names = next(
        a for a in COMPOSE["services"]["sim"]["command"] if a.startswith("--names=")
    ).removeprefix("--names=")
    assert sim_names.split(",") == [i.name for i in loaded.shared.instances]

    check = subprocess.run(
        [sys.executable, "-m", "worker", "rules", "check", str(ROOT / "rules"), "--strict"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_the_sim_service_writes_tokens_that_open_subscriptions(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "simulate",
        "--port",
        str(port),
        "--names",
        "loja-centro,loja-norte",
        "--tokens-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        token_file = tmp_path / "loja-norte.token"
        await wait_for(token_file.exists, 30, message="the simulator to write its tokens")
        token = token_file.read_text().strip()
        url = f"ws://127.0.0.1:{port}/ws/events?event=connection.update&token={token}"
        async with websockets.connect(url) as ws, aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{port}/_sim/emit",
                json={"instance": "loja-norte", "event": "connection.update"},
            ) as resp:
                assert (await resp.json())["delivered"] is True
            frame = await asyncio.wait_for(ws.recv(), 10)
            assert '"instance":"loja-norte"' in frame.replace(" ", "")
            async with http.post(
                f"http://127.0.0.1:{port}/_sim/webhook/ops", json={"text": "alerta"}
            ) as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/_sim/webhook/ops") as resp:
                received = await resp.json()
            assert [r["body"] for r in received] == [{"text": "alerta"}]
    finally:
        proc.terminate()
        await proc.wait()
