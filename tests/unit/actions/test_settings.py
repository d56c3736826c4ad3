import pytest

from worker.actions.limits import Rate
from worker.actions.retry import RetryPolicy
from worker.actions.settings import ExecutorSettings, SettingsError, settings_from_mapping


def test_empty_section_gives_the_defaults():
    assert settings_from_mapping({}) == ExecutorSettings()


def test_every_key_is_read():
    settings = settings_from_mapping(
        {
            "topic_prefix": "t.",
            "partitions": 4,
            "gateway": {
                "url": "http://gw",
                "auth": "bearer",
                "apikey": "${env:K}",
                "tokens": {"shop-bot": "${env:T}"},
            },
            "retry": {
                "max_attempts": 3,
                "base_delay_s": 0.1,
                "max_delay_s": 1,
                "max_retry_after_s": 5,
            },
            "concurrency": 4,
            "gateway_concurrency": 3,
            "per_destination_concurrency": 2,
            "send_rate_per_instance": {"per_second": 2, "burst": 5},
            "send_rate_per_chat": None,
        }
    )
    assert settings.topic_prefix == "t."
    assert settings.partitions == 4
    assert settings.gateway.auth == "bearer"
    assert settings.gateway.tokens == {"shop-bot": "${env:T}"}
    assert settings.retry == RetryPolicy(3, 0.1, 1.0, 5.0)
    assert (
        settings.concurrency,
        settings.gateway_concurrency,
        settings.per_destination_concurrency,
    ) == (4, 3, 2)
    assert settings.send_rate_per_instance == Rate(2.0, 5.0)
    assert settings.send_rate_per_chat is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"concurency": 3},
            "actions: unknown key 'concurency' (expected one of: concurrency, gateway, "
            "gateway_concurrency, ledger_retention_s, max_pending, partitions, "
            "per_destination_concurrency, "
            "prune_interval_s, replication_factor, request_timeout_s, retry, send_rate_per_chat, "
            "send_rate_per_instance, shutdown_grace_s, topic_prefix)",
        ),
        (
            {"gateway": {"auth": "jwt"}},
            "actions.gateway.auth: expected 'bearer' or 'apikey', found 'jwt'",
        ),
        ({"partitions": 0}, "actions.partitions: expected a positive integer, found 0"),
        (
            {"retry": {"base_delay_s": "1s"}},
            "actions.retry.base_delay_s: expected a number >= 0, found '1s'",
        ),
        (
            {"send_rate_per_chat": {"per_second": 0}},
            "actions.send_rate_per_chat: rate must be positive, got 0.0 per second",
        ),
    ],
)
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data)
    assert str(info.value) == message
