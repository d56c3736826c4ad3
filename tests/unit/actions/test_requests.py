import pytest

from worker.actions.ids import message_id_for
from worker.actions.record import ActionRecord
from worker.actions.requests import InvalidParams, SendLimitKey, build_request
from worker.actions.secrets import SecretNotSet
from worker.actions.settings import GatewaySettings

KEY = "after-hours-reply:01JDX:0:-:fire"
ENV = {"GW_KEY": "global-key", "SHOP_TOKEN": "jwt-shop", "HOOK": "T0KEN"}
BEARER = GatewaySettings(
    url="http://gw:8084/",
    auth="bearer",
    apikey="${env:GW_KEY}",
    tokens={"shop-bot": "${env:SHOP_TOKEN}"},
)
APIKEY = GatewaySettings(url="http://gw:8084", auth="apikey", apikey="${env:GW_KEY}")


def record(kind, params, **extra):
    base = {
        "idempotency_key": KEY,
        "rule_id": "after-hours-reply",
        "bundle_version": "v1",
        "event_id": "01JDX",
        "action_index": 0,
        "item": None,
        "phase": "fire",
        "instance": "shop-bot",
        "kind": kind,
        "params": params,
        "created_at": "2026-11-25T20:41:07.130Z",
    }
    return ActionRecord.from_dict({**base, **extra})


def test_send_text_body_tags_the_send_and_quotes_the_trigger():
    quote = {"keyId": "3EB0AA", "keyRemoteJid": "5511@s.whatsapp.net", "keyFromMe": False}
    request = build_request(
        record(
            "whatsapp.send_text",
            {
                "instance": "shop-bot",
                "to": "5511@s.whatsapp.net",
                "text": "Olá!",
                "quote": quote,
                "delay_ms": 1200,
            },
        ),
        BEARER,
        ENV,
        10.0,
    )
    assert request.method == "POST"
    assert request.url == "http://gw:8084/message/sendText/shop-bot"
    assert request.headers == {"Authorization": "Bearer jwt-shop", "Idempotency-Key": KEY}
    assert request.json == {
        "number": "5511@s.whatsapp.net",
        "options": {
            "messageId": message_id_for(KEY),
            "externalAttributes": {"zapflow": {"rule": "after-hours-reply", "key": KEY}},
            "delay": 1200,
            "quotedMessage": quote,
        },
        "textMessage": {"text": "Olá!"},
    }
    assert request.timeout_s == 11.2
    assert request.send_limit == SendLimitKey("shop-bot", "5511@s.whatsapp.net")
    assert (request.destination, request.lane) == ("http://gw:8084", "shop-bot")


def test_send_text_without_quote_or_delay_has_only_the_tags():
    request = build_request(
        record(
            "whatsapp.send_text", {"to": "1203@g.us", "text": "hi", "quote": None, "delay_ms": None}
        ),
        APIKEY,
        ENV,
        10.0,
    )
    assert request.headers == {"apikey": "global-key", "Idempotency-Key": KEY}
    assert request.json["options"] == {
        "messageId": message_id_for(KEY),
        "externalAttributes": {"zapflow": {"rule": "after-hours-reply", "key": KEY}},
    }


def test_bearer_falls_back_to_the_apikey_for_instances_without_a_token():
    request = build_request(
        record("whatsapp.send_text", {"instance": "other bot", "to": "1", "text": "x"}),
        BEARER,
        ENV,
        10.0,
    )
    assert request.url == "http://gw:8084/message/sendText/other%20bot"
    assert request.headers["apikey"] == "global-key"


def test_group_participants_puts_the_action_with_the_group_in_the_query():
    request = build_request(
        record(
            "whatsapp.group_participants",
            {
                "instance": "shop-bot",
                "group": "120363@g.us",
                "action": "promote",
                "participants": ["5511987654321"],
            },
        ),
        BEARER,
        ENV,
        10.0,
    )
    assert request.method == "PUT"
    assert request.url == "http://gw:8084/group/updateParticipant/shop-bot?groupJid=120363%40g.us"
    assert request.json == {"action": "promote", "participants": ["5511987654321"]}
    assert request.send_limit == SendLimitKey("shop-bot", None)


def test_notify_slack_posts_only_text_to_the_resolved_url():
    request = build_request(
        record(
            "notify",
            {
                "channel": {
                    "name": "ops",
                    "type": "slack",
                    "url": "https://hooks.example/services/${env:HOOK}",
                },
                "text": "shop-bot caiu",
                "fields": {"count": 3},
            },
        ),
        APIKEY,
        ENV,
        5.0,
    )
    assert request.url == "https://hooks.example/services/T0KEN"
    assert request.display == "POST https://hooks.example/services/${env:HOOK}"
    assert request.json == {"text": "shop-bot caiu"}
    assert request.headers == {"Idempotency-Key": KEY}
    assert request.send_limit is None


def test_notify_webhook_posts_the_alert_as_json_with_channel_headers():
    request = build_request(
        record(
            "notify",
            {
                "channel": {
                    "name": "pager",
                    "type": "webhook",
                    "url": "http://alerts/in",
                    "headers": {"Authorization": "Token ${env:HOOK}"},
                },
                "text": "down",
                "fields": {"state": "close"},
            },
            phase="resolve",
        ),
        APIKEY,
        ENV,
        5.0,
    )
    assert request.headers == {"Authorization": "Token T0KEN", "Idempotency-Key": KEY}
    assert request.json == {
        "channel": "pager",
        "text": "down",
        "fields": {"state": "close"},
        "rule_id": "after-hours-reply",
        "instance": "shop-bot",
        "phase": "resolve",
        "event_id": "01JDX",
        "idempotency_key": KEY,
        "created_at": "2026-11-25T20:41:07.130Z",
    }


def test_notify_whatsapp_sends_a_tagged_text_through_the_gateway():
    request = build_request(
        record(
            "notify",
            {
                "channel": {
                    "name": "oncall",
                    "type": "whatsapp",
                    "instance": "ops-bot",
                    "to": "5511999@s.whatsapp.net",
                },
                "text": "alert",
                "fields": {},
            },
        ),
        APIKEY,
        ENV,
        5.0,
    )
    assert request.url == "http://gw:8084/message/sendText/ops-bot"
    assert request.json["number"] == "5511999@s.whatsapp.net"
    assert request.json["options"]["messageId"] == message_id_for(KEY)
    assert request.send_limit == SendLimitKey("ops-bot", "5511999@s.whatsapp.net")
    assert request.labels == {
        "instance": "ops-bot",
        "to": "5511999@s.whatsapp.net",
        "channel": "oncall",
    }


def test_http_resolves_secrets_and_adds_the_idempotency_header():
    request = build_request(
        record(
            "http",
            {
                "method": "patch",
                "url": "https://crm/api?k=${env:HOOK}",
                "headers": {"X-Token": "${env:HOOK}"},
                "json": {"auth": "${env:HOOK}", "n": 1},
                "timeout_s": 2.5,
            },
        ),
        APIKEY,
        ENV,
        10.0,
    )
    assert (request.method, request.url, request.timeout_s) == (
        "PATCH",
        "https://crm/api?k=T0KEN",
        2.5,
    )
    assert request.headers == {"X-Token": "T0KEN", "Idempotency-Key": KEY}
    assert request.json == {"auth": "T0KEN", "n": 1}
    assert request.display == "PATCH https://crm/api?k=${env:HOOK}"
    assert (request.destination, request.lane) == ("https://crm:443", None)


def test_http_keeps_a_caller_supplied_idempotency_header():
    request = build_request(
        record(
            "http",
            {
                "method": "POST",
                "url": "http://x/",
                "headers": {"idempotency-key": "mine"},
                "json": None,
                "timeout_s": None,
            },
        ),
        APIKEY,
        ENV,
        10.0,
    )
    assert request.headers == {"idempotency-key": "mine"}
    assert request.json is None
    assert request.timeout_s == 10.0


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (
            "whatsapp.send_text",
            {"text": "x"},
            "whatsapp.send_text: params.to: expected a non-empty string, found nothing",
        ),
        (
            "whatsapp.send_text",
            {"to": "1", "text": "x", "quote": {"id": 1}},
            "whatsapp.send_text: params.quote: "
            "expected an object with keyId, keyRemoteJid, keyFromMe",
        ),
        (
            "whatsapp.send_text",
            {"to": "1", "text": "x", "delay_ms": -1},
            "whatsapp.send_text: params.delay_ms: expected an integer >= 0 or null, found -1",
        ),
        (
            "whatsapp.group_participants",
            {"group": "g@g.us", "action": "kick", "participants": ["1"]},
            "whatsapp.group_participants: params.action: expected one of add, remove, promote, "
            "demote, found 'kick'",
        ),
        (
            "whatsapp.group_participants",
            {"group": "g@g.us", "action": "add", "participants": []},
            "whatsapp.group_participants: params.participants: "
            "expected a non-empty list of strings",
        ),
        (
            "notify",
            {"channel": "ops", "text": "x"},
            "notify: params.channel: expected an object with name and type",
        ),
        (
            "notify",
            {"channel": {"name": "ops", "type": "sms"}, "text": "x"},
            "notify: params.channel.type: expected slack, webhook or whatsapp, found 'sms'",
        ),
        (
            "notify",
            {"channel": {"name": "ops", "type": "slack"}, "text": "x"},
            "notify: params.channel.url: expected a non-empty string, found nothing",
        ),
        (
            "http",
            {"method": "FETCH", "url": "http://x"},
            "http: params.method: "
            "expected one of DELETE, GET, HEAD, PATCH, POST, PUT, found 'FETCH'",
        ),
        (
            "http",
            {"method": "GET", "url": "http://x", "timeout_s": 0},
            "http: params.timeout_s: expected a positive number, found 0",
        ),
    ],
)
def test_bad_params_are_named_precisely(kind, params, message):
    with pytest.raises(InvalidParams) as info:
        build_request(record(kind, params), APIKEY, ENV, 10.0)
    assert str(info.value) == message


def test_missing_secret_is_an_error_not_an_empty_header():
    with pytest.raises(SecretNotSet):
        build_request(
            record("http", {"method": "GET", "url": "http://x", "headers": {"A": "${env:NOPE}"}}),
            APIKEY,
            ENV,
            10.0,
        )


def test_non_http_kinds_have_no_request():
    with pytest.raises(ValueError) as info:
        build_request(record("log", {"level": "info", "message": "m"}), APIKEY, ENV, 10.0)
    assert str(info.value) == "kind 'log' does not make an HTTP request"
