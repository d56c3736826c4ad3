"""The per-event and per-tick work of the processing stage, free of Faust.

:class:`EventProcessor` takes raw envelope bytes and the two tables (as mutable mappings)
and returns the records to produce: action records, and for rekeyed rules the envelope sent
on to the repartition topic (:mod:`worker.process.forward`). The Faust agents only iterate,
call it, and emit; unit tests call it with plain dicts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from worker.process.echo import dedupe_key, is_own_echo
from worker.process.engine import ActionRecordLike, RulesEngine
from worker.process.forward import Forward, read_forward
from worker.process.reload import ReloadOutcome, RulesWatcher
from worker.process.state import (
    EngineState,
    PartitionView,
    apply_changes,
    is_expired,
    keys_of_rules,
    partition_state,
    remember,
    rule_id_of,
    seen_before,
)
from worker.tables import WALK_SLICE, PacedWalks, PartitionWalk

log = logging.getLogger("zapflow.process")

NO_ACTIONS: Sequence[ActionRecordLike] = ()


class StateNotWritten(Exception):
    """The rule state of an evaluated event could not be written to its table.

    Raised rather than logged and skipped: unlike a broken envelope, the event itself is
    fine, and evaluating it again once the table works loses nothing.
    """


@dataclass
class ProcessCounters:
    """What the stage has done since it started (exported as metrics, logged on stop)."""

    events: int = 0
    evaluated: int = 0
    no_rule: int = 0
    echoes: int = 0
    duplicates: int = 0
    errors: int = 0
    actions: int = 0
    forwarded: int = 0
    rekeyed: int = 0
    timer_actions: int = 0
    emit_errors: int = 0
    state_retries: int = 0
    tick_errors: int = 0
    sweeps: int = 0
    reloads: int = 0
    reload_failures: int = 0


@dataclass
class EventProcessor:
    """Evaluates envelopes and timers with the bundle in force."""

    watcher: RulesWatcher
    engine: RulesEngine
    #: How long a gateway message id is remembered for duplicate detection (0: not at all).
    dedupe_ttl_s: float = 3600.0
    #: How often a pass over each partition's whole state begins (expiry of old state),
    #: each pass spread over the ticks of this interval (:meth:`_sweep_share`).
    sweep_interval_s: float = 60.0
    #: How often each partition gets a tick (:meth:`tick`, :meth:`forget_old_messages`).
    tick_interval_s: float = 1.0
    counters: ProcessCounters = field(default_factory=ProcessCounters)
    #: Rules whose state is still to be dropped, and the partitions already cleaned.
    _purge_rules: frozenset[str] = frozenset()
    _purged: set[int] = field(default_factory=set)
    #: Rules with deadlines, and per partition the state keys they hold.
    _timer_rules: frozenset[str] = frozenset()
    _timer_keys: dict[int, set[str]] = field(default_factory=dict)
    #: The partitions swept whole since the last start, rebalance or reload (their timer
    #: index is built).
    _indexed: set[int] = field(default_factory=set)
    #: Bumped by every rebalance or reload: a whole sweep under way then stops.
    _generation: int = 0
    #: The sweeps after that, one pass per partition at a time, in shares.
    _sweeping: PacedWalks = field(init=False)
    #: The passes forgetting old message ids, one per partition at a time.
    _forgetting: PacedWalks = field(init=False)

    def __post_init__(self) -> None:
        self._timer_rules = self.engine.timer_rules(self.watcher.current.bundle)
        self._sweeping = PacedWalks(self.tick_interval_s)
        self._forgetting = PacedWalks(self.tick_interval_s)

    def process(
        self,
        raw: bytes,
        partition: int,
        state: MutableMapping[str, Any],
        seen: MutableMapping[str, Any],
        now: datetime,
    ) -> Sequence[ActionRecordLike | Forward]:
        """Evaluate one envelope.

        Returns its action records, then one :class:`Forward` per key its rekeyed rules
        need it under. Echoes are dropped before evaluation, and second deliveries of a
        gateway message before anything of their evaluation takes effect. A broken envelope
        or a failing rule is logged and counted, and yields no records.

        Raises:
            StateNotWritten: the state could not be written; evaluate the event again.
        """
        counters = self.counters
        counters.events += 1
        envelope: Any = None
        try:
            envelope = orjson.loads(raw)
            bundle = self.watcher.current.bundle
            if envelope["event"] not in bundle.events:
                counters.no_rule += 1
                return NO_ACTIONS
            if is_own_echo(envelope.get("data")):
                counters.echoes += 1
                return NO_ACTIONS
            # The engine only reads the state; its writes come back as changes. So an event
            # is evaluated first, and the delivery memory is asked only when it would do
            # something: most events do nothing, and for them a second delivery makes no
            # difference. That table read on every event cost 12-19 % of the stage's CPU
            # with 50 rules (bench/README.md).
            evaluation = self.engine.evaluate(bundle, EngineState(state), envelope, now)
            routes = self.engine.route(bundle, envelope)
            if not (evaluation.actions or evaluation.changes or routes):
                counters.evaluated += 1
                return NO_ACTIONS
            key = dedupe_key(envelope) if self.dedupe_ttl_s > 0 else None
            if key is not None and seen_before(
                seen, key, envelope["id"], now_s=now.timestamp(), ttl_s=self.dedupe_ttl_s
            ):
                counters.duplicates += 1
                return NO_ACTIONS
        except Exception:
            counters.errors += 1
            log.exception(
                "event %s (partition %d) not evaluated", _event_id(envelope, raw), partition
            )
            return NO_ACTIONS
        try:
            if evaluation.changes:
                apply_changes(state, evaluation.changes, partition)
                self._track_timers(partition, evaluation.changes)
            if key is not None:
                # Only a message that did something is remembered: evaluating one that did
                # nothing again does nothing again, and each remembered id costs a changelog
                # write, which measured as the largest per-event cost of the stage.
                remember(seen, key, envelope["id"], partition, now.timestamp())
        except Exception as exc:
            # Not the event's fault (the table's changelog is not usable yet, say): evaluate
            # it again later rather than drop its actions.
            raise StateNotWritten(
                f"state of event {_event_id(envelope, raw)} (partition {partition}) "
                f"not written: {exc!r}"
            ) from exc
        counters.evaluated += 1
        counters.actions += len(evaluation.actions)
        if not routes:
            return evaluation.actions
        counters.forwarded += len(routes)
        event_id = str(envelope["id"])
        forwards = [Forward(k, ids, event_id, raw) for k, ids in routes]
        return [*evaluation.actions, *forwards]

    def process_rekeyed(
        self, raw: bytes, partition: int, state: MutableMapping[str, Any], now: datetime
    ) -> Sequence[ActionRecordLike]:
        """Evaluate one forwarded envelope with its rekeyed rules.

        Its state is written for ``partition`` of the repartition topic, which has the
        table's partition count, so the tick of that partition fires its deadlines. A
        broken record or a failing rule is logged and counted, and yields no actions.

        Raises:
            StateNotWritten: the state could not be written; evaluate the record again.
        """
        self.counters.rekeyed += 1
        envelope: Any = None
        try:
            rule_ids, envelope = read_forward(raw)
            bundle = self.watcher.current.bundle
            evaluation = self.engine.evaluate_rekeyed(
                bundle, rule_ids, EngineState(state), envelope, now
            )
        except Exception:
            self.counters.errors += 1
            log.exception(
                "rekeyed event %s (partition %d) not evaluated", _event_id(envelope, raw), partition
            )
            return NO_ACTIONS
        if evaluation.changes:
            try:
                apply_changes(state, evaluation.changes, partition)
            except Exception as exc:
                raise StateNotWritten(
                    f"state of rekeyed event {_event_id(envelope, raw)} (partition {partition}) "
                    f"not written: {exc!r}"
                ) from exc
            self._track_timers(partition, evaluation.changes)
        self.counters.actions += len(evaluation.actions)
        return evaluation.actions

    async def tick(
        self,
        partition: int,
        state: MutableMapping[str, Any],
        now: datetime,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> Sequence[ActionRecordLike]:
        """Once a second per partition: fire due deadlines, and sweep a share of the state.

        Firing walks only the keys of rules with deadlines (``for``), indexed per partition
        as the state changes. The first tick of a partition after a start, a rebalance or a
        reload sweeps it whole instead (:meth:`_sweep_whole`): it builds that index, lets the
        engine fire what is due and drop expired and orphaned state, and drops the state of
        rules changed by a reload. After that a sweep pass begins every
        ``sweep_interval_s``, a share per tick (:meth:`_sweep_share`). Old message ids are
        forgotten apart (:meth:`forget_old_messages`, which the caller runs after the
        tick). Scanning all state every second instead costs O(state) per partition per
        second, which at a few hundred thousand keys is more than the events themselves.
        Returns the actions of the deadlines that fired.
        """
        if partition not in self._indexed:
            return await self._sweep_whole(partition, state, now, still_ours)
        try:
            keys = self._timer_keys.get(partition) or set()
            local = {}
            for key in list(keys):
                stored = state.get(key)
                if stored is None:
                    keys.discard(key)
                else:
                    local[key] = stored[1]
            fired = self._fire_due(partition, state, local, now) if local else NO_ACTIONS
        except Exception:
            self.counters.tick_errors += 1
            log.exception("timers of partition %d not evaluated", partition)
            fired = NO_ACTIONS
        swept = await self._sweep_share(partition, state, now, still_ours)
        return [*fired, *swept] if swept else fired

    async def _sweep_whole(
        self,
        partition: int,
        state: MutableMapping[str, Any],
        now: datetime,
        still_ours: Callable[[], bool],
    ) -> Sequence[ActionRecordLike]:
        """Walk the partition whole in slices, handing the event loop back between them:
        build its timer index, fire what is due, drop expired and orphaned state and the
        state of rules a reload changed.

        The partition counts as indexed only once the walk is complete; a walk cut short (a
        reload, a rebalance, the partition taken away, an error) begins again on the
        partition's next tick. Events of the partition that come between two slices write
        to the index the walk is building (begun empty here).
        """
        generation = self._generation
        self._timer_keys[partition] = set()
        purge = self._purge_rules if partition not in self._purged else frozenset()
        walk = PartitionWalk(state, partition)
        actions: list[ActionRecordLike] = []
        try:
            while not walk.done:
                if self._generation != generation or not still_ours():
                    return actions
                items = walk.take(WALK_SLICE)
                if purge:
                    stale = set(keys_of_rules(items, partition, purge))
                    for key in stale:
                        del state[key]
                    items = [item for item in items if item[0] not in stale]
                actions += self._sweep_slice(partition, state, items, now)
                if not walk.done:
                    await asyncio.sleep(0)
        except Exception:
            self.counters.tick_errors += 1
            log.exception("state of partition %d not swept", partition)
            return actions
        if purge:
            self._purged.add(partition)
        self._indexed.add(partition)
        self._sweeping.walked_whole(partition, now.timestamp(), walk.visited)
        self.counters.sweeps += 1
        return actions

    async def _sweep_share(
        self,
        partition: int,
        state: MutableMapping[str, Any],
        now: datetime,
        still_ours: Callable[[], bool],
    ) -> Sequence[ActionRecordLike]:
        """This tick's share of the partition's sweep.

        A pass over the partition's state begins every ``sweep_interval_s``, and each tick
        walks only its share of it (:class:`worker.tables.PacedWalks`), letting the engine
        fire what is due in it and drop what has expired, and adding to the timer index any
        deadline key it lacks. Sweeping a partition whole at once held the event loop for
        all of its state, every minute: 17 ms of CPU for 12,500 per-chat throttles, 256 ms
        for 125,000 (memory store). A reload or a rebalance meanwhile ends the share: the
        partition's next tick sweeps it whole.
        """
        counters = self.counters

        def begun() -> None:
            counters.sweeps += 1

        actions: list[ActionRecordLike] = []
        shares = self._sweeping.share(
            state, partition, now.timestamp(), self.sweep_interval_s, still_ours, on_begin=begun
        )
        try:
            async with aclosing(shares):
                async for items in shares:
                    if partition not in self._indexed:
                        break
                    actions += self._sweep_slice(partition, state, items, now)
        except Exception:
            counters.tick_errors += 1
            log.exception("state of partition %d not swept", partition)
            self._sweeping.abandon(partition)
        return actions

    def _sweep_slice(
        self,
        partition: int,
        state: MutableMapping[str, Any],
        items: list[tuple[str, Any]],
        now: datetime,
    ) -> Sequence[ActionRecordLike]:
        """One slice of a sweep: add its deadline keys to the partition's timer index, fire
        what is due in it and drop what has expired."""
        local = partition_state(items, partition)
        if not local:
            return NO_ACTIONS
        timer_rules = self._timer_rules
        if timer_rules:
            index = self._timer_keys.setdefault(partition, set())
            index.update(key for key in local if rule_id_of(key) in timer_rules)
        return self._fire_due(partition, state, local, now)

    def _fire_due(
        self,
        partition: int,
        state: MutableMapping[str, Any],
        local: Mapping[str, Any],
        now: datetime,
    ) -> Sequence[ActionRecordLike]:
        """Let the engine fire what is due in ``local`` (keys of ``partition``) and drop what
        has expired; write its changes."""
        bundle = self.watcher.current.bundle
        evaluation = self.engine.fire_due(bundle, PartitionView(local, state, partition), now)
        if evaluation.changes:
            apply_changes(state, evaluation.changes, partition)
            self._track_timers(partition, evaluation.changes)
        self.counters.timer_actions += len(evaluation.actions)
        return evaluation.actions

    async def forget_old_messages(
        self,
        partition: int,
        seen: MutableMapping[str, Any],
        now_s: float,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> int:
        """On each tick: forget the partition's next share of message ids older than the TTL.

        The delivery memory holds every message id of the last ``dedupe_ttl_s`` (an hour by
        default: 1.8 million ids at 500 messages/s). Walking a partition's ids whole once a
        minute cost each id 60 visits in its life, and held the event loop for 100-200 ms
        every minute, which every event in flight waited for (``bench/README.md``). So a
        pass over a partition begins every tenth of ``dedupe_ttl_s`` (or every sweep
        interval, if longer), and each tick walks only its share
        (:class:`worker.tables.PacedWalks`). An id is dropped only if it is still old when
        its slice is taken (an event may have delivered it again since the pass began). A
        partition taken away mid-pass is left to its next owner. Returns how many ids were
        dropped.
        """
        period = PacedWalks.period(self.dedupe_ttl_s, self.sweep_interval_s)
        ttl = self.dedupe_ttl_s
        forgotten = 0
        try:
            async for items in self._forgetting.share(seen, partition, now_s, period, still_ours):
                # A slice holds the ids as they are when it is taken, and nothing awaits
                # between taking it and the deletes below.
                for key, stored in items:
                    if is_expired(stored, partition, now_s, ttl):
                        del seen[key]
                        forgotten += 1
        except Exception:
            self.counters.tick_errors += 1
            log.exception("old message ids of partition %d not forgotten", partition)
            self._forgetting.abandon(partition)
        return forgotten

    def _track_timers(self, partition: int, changes: Mapping[str, Any]) -> None:
        timer_rules = self._timer_rules
        if not timer_rules:
            return
        keys = self._timer_keys.setdefault(partition, set())
        for key, value in changes.items():
            if rule_id_of(key) in timer_rules:
                if value is None:
                    keys.discard(key)
                else:
                    keys.add(key)

    def forget_partitions(self) -> None:
        """After a rebalance: rebuild every partition's index on its next tick."""
        self._generation += 1
        self._indexed.clear()
        self._timer_keys.clear()
        self._sweeping.reset()
        self._forgetting.reset()

    def reloaded(self, outcome: ReloadOutcome) -> None:
        """Take note of a reload check: count it, schedule the state of stale rules to go."""
        if outcome.status == "failed":
            self.counters.reload_failures += 1
        elif outcome.status == "swapped":
            self.counters.reloads += 1
            self._timer_rules = self.engine.timer_rules(self.watcher.current.bundle)
            self.forget_partitions()
            if outcome.stale:
                self._purge_rules = self._purge_rules | outcome.stale
                self._purged = set()


def _event_id(envelope: Any, raw: bytes) -> str:
    """The envelope id for a log line, or the start of the raw bytes when there is none."""
    if isinstance(envelope, dict) and isinstance(envelope.get("id"), str):
        return str(envelope["id"])
    return repr(raw[:60])
