"""Named time intervals with a time zone (Alertmanager's ``time_intervals``, simplified).

``business-hours: {location: America/Sao_Paulo, periods: [{weekdays: [monday:friday],
times: ["09:00-18:00"]}]}``. A rule is muted during (``mute_during``) or only active
during (``active_during``) such intervals; the engine asks :meth:`TimeInterval.contains`
for the event's time and :meth:`TimeInterval.next_change` to say "suppressed until".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class IntervalError(ValueError):
    """A period that does not parse; the message says what is accepted."""


def parse_weekdays(spec: str) -> frozenset[int]:
    """``monday:friday`` -> {0..4}; ``saturday`` -> {5}; ranges may wrap (``friday:monday``)."""
    text = spec.strip().lower()
    first, sep, last = text.partition(":")
    for name in (first, last) if sep else (first,):
        if name not in WEEKDAYS:
            raise IntervalError(
                f"unknown weekday '{name}'; use monday … sunday or a range like monday:friday"
            )
    start = WEEKDAYS.index(first)
    end = WEEKDAYS.index(last) if sep else start
    days = set()
    day = start
    while True:
        days.add(day)
        if day == end:
            break
        day = (day + 1) % 7
    return frozenset(days)


def _minutes(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise IntervalError(f"expected a time range like 09:00-18:00, found {text!r}")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise IntervalError(f"expected a time range like 09:00-18:00, found {text!r}")
    return value


def parse_time_range(spec: str) -> tuple[int, int]:
    """``09:00-18:00`` -> (540, 1080) minutes after midnight; the end is exclusive."""
    start, sep, end = spec.partition("-")
    if not sep:
        raise IntervalError(f"expected a time range like 09:00-18:00, found {spec!r}")
    first, last = _minutes(start), _minutes(end)
    if last <= first:
        raise IntervalError(
            f"time range {spec!r} ends before it starts; split ranges that cross midnight"
        )
    return first, last


@dataclass(frozen=True)
class Period:
    """Some weekdays and, on them, some time ranges (all day when there are none)."""

    weekdays: frozenset[int]
    times: tuple[tuple[int, int], ...]

    def contains(self, local: datetime) -> bool:
        if local.weekday() not in self.weekdays:
            return False
        if not self.times:
            return True
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.times)


@dataclass(frozen=True)
class TimeInterval:
    """A named set of periods in one time zone."""

    name: str
    location: str
    periods: tuple[Period, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.location)

    def contains(self, now: datetime) -> bool:
        """Whether ``now`` (aware) falls in any period, read in the interval's zone."""
        local = now.astimezone(self.zone)
        return any(p.contains(local) for p in self.periods)

    def next_change(self, now: datetime) -> datetime:
        """The first minute boundary after ``now`` where :meth:`contains` flips (≤ 8 days)."""
        zone = self.zone
        local = now.astimezone(zone)
        inside = self.contains(now)
        candidates: list[datetime] = []
        day0: date = local.date()
        for offset in range(9):
            day = day0 + timedelta(days=offset)
            midnight = datetime.combine(day, time(0), tzinfo=zone)
            candidates.append(midnight)
            for period in self.periods:
                for start, end in period.times:
                    for minute in (start, end):
                        candidates.append(midnight + timedelta(minutes=minute))
        for candidate in sorted(c for c in candidates if c > local):
            if self.contains(candidate) != inside:
                return candidate.astimezone(now.tzinfo)
        return now + timedelta(days=8)
