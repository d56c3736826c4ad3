"""The ``ingest.ownership`` settings: who decides which process holds which subscription.

Off by default: a single process subscribes to everything it is configured for, as
before. With several processes against one gateway, turn it on in every one of them::

    ingest:
      ownership: kafka            # short form, every default below
    # or
    ingest:
      ownership:
        mode: kafka
        partitions: 64            # of the control topic; the same in every process
        grace: 10s                # a released socket stays open this long
        session_timeout: 10s      # a crashed process's subscriptions move after this
        heartbeat_interval: 1s
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Final

from worker.config import ConfigSection

MODES: Final = ("none", "kafka")
#: Kafka's default ``group.min.session.timeout.ms``; brokers refuse shorter sessions.
BROKER_MIN_SESSION: Final = 6.0


def default_member_name() -> str:
    """``host:pid``: how this process is named in the group and in ``zapflow status``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class OwnershipConfig:
    mode: str = "none"
    partitions: int = 64
    #: Control topic; ``None`` means ``<topic_prefix>subscriptions``.
    topic: str | None = None
    #: Consumer group; ``None`` means ``<topic_prefix>ingest-owners``.
    group: str | None = None
    grace: float = 10.0
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    #: How this process appears in status; ``None`` means ``host:pid``.
    member_name: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mode == "kafka"

    def topic_name(self, topic_prefix: str) -> str:
        return self.topic or f"{topic_prefix}subscriptions"

    def group_id(self, topic_prefix: str) -> str:
        return self.group or f"{topic_prefix}ingest-owners"

    def member(self) -> str:
        return self.member_name or default_member_name()


KEYS: Final = (
    "mode",
    "partitions",
    "topic",
    "group",
    "grace",
    "session_timeout",
    "heartbeat_interval",
    "member_name",
)


def ownership_config(ingest: ConfigSection, resubscribe_after_silence: float) -> OwnershipConfig:
    """Read ``ingest.ownership`` (a mode name, or a mapping).

    Args:
        ingest: the ``ingest`` section.
        resubscribe_after_silence: the ingest setting; a releasing socket must not be
            renewed during its grace period, so the grace period has to be shorter.

    Raises:
        worker.config.ConfigError: naming the key and the fix.
    """
    raw = ingest.data.get("ownership")
    if isinstance(raw, str):
        mode = ingest.choice("ownership", MODES)
        return OwnershipConfig(mode=mode)
    section = ingest.section("ownership")
    section.check_keys(KEYS)
    base = OwnershipConfig()
    config = OwnershipConfig(
        mode=section.choice("mode", MODES, base.mode),
        partitions=section.integer("partitions", base.partitions, minimum=1, example=64),
        topic=section.string("topic", None) if section.has("topic") else None,
        group=section.string("group", None) if section.has("group") else None,
        grace=section.duration("grace", base.grace),
        session_timeout=section.duration(
            "session_timeout", base.session_timeout, minimum=BROKER_MIN_SESSION
        ),
        heartbeat_interval=section.duration(
            "heartbeat_interval", base.heartbeat_interval, minimum=0.1
        ),
        member_name=section.string("member_name", None) if section.has("member_name") else None,
    )
    if config.heartbeat_interval * 3 > config.session_timeout:
        raise section.error(
            "heartbeat_interval",
            f"{config.heartbeat_interval:g}s is more than a third of session_timeout "
            f"{config.session_timeout:g}s",
            "use e.g. heartbeat_interval: 1s with session_timeout: 10s",
        )
    if 0 < resubscribe_after_silence <= config.grace:
        raise section.error(
            "grace",
            f"{config.grace:g}s is not shorter than ingest.resubscribe_after_silence "
            f"{resubscribe_after_silence:g}s, so a released socket could be renewed and "
            "take the subscription back from its new owner",
            "make grace shorter than resubscribe_after_silence",
        )
    return config
