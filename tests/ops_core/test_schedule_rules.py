"""Cron schedules' rules without I/O: parsing, next runs across DST, and the catch-up policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops_core.schedule_rules import MAX_TICKS_PER_PASS, CatchUp, Cron, InvalidSchedule, plan


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "timezone", "field"),
    [
        ("0 9 * * *", "Mars/Olympus", "timezone"),
        ("0 9 * * *", "", "timezone"),
        ("0 9 * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("0 0 30 2 *", "UTC", "cron"),  # never matches
        ("* * * * * * *", "UTC", "cron"),
        ("   ", "UTC", "cron"),
        ("every day", "UTC", "cron"),
    ],
)
def test_invalid_expressions_and_zones_name_the_field(cron: str, timezone: str, field: str) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        Cron.parse(cron, timezone)
    assert str(raised.value).startswith(f"{field}:")


def test_a_daily_time_is_local_all_year() -> None:
    cron = Cron.parse("0 9 * * *", "Europe/Berlin")
    # 09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert cron.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 8)
    assert cron.next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 7)
    # Across the spring change (29 March 2026): consecutive ticks are 23 hours apart.
    assert cron.ticks_after(utc(2026, 3, 28, 0), 2) == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)]


def test_a_wall_time_skipped_by_dst_fires_once_after_the_gap() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    # 02:30 does not exist on 29 March 2026: it fires at 03:00 CEST (01:00 UTC), once.
    assert cron.ticks_after(utc(2026, 3, 28, 12), 2) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_a_wall_time_repeated_by_dst_fires_once() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    # 02:30 happens twice on 25 October 2026 (00:30 and 01:30 UTC): a daily job runs once.
    assert cron.ticks_after(utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert cron.last_at_or_before(utc(2026, 10, 25, 2)) == utc(2026, 10, 25, 0, 30)


def test_an_interval_keeps_its_pace_in_real_time_through_the_repeated_hour() -> None:
    cron = Cron.parse("*/30 * * * *", "Europe/Berlin")
    ticks = cron.ticks_after(utc(2026, 10, 24, 23, 50), 6)
    assert ticks == [utc(2026, 10, 25, 0) + timedelta(minutes=30 * i) for i in range(6)]


def test_seconds_are_the_sixth_field() -> None:
    cron = Cron.parse("* * * * * */5", "UTC")
    assert cron.ticks_after(utc(2026, 1, 1, 0, 0, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 5),
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 15),
    ]


def test_ticks_are_strictly_after() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    assert cron.next_after(utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 6)
    assert cron.last_at_or_before(utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 5)


HOURLY = Cron.parse("0 * * * *", "UTC")


def test_nothing_due_changes_nothing() -> None:
    decided = plan(HOURLY, utc(2026, 1, 1, 6), utc(2026, 1, 1, 5, 59), catch_up=CatchUp.SKIP, grace_seconds=60)
    assert (decided.fire, decided.next_run_at, decided.skipped) == ([], utc(2026, 1, 1, 6), 0)


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_an_on_time_tick_fires_under_either_policy(catch_up: CatchUp) -> None:
    decided = plan(HOURLY, utc(2026, 1, 1, 6), utc(2026, 1, 1, 6, 0, 30), catch_up=catch_up, grace_seconds=60)
    assert (decided.fire, decided.next_run_at, decided.skipped) == ([utc(2026, 1, 1, 6)], utc(2026, 1, 1, 7), 0)


def test_skip_drops_every_missed_tick_and_runs_next_in_the_future() -> None:
    # Down from 05:30 to 09:20: the ticks of 06:00, 07:00, 08:00 and 09:00 were missed.
    now = utc(2026, 1, 1, 9, 20)
    decided = plan(HOURLY, utc(2026, 1, 1, 6), now, catch_up=CatchUp.SKIP, grace_seconds=60)
    assert decided.fire == [] and decided.skipped == 4
    assert decided.next_run_at == utc(2026, 1, 1, 10) and decided.next_run_at > now


def test_run_last_runs_the_last_missed_tick_once() -> None:
    decided = plan(HOURLY, utc(2026, 1, 1, 6), utc(2026, 1, 1, 9, 20), catch_up=CatchUp.RUN_LAST, grace_seconds=60)
    assert decided.fire == [utc(2026, 1, 1, 9)] and decided.skipped == 3
    assert decided.next_run_at == utc(2026, 1, 1, 10)


def test_late_ticks_within_the_grace_all_fire() -> None:
    every_second = Cron.parse("* * * * * *", "UTC")
    # A ticker that ran 3 seconds late: the three ticks are late, not missed.
    decided = plan(
        every_second, utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 3, 500), catch_up=CatchUp.SKIP, grace_seconds=60
    )
    assert decided.fire == [utc(2026, 1, 1, 0, 0, s) for s in (1, 2, 3)]
    assert decided.next_run_at == utc(2026, 1, 1, 0, 0, 4) and decided.skipped == 0


def test_missed_and_on_time_ticks_together() -> None:
    every_minute = Cron.parse("* * * * *", "UTC")
    now = utc(2026, 1, 1, 1, 0, 30)
    for catch_up, fired in ((CatchUp.SKIP, []), (CatchUp.RUN_LAST, [utc(2026, 1, 1, 0, 59)])):
        decided = plan(every_minute, utc(2026, 1, 1, 0, 0), now, catch_up=catch_up, grace_seconds=90)
        # 00:59:30 is the cutoff: 00:00 … 00:59 were missed, 01:00 is on time.
        assert decided.fire == [*fired, utc(2026, 1, 1, 1, 0)]
        assert decided.next_run_at == utc(2026, 1, 1, 1, 1)


def test_one_pass_fires_a_bounded_number_of_ticks() -> None:
    every_second = Cron.parse("* * * * * *", "UTC")
    start = utc(2026, 1, 1)
    decided = plan(every_second, start, start + timedelta(seconds=500), catch_up=CatchUp.SKIP, grace_seconds=3600)
    assert len(decided.fire) == MAX_TICKS_PER_PASS
    assert decided.next_run_at == start + timedelta(seconds=MAX_TICKS_PER_PASS)


def test_a_long_outage_of_a_per_second_schedule_is_cheap() -> None:
    every_second = Cron.parse("* * * * * *", "UTC")
    start = utc(2026, 1, 1)
    now = start + timedelta(days=7)
    decided = plan(every_second, start, now, catch_up=CatchUp.RUN_LAST, grace_seconds=60)
    assert decided.fire[0] == now - timedelta(seconds=60)
    assert decided.next_run_at > now - timedelta(seconds=60)
