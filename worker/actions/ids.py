"""Deterministic ids that tag what the executor sends, so sends can be recognised and deduplicated.

The gateway echoes every message we send (one ``send.message`` and two ``messages.upsert`` with
``keyFromMe``); the process stage knows its own sends by these ids and never evaluates them. A
retry after a crash reuses the same id, so the far side can drop the duplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

#: Prefix of every WhatsApp message id the executor chooses.
MESSAGE_ID_PREFIX: Final = "ZF"


def message_id_for(idempotency_key: str) -> str:
    """``ZF`` + the first 30 hex digits of sha256(key), upper case (32 characters in all)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return MESSAGE_ID_PREFIX + digest[:30].upper()


def is_our_message_id(message_id: str) -> bool:
    """True for ids shaped like :func:`message_id_for` output."""
    rest = message_id[len(MESSAGE_ID_PREFIX) :]
    return (
        message_id.startswith(MESSAGE_ID_PREFIX)
        and len(rest) == 30
        and all(c in "0123456789ABCDEF" for c in rest)
    )


def external_attributes(rule_id: str, idempotency_key: str) -> dict[str, Any]:
    """``options.externalAttributes`` of a gateway send; echoed back in ``send.message``."""
    return {"zapflow": {"rule": rule_id, "key": idempotency_key}}
