"""Admission: exact under concurrency, each limit with its numbers, days in SDBOT_QUOTA_TZ, refunds, overrides."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.messages.i18n import render_error
from bot.quotas import days
from bot.quotas.admission import Quotas
from bot.quotas.rules import Admission, AlreadyAdmitted, QuotaError, QuotaState, violation
from bot.storage.sqlite import SQLiteStorage
from tests.pipeline_support import make_settings, usage_matches_jobs

PRIVATE = ChatRef("telegram", "1", False)
GROUP = ChatRef("telegram", "-100", True)


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def quotas_for(store: SQLiteStorage, clock: Clock | None = None, **overrides: Any) -> Quotas:
    limits = {"daily_images": 20, "rate_per_minute": 0, "max_pending": 1000, "chat_daily_images": 0} | overrides
    settings = make_settings(store.path, **limits)
    return Quotas(store, settings, clock or Clock(datetime(2026, 5, 1, 12, tzinfo=UTC)))


def admission(
    user: str = "1", *, n: int = 1, chat: ChatRef = PRIVATE, exempt: bool = False, platform: str = "telegram"
) -> Admission:
    return Admission(
        user=UserRef(platform, user),
        chat=chat,
        request=DrawRequest(prompt="a cat", n=n),
        route={"chat_id": chat.chat_id},
        backend="placeholder",
        lang="en",
        seed=42,
        exempt=exempt,
    )


async def outcomes(quotas: Quotas, admissions: list[Admission]) -> tuple[int, list[QuotaError]]:
    """Run admissions all at once; (images admitted, errors)."""
    results = await asyncio.gather(*(quotas.admit(a) for a in admissions), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, QuotaError) for e in errors), errors
    return sum(r.images for r in results if not isinstance(r, BaseException)), errors  # type: ignore[misc]


# Exactness -------------------------------------------------------------------------------------------


async def test_a_thousand_simultaneous_admissions_admit_exactly_the_daily_limit(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=10)
    images, errors = await outcomes(quotas, [admission() for _ in range(1000)])
    assert images == 10
    assert len(errors) == 990 and {e.code for e in errors} == {"quota_daily"}
    assert (await quotas.state("telegram:1")).used == 10
    assert (await store.fetchone("SELECT count(*) FROM jobs"))[0] == 10
    assert await usage_matches_jobs(store) == []


async def test_multi_image_requests_never_overshoot(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=10)
    images, errors = await outcomes(quotas, [admission(n=3) for _ in range(200)])
    assert images == 9  # a fourth request for 3 would make 12
    assert all(e.params["left"] == 1 and e.params["requested"] == 3 for e in errors)


async def test_a_chat_cap_holds_across_users_at_once(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, chat_daily_images=7)
    images, errors = await outcomes(quotas, [admission(str(i % 20), chat=GROUP) for i in range(300)])
    assert images == 7
    assert {e.code for e in errors} == {"quota_chat"}
    assert await usage_matches_jobs(store) == []


# Each limit, with the numbers its message needs -------------------------------------------------------


async def test_daily_limit_message_has_the_numbers_and_the_reset_time(store: SQLiteStorage) -> None:
    clock = Clock(datetime(2026, 5, 1, 21, 30, tzinfo=UTC))
    quotas = quotas_for(store, clock, daily_images=5)
    await quotas.admit(admission(n=4))
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission(n=2))
    error = caught.value
    assert error.code == "quota_daily"
    assert (error.params["used"], error.params["limit"], error.params["requested"], error.params["left"]) == (
        4,
        5,
        2,
        1,
    )
    assert error.retry_after == pytest.approx(2.5 * 3600)
    assert error.resets_at == datetime(2026, 5, 2, tzinfo=UTC).timestamp()
    en, zh = render_error(error, "en"), render_error(error, "zh")
    assert "4 of your 5" in en and "00:00 UTC" in en and "2 h 30 min" in en
    assert "4" in zh and "5" in zh and "00:00" in zh and "2 小时 30 分钟" in zh
    await quotas.admit(admission(n=1))  # what is left still fits


async def test_pending_limit_counts_queued_and_running_jobs(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, max_pending=2)
    jobs = store.jobs
    first = await quotas.admit(admission())
    await quotas.admit(admission())
    await jobs.claim(first.id)  # running still counts
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission())
    assert caught.value.code == "quota_pending"
    assert caught.value.params == {"pending": 2, "count": 2, "limit": 2}
    assert "2" in render_error(caught.value, "zh")
    await jobs.finish(first.id, delivered=1, charged=1)
    await quotas.admit(admission())


async def test_rate_limit_says_exactly_when_the_next_request_fits(store: SQLiteStorage) -> None:
    clock = Clock(datetime(2026, 5, 1, 12, tzinfo=UTC))
    quotas = quotas_for(store, clock, rate_per_minute=3)
    for step in (0, 10, 20):
        clock.advance(step and 10)
        await quotas.admit(admission())
    clock.advance(5)  # t = 25 s; requests at 0, 10, 20
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission())
    assert caught.value.code == "quota_rate"
    assert caught.value.retry_after == pytest.approx(35)  # the one at t=0 leaves the window at t=60
    assert "35 s" in render_error(caught.value, "en") and "35 秒" in render_error(caught.value, "zh")
    clock.advance(35.001)
    await quotas.admit(admission())
    with pytest.raises(QuotaError):
        await quotas.admit(admission())


async def test_chat_cap_applies_in_groups_only(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, chat_daily_images=2)
    await quotas.admit(admission("1", n=2, chat=GROUP))
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission("2", chat=GROUP))
    assert caught.value.code == "quota_chat"
    assert caught.value.params["used"] == 2 and caught.value.params["limit"] == 2
    await quotas.admit(admission("2", chat=PRIVATE))
    await quotas.admit(admission("2", chat=ChatRef("telegram", "-200", True)))  # another group has its own


async def test_a_ban_is_a_limit_and_admins_are_exempt_from_everything(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=1, max_pending=1, rate_per_minute=1)
    await quotas.set_banned("telegram:1", True)
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission("1"))
    assert caught.value.code == "banned"
    await quotas.set_banned("telegram:1", False)
    await quotas.admit(admission("1"))

    await quotas.set_banned("telegram:9", True)
    for _ in range(5):
        await quotas.admit(admission("9", n=4, exempt=True))
    assert (await quotas.state("telegram:9")).used == 20  # admins' images are still counted, for stats


async def test_zero_means_no_limit(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=0, rate_per_minute=0, chat_daily_images=0)
    images, errors = await outcomes(quotas, [admission(n=4, chat=GROUP) for _ in range(30)])
    assert images == 120 and errors == []


# Overrides -------------------------------------------------------------------------------------------


async def test_per_user_and_per_chat_overrides_take_precedence_until_reset_to_default(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=2, chat_daily_images=100)
    await quotas.set_user_limit("telegram:1", "daily_images", 5)
    await quotas.set_user_limit("telegram:2", "daily_images", 0)  # 0: no limit
    assert (await outcomes(quotas, [admission("1") for _ in range(10)]))[0] == 5
    assert (await outcomes(quotas, [admission("2") for _ in range(10)]))[0] == 10
    assert (await outcomes(quotas, [admission("3") for _ in range(10)]))[0] == 2

    await quotas.set_user_limit("telegram:1", "daily_images", None)
    state = await quotas.state("telegram:1")
    assert (state.daily_images, state.daily_override) == (2, False)

    await quotas.set_chat_limit("telegram:-100", 3)
    assert (await outcomes(quotas, [admission(str(i), chat=GROUP) for i in range(10, 20)]))[0] == 3
    await quotas.set_user_limit("telegram:1", "max_pending", 1)
    assert (await quotas.state("telegram:1")).max_pending == 1
    with pytest.raises(ValueError):
        await quotas.set_user_limit("telegram:1", "max_pending", 0)


async def test_reset_gives_back_todays_images(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=3)
    await quotas.admit(admission(n=3))
    assert await quotas.reset_usage("user", "telegram:1") == 3
    await quotas.admit(admission(n=3))
    assert await quotas.reset_usage("user", "telegram:404") == 0


# Days and refunds ------------------------------------------------------------------------------------


async def test_the_day_turns_at_midnight_in_the_quota_time_zone(store: SQLiteStorage) -> None:
    shanghai = ZoneInfo("Asia/Shanghai")  # UTC+8: its midnight is 16:00 UTC
    clock = Clock(datetime(2026, 5, 1, 15, 59, 59, tzinfo=UTC))
    quotas = Quotas(store, make_settings(store.path, daily_images=2, rate_per_minute=0, quota_tz=shanghai), clock)
    assert quotas.today() == "2026-05-01"
    await quotas.admit(admission(n=2))
    with pytest.raises(QuotaError) as caught:
        await quotas.admit(admission())
    assert caught.value.retry_after == pytest.approx(1)
    assert "00:00 Asia/Shanghai" in render_error(caught.value, "en")

    clock.advance(1)  # 16:00:00 UTC = 00:00 in Shanghai; still 1 May in UTC
    assert quotas.today() == "2026-05-02"
    job = await quotas.admit(admission(n=2))
    assert job.quota_day == "2026-05-02"
    assert (await quotas.state("telegram:1")).used == 2


async def test_a_refund_goes_back_to_the_day_that_was_charged(store: SQLiteStorage) -> None:
    clock = Clock(datetime(2026, 5, 1, 23, 59, tzinfo=UTC))
    quotas = quotas_for(store, clock, daily_images=4)
    jobs = store.jobs
    late = await quotas.admit(admission(n=3))
    clock.advance(120)  # the next day
    await quotas.admit(admission(n=4))
    failed = await jobs.fail(late.id, "backend_unavailable", refund=True)
    assert failed is not None and failed.charged == 0
    assert await jobs.fail(late.id, "backend_unavailable", refund=True) is None  # refunded once only
    used = {r["day"]: r["images"] for r in await store.fetchall("SELECT day, images FROM usage WHERE scope='user'")}
    assert used == {"2026-05-01": 0, "2026-05-02": 4}
    assert await usage_matches_jobs(store) == []


async def test_a_job_is_claimed_once(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=4)
    jobs = store.jobs
    job = await quotas.admit(admission(n=2))
    claimed = await jobs.claim(job.id)
    assert claimed is not None and claimed == await jobs.get(job.id)
    assert (claimed.status, claimed.attempts) == ("running", 1) and claimed.started_at is not None
    assert await jobs.claim(job.id) is None  # running already: not claimed twice


async def test_a_failure_that_was_the_users_fault_stays_charged(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=4)
    jobs = store.jobs
    job = await quotas.admit(admission(n=2))
    await jobs.claim(job.id)
    await jobs.fail(job.id, "backend_invalid_request", refund=False)
    assert (await quotas.state("telegram:1")).used == 2


@given(when=st.floats(min_value=0, max_value=4e9), zone=st.sampled_from(["UTC", "Asia/Shanghai", "America/Havana",
       "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kathmandu"]))  # fmt: skip
def test_next_day_start_is_the_first_instant_of_the_next_local_day(when: float, zone: str) -> None:
    tz = ZoneInfo(zone)
    start = days.next_day_start(when, tz)
    today = datetime.fromisoformat(days.day_of(when, tz)).date()
    assert days.day_of(start, tz) == (today + timedelta(days=1)).isoformat()
    assert days.day_of(start - 0.001, tz) == today.isoformat()
    assert start > when


# The SQL decision and the Python explanation agree ----------------------------------------------------

_rarely = st.integers(0, 4).map(lambda x: x == 0)  # true one time in five, so most requests get far enough
_states = st.fixed_dictionaries(
    {
        "banned": _rarely,
        "daily": st.integers(0, 6),
        "daily_override": st.none() | st.integers(0, 6),
        "rate": st.integers(0, 4),
        "pending_limit": st.integers(1, 4),
        "chat_daily": st.integers(0, 6),
        "chat_override": st.none() | st.integers(0, 6),
        "used": st.integers(0, 5),
        "chat_used": st.integers(0, 5),
        "pending": st.integers(0, 4),
        "recent": st.integers(0, 4),
        "n": st.integers(1, 3),
        "group": st.booleans(),
        "exempt": _rarely,
    }
)


def test_the_admission_statement_and_the_explanation_agree(tmp_path: Path) -> None:
    """Random states: the one-statement decision admits exactly when :func:`violation` finds nothing, and
    a refusal is explained with the limit the rules name first."""
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(SQLiteStorage.open(tmp_path / "sdbot.db"))
    counter = itertools.count()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(s=_states)
    def check(s: dict[str, Any]) -> None:
        loop.run_until_complete(_check_state(store, next(counter), s))

    try:
        check()
    finally:
        loop.run_until_complete(store.close())
        loop.close()


async def _check_state(store: SQLiteStorage, i: int, s: dict[str, Any]) -> None:
    clock = Clock(datetime(2026, 5, 1, 12, tzinfo=UTC))
    quotas = quotas_for(
        store, clock, daily_images=s["daily"], rate_per_minute=s["rate"], max_pending=s["pending_limit"],
        chat_daily_images=s["chat_daily"],
    )  # fmt: skip
    user, chat_id = f"u{i}-{uuid.uuid4().hex[:6]}", f"-{i}"
    chat = ChatRef("telegram", chat_id, s["group"])
    await quotas.set_banned(f"telegram:{user}", s["banned"])
    await quotas.set_user_limit(f"telegram:{user}", "daily_images", s["daily_override"])
    await quotas.set_chat_limit(chat.key, s["chat_override"])
    # History, written directly: `recent` requests in the last minute of which `pending` are unfinished
    # (the rest older), and today's usage.
    rows = [("queued", clock() - 30)] * min(s["pending"], s["recent"])
    rows += [("done", clock() - 30)] * max(0, s["recent"] - s["pending"])
    rows += [("running", clock() - 3600)] * max(0, s["pending"] - s["recent"])
    for status, created in rows:
        await store.execute(
            "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status,"
            " images, charged, quota_day, seed, created_at) VALUES (?, 'telegram', 'x', 0, 'b', '{\"prompt\":\"x\"}',"
            " '{}', 'en', ?, 1, 0, ?, 1, ?)",
            (f"telegram:{user}", status, quotas.today(), created),
        )
    day = quotas.today()
    await store.execute("INSERT INTO usage VALUES ('user', ?, ?, ?)", (f"telegram:{user}", day, s["used"]))
    await store.execute("INSERT INTO usage VALUES ('chat', ?, ?, ?)", (chat.key, day, s["chat_used"]))

    state = QuotaState(
        banned=s["banned"],
        daily_images=s["daily"] if s["daily_override"] is None else s["daily_override"],
        rate_per_minute=s["rate"],
        max_pending=s["pending_limit"],
        chat_daily_images=s["chat_daily"] if s["chat_override"] is None else s["chat_override"],
        used=s["used"],
        chat_used=s["chat_used"],
        pending=s["pending"],
        recent=s["recent"],
        daily_override=s["daily_override"] is not None,
        chat_override=s["chat_override"] is not None,
    )
    assert await quotas.state(f"telegram:{user}", chat.key) == state
    expected = violation(state, s["n"], group_chat=s["group"], exempt=s["exempt"])
    try:
        await quotas.admit(admission(user, n=s["n"], chat=chat, exempt=s["exempt"]))
        outcome = None
    except QuotaError as exc:
        outcome = exc.code
    assert outcome == expected


# One job per platform event ----------------------------------------------------------------------------


async def test_the_same_origin_is_admitted_once_even_all_at_once(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=10)
    first = dataclasses.replace(admission(), origin="telegram:1:77")
    results = await asyncio.gather(*(quotas.admit(first) for _ in range(50)), return_exceptions=True)
    jobs = [r for r in results if not isinstance(r, BaseException)]
    again = [r for r in results if isinstance(r, AlreadyAdmitted)]
    assert len(jobs) == 1 and len(again) == 49
    assert {a.job.id for a in again} == {jobs[0].id} and jobs[0].origin == "telegram:1:77"
    assert (await quotas.state("telegram:1")).used == 1  # charged once
    other = await quotas.admit(dataclasses.replace(admission(), origin="telegram:1:78"))
    assert other.id != jobs[0].id
    assert await usage_matches_jobs(store) == []


async def test_a_redelivered_command_finds_its_job_before_any_limit_refuses_it(store: SQLiteStorage) -> None:
    quotas = quotas_for(store, daily_images=1, max_pending=1)
    job = await quotas.admit(dataclasses.replace(admission(), origin="telegram:1:5"))
    with pytest.raises(AlreadyAdmitted) as caught:  # the job itself now fills both limits
        await quotas.admit(dataclasses.replace(admission(), origin="telegram:1:5"))
    assert caught.value.job.id == job.id
    with pytest.raises(QuotaError):  # a new command is refused as before
        await quotas.admit(dataclasses.replace(admission(), origin="telegram:1:6"))
