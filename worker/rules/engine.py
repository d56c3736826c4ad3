"""Evaluation: one event (or the passing of time) against a bundle, as a pure function.

``evaluate(bundle, state, envelope, now)`` and ``fire_due(bundle, state, now)`` read the
state (a read-only mapping; a Faust table works) and return the actions to perform, the
state writes, and a trace with one entry per rule considered. They never read the clock:
``now`` drives throttles, windows, ``for`` deadlines and time intervals, so a test with a
virtual clock sees exactly what production does.

State keys are ``<rule-id>|t|<key>`` (throttle), ``<rule-id>|w|<key>`` (window) and
``<rule-id>|a|<key>`` (a ``for`` alert, pending or firing); values are small JSON objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.rules.durations import humanize_seconds
from worker.rules.expressions import (
    Condition,
    EvaluationError,
    Missing,
    Template,
    template_context,
)
from worker.rules.model import ActionSpec, Rule, RuleBundle
from worker.rules.normalise import UnknownEvent, normalise
from worker.rules.prefilter import NONE_FAILING
from worker.rules.records import (
    ActionRecord,
    Evaluation,
    Phase,
    RuleTrace,
    idempotency_key,
    rfc3339,
)

MESSAGE_EVENTS = ("messages.upsert", "send.message")
#: What a condition over event data can raise besides EvaluationError: a rule that
#: compares text with a number fails for that event (an "error" trace), never the worker.
_RUNTIME_ERRORS = (
    TypeError,
    ValueError,
    ArithmeticError,
    KeyError,
    IndexError,
    AttributeError,
)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


_NO_PLAN: tuple[tuple[Rule, ...], None] = ((), None)
_OWN_SEND = "not msg.is_own_send (an echo of a zapflow send)"
_FROM_ME = "not msg.from_me (set from_me: allow to opt in)"
_BROADCAST = 'msg.chat != "status@broadcast"'


def _message_guard(view: Mapping[str, Any]) -> str | None:
    """Why message rules must not see this event, or None.

    Loop safety: the gateway echoes every send as ``messages.upsert`` with ``keyFromMe``
    (twice for text), so rules never see from_me messages unless they opt in, and never
    see echoes of zapflow's own sends at all. Status broadcasts are not chats.
    """
    if view["event"] not in MESSAGE_EVENTS:
        return None
    msg = view["msg"]
    if msg["is_own_send"]:
        return _OWN_SEND
    if msg["from_me"]:
        return _FROM_ME
    if msg["chat"] == "status@broadcast":
        return _BROADCAST
    return None


class _State:
    """The caller's state with this evaluation's writes on top."""

    __slots__ = ("base", "changes")

    def __init__(self, base: Mapping[str, Any], changes: dict[str, Any | None]) -> None:
        self.base = base
        self.changes = changes

    def get(self, key: str) -> Any:
        if key in self.changes:
            return self.changes[key]
        return self.base.get(key)

    def set(self, key: str, value: Any | None) -> None:
        self.changes[key] = value


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _key(parts: tuple[Condition, ...], context: Mapping[str, Any]) -> str:
    values = []
    for part in parts:
        value = part.fn(context)
        if isinstance(value, Missing):
            raise EvaluationError(f"key part '{part.source}' is undefined")
        values.append("" if value is None else str(value))
    return "|".join(values)


def _item_id(item: object, index: int) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return str(item["id"])
    return str(index)


def evaluate(
    bundle: RuleBundle, state: Mapping[str, Any], envelope: Mapping[str, Any], now: datetime
) -> Evaluation:
    """Run every rule listening to the envelope's event.

    Args:
        bundle: the loaded rules.
        state: current state (read only).
        envelope: the envelope of contract §1.
        now: an aware datetime; the event's processing time.

    Returns:
        Actions of active rules, state changes, and one trace per rule (per item for
        ``for_each``).

    Raises:
        UnknownEvent: when the envelope's event is not a streamed event.
    """
    view = normalise(envelope)
    result = Evaluation(view=view)
    rules, index = bundle.plans.get(view["event"], _NO_PLAN)
    if not rules:
        return result
    run = _Run(bundle, state, result, now)
    guard = _message_guard(view)
    append = result._trace.append  # the compact form, see Evaluation.trace
    # Keyword rules whose pattern is not in the text fail without a call of their condition
    # (worker.rules.prefilter); the check that failed is known, or found if the trace is read.
    # Not for a guarded message: most rules do not get to their condition at all.
    failing = index.failing(view) if index is not None and guard is None else NONE_FAILING
    for rule in rules:
        if guard is not None and (guard is not _FROM_ME or not rule.allow_from_me):
            append((rule.id, guard))
            continue
        if rule.id in failing:
            check = index.checks[rule.id]  # type: ignore[union-attr]
            append((rule.id, check, view) if check is not None else (rule.id, rule.when, view, 0))
            continue
        try:
            when = rule.when
            if when is not None and rule.for_s is None:
                # The hot path: most rules do not match most events. The values the
                # condition saw are only worked out if someone reads the trace.
                failed = when.test(view)
                if failed is not None:
                    append((rule.id, failed, view))
                    continue
                run.after_when(rule, view)
            else:
                run.rule(rule, view)
        except EvaluationError as exc:
            append(RuleTrace(rule.id, "error", reason="evaluation", condition=str(exc)))
        except _RUNTIME_ERRORS as exc:  # e.g. comparing text with a number
            append(RuleTrace(rule.id, "error", reason="evaluation", condition=_describe(exc)))
    return result


def fire_due(bundle: RuleBundle, state: Mapping[str, Any], now: datetime) -> Evaluation:
    """Fire ``for`` alerts whose deadline has passed; drop state that has expired.

    Also deletes state of rules that are no longer in the bundle (or are disabled), so a
    removed rule leaves nothing behind.
    """
    result = Evaluation()
    run = _Run(bundle, state, result, now)
    now_ts = run.now_ts
    for key, value in list(state.items()):
        rule_id, _, rest = key.partition("|")
        kind, _, rule_key = rest.partition("|")
        rule = bundle.by_id.get(rule_id)
        if rule is None or rule.mode == "disabled":
            result.changes[key] = None
            continue
        if not isinstance(value, dict):
            continue
        if (kind == "a" and rule.for_s is None) or (kind == "w" and rule.window is None):
            result.changes[key] = None  # the rule no longer keeps this kind of state
            continue
        if kind == "a" and value.get("phase") == "pending" and value.get("due", 0) <= now_ts:
            try:
                run.fire_pending(rule, key, rule_key, value)
            except EvaluationError as exc:
                result._trace.append(
                    RuleTrace(rule.id, "error", reason="timer", condition=str(exc))
                )
            except _RUNTIME_ERRORS as exc:
                result._trace.append(
                    RuleTrace(rule.id, "error", reason="timer", condition=_describe(exc))
                )
        elif kind == "w" and rule.window is not None:
            if not any(t > now_ts - rule.window.within_s for t in value.get("ts", [])):
                result.changes[key] = None
        elif kind == "t":
            until = value.get("until", 0)
            if now_ts >= until + value.get("period", 0):
                result.changes[key] = None
    return result


class _Run:
    """One evaluation: the bundle, the layered state, the output, and the time."""

    def __init__(
        self, bundle: RuleBundle, state: Mapping[str, Any], out: Evaluation, now: datetime
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.bundle = bundle
        self.state = _State(state, out.changes)
        self.out = out
        self.now = now
        self.now_ts = _ts(now)
        self._created_at: str | None = None

    @property
    def created_at(self) -> str:
        if self._created_at is None:
            self._created_at = rfc3339(self.now)
        return self._created_at

    def trace(self, rule: Rule, outcome: str, **kw: Any) -> None:
        self.out._trace.append(RuleTrace(rule.id, outcome, **kw))  # type: ignore[arg-type]

    # ---------------------------------------------------------------- one rule

    def rule(self, rule: Rule, view: dict[str, Any]) -> None:
        if rule.for_s is not None and self.resolve(rule, view, _key(rule.key, view)):
            return
        if rule.when is not None:
            failed = rule.when.test(view)
            if failed is not None:
                # The hot path: most rules do not match most events. The values the
                # condition saw are only worked out if someone reads the trace.
                self.out._trace.append(
                    RuleTrace(
                        rule.id,
                        "not_matched",
                        "condition",
                        None,
                        failed.source,
                        None,
                        seen=(failed, view),
                    )
                )
                return
        self.after_when(rule, view)

    def after_when(self, rule: Rule, view: dict[str, Any]) -> None:
        """The rule's condition held: apply for_each, the state primitives and fire."""
        key = _key(rule.key, view)
        if rule.for_each is None:
            self.matched(rule, view, key, None, None)
            return
        items = rule.for_each.fn(view)
        if not isinstance(items, list):
            raise EvaluationError(
                f"for_each '{rule.for_each.source}' gave {type(items).__name__}, not a list"
            )
        if not items:
            self.trace(
                rule,
                "not_matched",
                reason="for_each",
                condition=f"{rule.for_each.source} is empty",
                key=key,
            )
            return
        for index, item in enumerate(items):
            self.matched(
                rule,
                {**view, "item": item},
                key + "|" + _item_id(item, index),
                item,
                _item_id(item, index),
            )

    def resolve(self, rule: Rule, view: dict[str, Any], key: str) -> bool:
        """Resolve or cancel a pending/firing alert; True when the event was used for that."""
        akey = f"{rule.id}|a|{key}"
        alert = self.state.get(akey)
        if not alert:
            return False
        if rule.resolve_when is not None:
            resolved = rule.resolve_when.test(view) is None
        else:
            resolved = rule.when is not None and rule.when.test(view) is not None
        if not resolved:
            return False
        self.state.set(akey, None)
        if alert.get("phase") != "firing":
            self.trace(
                rule,
                "resolved",
                reason="cancelled",
                detail="condition cleared before 'for' elapsed",
                key=key,
            )
            return True
        if not alert.get("notified") or not rule.on_resolve:
            self.trace(rule, "resolved", reason="resolved", key=key)
            return True
        since = alert.get("since", self.now_ts)
        context = self.context(rule, view, alert.get("item"), alert.get("window"))
        context["alert"] = {
            "since": rfc3339(_dt(since)),
            "fired_at": rfc3339(_dt(alert.get("fired_at", since))),
            "duration": self.now_ts - since,
            "phase": "resolve",
        }
        if rule.mode == "shadow":
            self.trace(rule, "suppressed", reason="shadow", key=key, phase="resolve")
            return True
        records = self.render(
            rule,
            rule.on_resolve,
            context,
            view.get("event_id") or "",
            alert.get("item_id"),
            "resolve",
        )
        self.out.actions.extend(records)
        self.trace(
            rule, "resolved", reason="resolved", key=key, actions=len(records), phase="resolve"
        )
        return True

    def matched(
        self, rule: Rule, view: dict[str, Any], key: str, item: object, item_id: str | None
    ) -> None:
        window_info = None
        if rule.window is not None:
            window = rule.window
            wkey = f"{rule.id}|w|" + (_key(window.key, view) if window.key else key)
            previous = self.state.get(wkey) or {}
            cutoff = self.now_ts - window.within_s
            stamps = [t for t in previous.get("ts", []) if t > cutoff]
            stamps.append(self.now_ts)
            if len(stamps) < window.count:
                self.state.set(wkey, {"ts": stamps})
                self.trace(
                    rule,
                    "suppressed",
                    reason="window",
                    detail=f"{len(stamps)} of {window.count} within "
                    f"{humanize_seconds(window.within_s)}",
                    key=key,
                    item=item_id,
                )
                return
            self.state.set(wkey, None)
            window_info = {
                "count": len(stamps),
                "within": humanize_seconds(window.within_s),
                "within_s": window.within_s,
            }
        if rule.for_s is not None:
            akey = f"{rule.id}|a|{key}"
            alert = self.state.get(akey)
            if alert is None:
                due = self.now_ts + rule.for_s
                self.state.set(
                    akey,
                    {
                        "phase": "pending",
                        "since": self.now_ts,
                        "due": due,
                        "event_id": view.get("event_id"),
                        "view": {k: v for k, v in view.items() if k != "item"},
                        "item": item,
                        "item_id": item_id,
                        "window": window_info,
                    },
                )
                self.trace(rule, "pending", reason="for", until=_dt(due), key=key, item=item_id)
            elif alert.get("phase") == "pending":
                self.trace(
                    rule,
                    "suppressed",
                    reason="pending",
                    until=_dt(alert["due"]),
                    key=key,
                    item=item_id,
                )
            else:
                self.trace(
                    rule,
                    "suppressed",
                    reason="firing",
                    detail="already alerted; waiting to resolve",
                    key=key,
                    item=item_id,
                )
            return
        context = self.context(rule, view, item, window_info)
        self.fire(rule, context, key, item_id, view.get("event_id") or "")

    def fire_pending(self, rule: Rule, akey: str, key: str, alert: dict[str, Any]) -> None:
        view = dict(alert.get("view") or {})
        context = self.context(rule, view, alert.get("item"), alert.get("window"))
        since = alert.get("since", self.now_ts)
        context["alert"] = {
            "since": rfc3339(_dt(since)),
            "fired_at": rfc3339(self.now),
            "duration": self.now_ts - since,
            "phase": "fire",
        }
        notified = self.fire(rule, context, key, alert.get("item_id"), alert.get("event_id") or "")
        self.state.set(
            akey, {**alert, "phase": "firing", "fired_at": self.now_ts, "notified": notified}
        )

    # ------------------------------------------------------------------ gates

    def fire(
        self, rule: Rule, context: dict[str, Any], key: str, item_id: str | None, event_id: str
    ) -> bool:
        """Apply quiet hours, inhibition, throttle and mode, then emit; True if acted."""
        for interval in rule.mute_during:
            if interval.contains(self.now):
                self.trace(
                    rule,
                    "suppressed",
                    reason="quiet_hours",
                    detail=f"inside '{interval.name}'",
                    until=interval.next_change(self.now),
                    key=key,
                    item=item_id,
                )
                return False
        if rule.active_during and not any(i.contains(self.now) for i in rule.active_during):
            until = min(i.next_change(self.now) for i in rule.active_during)
            names = ", ".join(i.name for i in rule.active_during)
            self.trace(
                rule,
                "suppressed",
                reason="quiet_hours",
                detail=f"outside '{names}'",
                until=until,
                key=key,
                item=item_id,
            )
            return False
        for other_id in rule.inhibited_by:
            if self.is_firing(self.bundle.by_id[other_id], context):
                self.trace(
                    rule,
                    "suppressed",
                    reason="inhibited",
                    detail=f"by {other_id}",
                    key=key,
                    item=item_id,
                )
                return False
        throttle_write = None
        if rule.throttle is not None:
            throttle = rule.throttle
            tkey = f"{rule.id}|t|" + (_key(throttle.key, context) if throttle.key else key)
            previous = self.state.get(tkey)
            if previous and self.now_ts < previous["until"]:
                self.trace(
                    rule,
                    "suppressed",
                    reason="throttle",
                    until=_dt(previous["until"]),
                    key=key,
                    item=item_id,
                )
                return False
            period = throttle.period_s
            if (
                previous
                and throttle.backoff_factor
                and self.now_ts < previous["until"] + previous["period"]
            ):
                period = min(
                    previous["period"] * throttle.backoff_factor, throttle.backoff_max_s or period
                )
            throttle_write = (tkey, {"until": self.now_ts + period, "period": period})
        if rule.mode == "shadow":
            if throttle_write:
                self.state.set(*throttle_write)
            self.trace(
                rule,
                "suppressed",
                reason="shadow",
                detail=f"would send {len(rule.actions)} action(s)",
                key=key,
                item=item_id,
            )
            return False
        records = self.render(rule, rule.actions, context, event_id, item_id, "fire")
        if throttle_write:
            self.state.set(*throttle_write)
        self.out.actions.extend(records)
        self.trace(rule, "matched", key=key, item=item_id, actions=len(records))
        return True

    def is_firing(self, other: Rule, context: Mapping[str, Any]) -> bool:
        try:
            key = _key(other.key, context)
        except EvaluationError:
            return False
        if other.for_s is not None:
            alert = self.state.get(f"{other.id}|a|{key}")
            return bool(alert) and alert.get("phase") == "firing"
        if other.throttle is not None and other.throttle.key is None:
            throttled = self.state.get(f"{other.id}|t|{key}")
            return bool(throttled) and self.now_ts < throttled["until"]
        return False

    # --------------------------------------------------------------- rendering

    def context(
        self, rule: Rule, view: Mapping[str, Any], item: object, window: object
    ) -> dict[str, Any]:
        context = template_context(view)
        context["vars"] = self.bundle.vars
        context["rule"] = {"id": rule.id, "description": rule.description}
        context["now"] = self.created_at
        if item is not None:
            context["item"] = item
        if window is not None:
            context["window"] = window
        return context

    def render(  # noqa: PLR0917 - internal, called from two places
        self,
        rule: Rule,
        actions: tuple[ActionSpec, ...],
        context: Mapping[str, Any],
        event_id: str,
        item_id: str | None,
        phase: Phase,
    ) -> list[ActionRecord]:
        created = self.created_at
        instance = str(context.get("instance") or "")
        records = []
        for index, action in enumerate(actions):
            params = _action_params(action, context, instance)
            records.append(
                ActionRecord(
                    idempotency_key=idempotency_key(rule.id, event_id, index, item_id, phase),
                    rule_id=rule.id,
                    bundle_version=self.bundle.version,
                    event_id=event_id,
                    action_index=index,
                    item=item_id,
                    phase=phase,
                    instance=instance,
                    kind=action.kind,
                    params=params,
                    created_at=created,
                )
            )
        return records


def _render(tree: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(tree, Template):
        return tree.render(context)
    if isinstance(tree, dict):
        return {k: _render(v, context) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_render(v, context) for v in tree]
    return tree


def _action_params(action: ActionSpec, context: Mapping[str, Any], instance: str) -> dict[str, Any]:
    p = action.params
    kind = action.kind
    if kind == "whatsapp.send_text":
        quote = None
        if p.get("quote"):
            msg = context["msg"]
            quote = {"keyId": msg["id"], "keyRemoteJid": msg["chat"], "keyFromMe": msg["from_me"]}
        return {
            "instance": _render(p["instance"], context) if "instance" in p else instance,
            "to": _render(p["to"], context),
            "text": _render(p["text"], context),
            "quote": quote,
            "delay_ms": p.get("delay_ms"),
        }
    if kind == "whatsapp.group_participants":
        participants = _render(p["participants"], context)
        return {
            "instance": _render(p["instance"], context) if "instance" in p else instance,
            "group": _render(p["group"], context),
            "action": _render(p["action"], context),
            "participants": participants if isinstance(participants, list) else [participants],
        }
    if kind == "notify":
        assert action.channel is not None
        return {
            "channel": action.channel.as_params(),
            "text": _render(p["text"], context),
            "fields": _render(p.get("fields", {}), context),
        }
    if kind == "http":
        timeout = p.get("timeout_s")
        return {
            "method": str(_render(p.get("method", "POST"), context)).upper(),
            "url": _render(p["url"], context),
            "headers": _render(p.get("headers", {}), context),
            "json": _render(p.get("json"), context),
            "timeout_s": float(timeout) if timeout is not None else None,
        }
    if kind == "kafka.produce":
        return {
            "topic": _render(p["topic"], context),
            "key": _render(p.get("key"), context),
            "value": _render(p["value"], context),
        }
    return {"level": p.get("level", "info"), "message": _render(p["message"], context)}


__all__ = ["UnknownEvent", "evaluate", "fire_due"]
