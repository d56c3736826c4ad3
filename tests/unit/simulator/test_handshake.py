from __future__ import annotations

import pytest

from worker.simulator import tokens
from worker.simulator.socket import Admission, Refusal, check_handshake, url_pathname

TOKEN = tokens.sign({"instanceName": "shop-bot", "apiName": "whatsapp-api", "exp": 10}, "s")


def check(
    path: str = "/ws/events",
    event: str | None = "messages.upsert",
    token: str | None = TOKEN,
    now: float = 100,
    ignore: bool = True,
) -> Admission | Refusal:
    return check_handshake(
        path, event=event, token=token, secret="s", now=now, ignore_expiration=ignore
    )


def test_valid_handshake_admits_the_token_instance_and_event() -> None:
    assert check() == Admission("shop-bot", "messages.upsert")


def test_api_name_is_not_checked_on_the_socket() -> None:
    token = tokens.sign({"instanceName": "x", "apiName": "something-else"}, "s")
    assert check(token=token) == Admission("x", "messages.upsert")


def test_token_without_instance_name_gets_upstreams_undefined_key() -> None:
    assert check(token=tokens.sign({"a": 1}, "s")) == Admission("undefined", "messages.upsert")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"path": "/ws/events/"}, "path '/ws/events/' is not /ws/events"),
        ({"event": None}, "missing event or token"),
        ({"event": ""}, "missing event or token"),
        ({"token": None}, "missing event or token"),
        ({"token": "abc"}, "token is not a JWT"),
        ({"event": "messages.delete"}, "unknown event 'messages.delete'"),
        ({"token": tokens.sign({"a": 1}, "x")}, "invalid token: invalid signature"),
        ({"ignore": False}, "invalid token: jwt expired"),
    ],
)
def test_refusals_say_why(kwargs: dict[str, object], reason: str) -> None:
    assert check(**kwargs) == Refusal(reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "pathname"),
    [
        ("/ws/events", "/ws/events"),
        ("/ws/./events", "/ws/events"),
        ("/ws/x/../events", "/ws/events"),
        ("/ws/%2e/events", "/ws/events"),
        ("/ws/%65vents", "/ws/%65vents"),
        ("/ws//events", "/ws//events"),
        ("/ws/events/", "/ws/events/"),
        ("/ws/events/.", "/ws/events/"),
        ("/../ws/events", "/ws/events"),
    ],
)
def test_pathname_follows_the_whatwg_url_parser(raw: str, pathname: str) -> None:
    assert url_pathname(raw) == pathname
