"""The ``kafka.security`` settings, as every Kafka client of zapflow needs them.

One config section serves all stages, so ingest's producer, the admin and probe clients,
the Faust app of the rule stage and executor, and the executor's own producer all connect
with the same protocol and credentials: :func:`client_settings` gives the keyword
arguments of an aiokafka client, :func:`faust_credentials` the Faust app's
``broker_credentials``.
"""

from __future__ import annotations

from typing import Any

from worker.ingest.config import KafkaSecurity


def client_settings(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client."""
    settings: dict[str, Any] = {"security_protocol": security.protocol}
    if security.sasl_mechanism:
        settings["sasl_mechanism"] = security.sasl_mechanism
        settings["sasl_plain_username"] = security.sasl_username
        settings["sasl_plain_password"] = (
            security.sasl_password.reveal() if security.sasl_password else None
        )
    if "SSL" in security.protocol:
        settings["ssl_context"] = _ssl_context(security)
    return settings


def faust_credentials(security: KafkaSecurity) -> Any:
    """``broker_credentials`` for a Faust app, or ``None`` for a plain connection."""
    import faust

    if security.protocol == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(security) if "SSL" in security.protocol else None
    if security.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password.reveal() if security.sasl_password else None,
            mechanism=security.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def _ssl_context(security: KafkaSecurity) -> Any:
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=security.ssl_cafile, certfile=security.ssl_certfile, keyfile=security.ssl_keyfile
    )
