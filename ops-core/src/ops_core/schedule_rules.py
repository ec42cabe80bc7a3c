"""When a cron schedule fires: parsing, the next run times, and what one ticker pass fires after downtime.

Pure functions, no I/O; :mod:`ops_core.worker.scheduler` applies them and
:mod:`ops_core.db.schedules` makes each decision once.

* Cron expressions are croniter's: five fields, or six with seconds last
  (``* * * * * */5``: every five seconds), and the ``@hourly``-style aliases.
  They are read in the schedule's IANA time zone (zoneinfo), so ``0 9 * * *``
  in ``Europe/Berlin`` is 09:00 Berlin time all year.
* Daylight saving time, as Vixie cron does it: a wall-clock time that does not
  exist (clocks go forward) fires at the first instant after the gap (02:30 →
  03:00); a wall-clock time that happens twice (clocks go back) fires once, at
  its first occurrence, unless the expression's hour field starts with ``*``
  (hourly or more often), which keeps firing at its interval in real time.
* A tick is on time when a ticker sees it within the misfire grace; every on-time
  tick fires. Older ticks were missed (every ticker was down): ``skip`` drops
  them, ``run_last`` fires the last missed one, once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

# One pass fires at most this many on-time ticks of one schedule; the rest wait for the next pass.
MAX_TICKS_PER_PASS = 100
# croniter gives up on expressions that never match (``0 0 30 2 *``); so do we, with a clear message.
MAX_CRON_CHARS = 200


class CatchUp(enum.StrEnum):
    """What a schedule does with the ticks that every ticker missed (downtime)."""

    SKIP = "skip"
    RUN_LAST = "run_last"


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated cron expression in its time zone."""

    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        """Validate both; :class:`InvalidSchedule` names the field at fault."""
        zone(timezone)
        if len(expression) > MAX_CRON_CHARS:
            raise InvalidSchedule(f"cron: longer than {MAX_CRON_CHARS} characters")
        if not expression.strip():
            raise InvalidSchedule("cron: must not be blank")
        fields = expression.split()
        if not expression.startswith("@") and len(fields) not in (5, 6):
            raise InvalidSchedule(
                f"cron: {expression!r} has {len(fields)} fields; five (minute hour day month weekday)"
                " or six (with seconds last)"
            )
        try:
            croniter(expression, datetime.now(UTC))
        except (CroniterError, ValueError, KeyError, TypeError) as exc:
            raise InvalidSchedule(f"cron: {expression!r} is not a valid cron expression ({exc})") from None
        cron = cls(expression, timezone)
        cron.next_after(datetime.now(UTC))  # one that never matches (30 February) fails here
        return cron

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), in UTC."""
        return self.ticks_after(after, 1)[0]

    def ticks_after(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` ticks strictly after ``after``, in UTC, with the DST rule applied."""
        if after.tzinfo is None:
            raise ValueError(f"naive datetime {after!r}")
        tz = zone(self.timezone)
        it = croniter(self.expression, after.astimezone(tz))
        ticks: list[datetime] = []
        try:
            while len(ticks) < count:
                tick = it.get_next(datetime)
                if self._repeated_wall_time(tick, tz):
                    continue
                ticks.append(tick.astimezone(UTC))
        except (CroniterBadDateError, CroniterBadCronError):
            raise InvalidSchedule(f"cron: {self.expression!r} never matches a date") from None
        return ticks

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment``, in UTC (None if croniter finds none)."""
        tz = zone(self.timezone)
        # croniter's get_prev is strict; a microsecond later makes it inclusive.
        it = croniter(self.expression, (moment + timedelta(microseconds=1)).astimezone(tz))
        try:
            for _ in range(10):
                tick = it.get_prev(datetime)
                if not self._repeated_wall_time(tick, tz):
                    return tick.astimezone(UTC)
        except (CroniterBadDateError, CroniterBadCronError):
            return None
        return None

    def _repeated_wall_time(self, tick: datetime, tz: ZoneInfo) -> bool:
        """The second occurrence of an ambiguous wall-clock time, for a fixed-hour expression."""
        if self._hour_is_wildcard():
            return False
        wall = tick.replace(tzinfo=None)
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        return first < tick.astimezone(UTC)

    def _hour_is_wildcard(self) -> bool:
        fields = self.expression.split()
        if self.expression.startswith("@"):
            return self.expression.strip() in ("@hourly", "@minutely")
        return fields[1].startswith("*")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; :class:`InvalidSchedule` naming the ``timezone`` field otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(f"timezone: {name!r} is not a known IANA time zone (e.g. 'Europe/Berlin')") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one ticker pass does to one due schedule."""

    fire: list[datetime]  # the ticks to fire now, oldest first (each becomes one task)
    next_run_at: datetime  # the first tick not handled by this pass
    skipped: int  # missed ticks dropped (at least this many: a long outage is not counted tick by tick)


def plan(cron: Cron, next_run_at: datetime, now: datetime, *, catch_up: CatchUp, grace_seconds: float) -> Plan:
    """The ticks from ``next_run_at`` (the first one not yet handled) up to ``now``: which to fire.

    On-time ticks (within ``grace_seconds`` of ``now``) all fire, at most
    :data:`MAX_TICKS_PER_PASS` per pass. Missed ticks are dropped, or with
    ``run_last`` the last of them fires once.
    """
    if next_run_at > now:
        return Plan([], next_run_at, 0)
    cutoff = now - timedelta(seconds=grace_seconds)
    fire: list[datetime] = []
    skipped = 0
    first_on_time = next_run_at
    if next_run_at < cutoff:
        last_missed = cron.last_at_or_before(cutoff)
        if last_missed is not None and last_missed >= next_run_at:
            if catch_up is CatchUp.RUN_LAST:
                fire.append(last_missed)
            # Counting every missed tick of a per-second schedule after a week away costs too much.
            skipped = _count_between(cron, next_run_at, last_missed, limit=1000) - len(fire)
            first_on_time = cron.next_after(last_missed)
        else:
            first_on_time = cron.next_after(cutoff)
    tick = first_on_time
    while tick <= now and len(fire) < MAX_TICKS_PER_PASS:
        fire.append(tick)
        tick = cron.next_after(tick)
    return Plan(fire, tick, skipped)


def _count_between(cron: Cron, first: datetime, last: datetime, *, limit: int) -> int:
    """Ticks in [first, last], counting up to ``limit``."""
    count = 1
    tick = first
    while tick < last and count < limit:
        tick = cron.next_after(tick)
        count += 1
    return count


def next_runs(cron: Cron, after: datetime, count: int) -> list[datetime]:
    """What a schedule shows: its next ``count`` run times after ``after``."""
    return cron.ticks_after(after, count)
