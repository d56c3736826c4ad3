"""The consumer group that decides which process owns which subscription.

Each process joins one consumer group (``<prefix>ingest-owners``) subscribed to the
control topic ``<prefix>subscriptions`` (64 partitions by default, created at start).
Nothing is ever written to that topic; only its partitions matter: a partition stands
for the subscriptions hashing to it (:mod:`.assignment`), and the partitions the group
assigns to a process are the subscriptions it owns. Kafka's group protocol gives the
rest: a joining process triggers a rebalance, a process leaving on SIGTERM sends
LeaveGroup (its partitions move at once), a crashed one is dropped after the session
timeout.

The group leader assigns with :class:`SubscriptionAssignor`, which balances the number
of subscriptions per process, keeps partitions with their holders where it can, and
sends every member the whole plan, so each process can tell in ``zapflow status`` who
owns every subscription, not just its own.

Rebalances are eager (aiokafka revokes every partition, then assigns): the revocation
only starts a grace period (:mod:`.handover`), and most partitions come straight back,
so a rebalance closes only the sockets whose partitions really moved, after the new
owner had time to open its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from worker.fleet.assignment import contested, plan_assignment
from worker.fleet.config import OwnershipConfig
from worker.fleet.handover import Handover
from worker.ingest.config import KafkaConfig
from worker.ingest.producer import ensure_topics, security_settings
from worker.stopping import stop_consumer
from worker.tasks import cancel_and_wait

log = logging.getLogger("zapflow.fleet")

#: Longest wait for one step of joining (topic check, consumer start) before retrying.
STEP_TIMEOUT = 15.0

#: Weights of the control topic's partitions: partition count -> {partition: subscriptions}.
WeightsOf = Callable[[int], Mapping[int, int]]


@dataclass(frozen=True)
class MemberClaim:
    """What a member tells the leader when it joins."""

    name: str
    owned: frozenset[int] = frozenset()
    releasing: frozenset[int] = frozenset()


def encode_member(claim: MemberClaim) -> bytes:
    return json.dumps(
        {"name": claim.name, "owned": sorted(claim.owned), "releasing": sorted(claim.releasing)}
    ).encode()


def decode_member(data: bytes) -> MemberClaim | None:
    """A member's claim from its join metadata (``None`` if unreadable)."""
    try:
        body = json.loads(data)
        return MemberClaim(
            str(body["name"]),
            frozenset(int(p) for p in body.get("owned", [])),
            frozenset(int(p) for p in body.get("releasing", [])),
        )
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class MemberPlan:
    """What the leader tells each member: the whole fleet, and what to renew."""

    #: Member name -> partitions, for every member.
    fleet: Mapping[str, frozenset[int]]
    #: This member's partitions on which another member still has a socket.
    renew: frozenset[int] = frozenset()


def encode_plan(plan: MemberPlan) -> bytes:
    return json.dumps(
        {
            "members": {n: sorted(parts) for n, parts in sorted(plan.fleet.items())},
            "renew": sorted(plan.renew),
        }
    ).encode()


def decode_plan(data: bytes) -> MemberPlan:
    """The leader's message (an empty plan if unreadable)."""
    try:
        body = json.loads(data)
        fleet = {str(n): frozenset(int(p) for p in parts) for n, parts in body["members"].items()}
        return MemberPlan(fleet, frozenset(int(p) for p in body.get("renew", [])))
    except (ValueError, KeyError, TypeError, AttributeError):
        return MemberPlan({})


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class SubscriptionAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """aiokafka assignor for the control topic (an instance, not the class, is passed)."""

    name = "zapflow-subscriptions"
    version = 0

    def __init__(self, ownership: KafkaOwnership) -> None:
        self._ownership = ownership

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        own = self._ownership
        claim = MemberClaim(own.member, *own.state.claim())
        return ConsumerProtocolMemberMetadata(self.version, list(topics), encode_member(claim))

    def assign(
        self,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topic = self._ownership.topic
        partitions = cluster.partitions_for_topic(topic) or set()
        if not partitions:
            log.error(
                "control topic %s has no partitions (missing?), so no process owns any "
                "subscription; create it with %d partitions or allow kafka.create_topics",
                topic,
                self._ownership.config.partitions,
            )
        count = max(partitions) + 1 if partitions else 0
        weights = {p: w for p, w in self._ownership.weights_of(count).items() if p in partitions}
        for p in partitions:
            weights.setdefault(p, 0)
        names: dict[str, str] = {}
        owned: dict[str, frozenset[int]] = {}
        releasing: dict[str, frozenset[int]] = {}
        for member_id, meta in members.items():
            claim = decode_member(meta.user_data) or MemberClaim(member_id)
            names[member_id] = claim.name
            owned[member_id] = claim.owned
            releasing[member_id] = claim.releasing
        # A partition nobody owns stays with whoever still has its socket open.
        owned_somewhere = set().union(*owned.values()) if owned else set()
        previous = {
            m: owned[m] | {p for p in releasing[m] if p not in owned_somewhere} for m in members
        }
        plan = plan_assignment(weights, members, previous)
        renew = contested(plan, owned, releasing)
        fleet = {names[m]: parts for m, parts in plan.items()}
        log.info(
            "assigning %d subscription partitions to %d processes: %s%s",
            len(weights),
            len(members),
            ", ".join(
                f"{names[m]}={sum(weights[p] for p in parts)}" for m, parts in sorted(plan.items())
            ),
            f"; {sum(map(len, renew.values()))} to renew" if any(renew.values()) else "",
        )
        return {
            member_id: ConsumerProtocolMemberAssignment(
                self.version,
                [(topic, sorted(plan.get(member_id, ())))],
                encode_plan(MemberPlan(fleet, renew.get(member_id, frozenset()))),
            )
            for member_id in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        plan = decode_plan(assignment.user_data)
        self._ownership.fleet = dict(plan.fleet)
        self._ownership.leader_renew = plan.renew


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ownership: KafkaOwnership) -> None:
        self._ownership = ownership

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._ownership.revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._ownership.assigned([tp.partition for tp in assigned])


class KafkaOwnership:
    """This process's membership in the ownership group.

    Args:
        kafka: connection settings (shared with the producer).
        config: the ``ingest.ownership`` settings.
        weights_of: the configured subscriptions per partition, for the leader's plan.
        on_change: called (on the loop) whenever the held partitions change.
        clock: monotonic seconds.
        settle: when to renew a newly owned subscription once more (see
            :class:`~worker.fleet.handover.Handover`).
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        config: OwnershipConfig,
        weights_of: WeightsOf,
        on_change: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        settle: float = 0.0,
    ) -> None:
        self.kafka = kafka
        self.config = config
        self.weights_of = weights_of
        self._on_change = on_change
        self._clock = clock
        self.member = config.member()
        self.topic = config.topic_name(kafka.topic_prefix)
        self.group = config.group_id(kafka.topic_prefix)
        #: Partitions of the control topic (the configured count until the topic is seen).
        self.partitions = config.partitions
        self.state = Handover(grace=config.grace, settle=settle)
        #: The whole fleet as the leader last planned it: member name -> partitions.
        self.fleet: dict[str, frozenset[int]] = {}
        #: Partitions the leader said to renew in the latest assignment.
        self.leader_renew: frozenset[int] = frozenset()
        self.rebalances = 0
        self.joined = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._release_task: asyncio.Task[None] | None = None
        self._wake_release = asyncio.Event()

    # --- group callbacks ----------------------------------------------------------
    def revoked(self, partitions: list[int]) -> None:
        self.state = self.state.revoke(partitions, self._clock())
        self._changed()

    def assigned(self, partitions: list[int]) -> None:
        before = self.state.releasing()
        self.state = self.state.assign(partitions, self._clock()).renew(self.leader_renew)
        self.leader_renew = frozenset()
        self.rebalances += 1
        back = len(before & self.state.owned())
        log.info(
            "%s now owns %d subscription partitions (%d kept through the rebalance, "
            "%d releasing after %.0fs)",
            self.member,
            len(self.state.owned()),
            back,
            len(self.state.releasing()),
            self.config.grace,
        )
        self.joined.set()
        self._changed()

    def _changed(self) -> None:
        self._wake_release.set()
        self._on_change()

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Join the group in the background (retrying while Kafka is away)."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="ownership group")
        self._release_task = loop.create_task(self._release_loop(), name="ownership grace")

    async def _run(self) -> None:
        delay = 1.0
        while True:
            consumer = None
            try:
                if self.kafka.create_topics:
                    log.debug(
                        "%s: making sure the control topic %s exists", self.member, self.topic
                    )
                    async with asyncio.timeout(STEP_TIMEOUT):
                        await ensure_topics(
                            replace(self.kafka, partitions=self.config.partitions), [self.topic]
                        )
                consumer = self._new_consumer()
                async with asyncio.timeout(STEP_TIMEOUT):
                    await consumer.start()
                log.debug("%s joining the ownership group %s", self.member, self.group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await stop_consumer(consumer)
                log.warning(
                    "cannot join the ownership group %s yet (%s); retrying in %.0fs",
                    self.group,
                    describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._consumer = consumer
            break
        found = consumer.partitions_for_topic(self.topic)
        if found and len(found) != self.config.partitions:
            log.warning(
                "control topic %s has %d partitions, not the configured %d; using %d "
                "(every process must use the same topic)",
                self.topic,
                len(found),
                self.config.partitions,
                len(found),
            )
            self.partitions = len(found)
        while True:
            try:
                # Nothing is ever written to the control topic; polling keeps the
                # member alive in the group (max.poll.interval) and runs rebalances.
                await consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("ownership group %s: %s", self.group, exc)
                await asyncio.sleep(1.0)

    def _new_consumer(self) -> AIOKafkaConsumer:
        cfg = self.config
        settings: dict[str, Any] = {
            "bootstrap_servers": self.kafka.bootstrap_servers,
            "group_id": self.group,
            "client_id": f"zapflow-ingest {self.member}",
            "enable_auto_commit": False,
            "auto_offset_reset": "latest",
            "session_timeout_ms": int(cfg.session_timeout * 1000),
            "heartbeat_interval_ms": int(cfg.heartbeat_interval * 1000),
            "rebalance_timeout_ms": int(cfg.session_timeout * 1000),
            "max_poll_interval_ms": 60_000,
            "metadata_max_age_ms": 30_000,
            "retry_backoff_ms": 200,
            "partition_assignment_strategy": (SubscriptionAssignor(self),),
        }
        settings.update(security_settings(self.kafka))
        consumer = AIOKafkaConsumer(**settings)
        consumer.subscribe([self.topic], listener=_Listener(self))
        return consumer

    async def _release_loop(self) -> None:
        """End grace periods on time."""
        while True:
            self._wake_release.clear()
            deadline = self.state.next_release()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake_release.wait()
            expired = self.state.expire(self._clock())
            if expired is not self.state:
                self.state = expired
                self._on_change()

    async def leave(self) -> None:
        """Leave the group (the others take over at once); sockets enter their grace period."""
        if self._task is not None:
            await cancel_and_wait(self._task, reraise=True)
            self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # LeaveGroup lets the others take over at once; if Kafka is away it cannot be
            # sent, and they take over after the session timeout instead.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STEP_TIMEOUT):
                    await stop_consumer(consumer)
        self.state = self.state.revoke_all(self._clock())
        self._changed()

    async def wait_released(self) -> None:
        """Until every grace period has ended."""
        while self.state.held():
            deadline = self.state.next_release()
            if deadline is None:
                return
            await asyncio.sleep(max(0.05, deadline - self._clock()))
            self.state = self.state.expire(self._clock())
        self._on_change()

    async def close(self) -> None:
        await self.leave()
        if self._release_task is not None:
            await cancel_and_wait(self._release_task, reraise=True)
            self._release_task = None

    # --- reading ------------------------------------------------------------------
    def owner_of(self, partition: int) -> str | None:
        """The member the leader last gave this partition to (``None``: not known yet)."""
        for name, parts in self.fleet.items():
            if partition in parts:
                return name
        return None
