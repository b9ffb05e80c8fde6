"""The storage port's contract, through the port only, run against every engine in ``ENGINES``.

A new engine adds one opener here and must pass every test unchanged. PostgreSQL runs on a throwaway server
the tests start (tests/postgres_support.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.jobs.job import Job
from bot.quotas.rules import Admission, Limits
from bot.storage import Storage
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage

NOW = 1_800_000_000.0
DAY = "2027-01-15"
LIMITS = Limits(daily_images=5, rate_per_minute=100, max_pending=100, chat_daily_images=0)
ANN, BO = UserRef("telegram", "1", "en", "Ann"), UserRef("telegram", "2", None, "Bo")
GROUP, DM = ChatRef("telegram", "-100", True, "Group"), ChatRef("telegram", "1", False)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


async def _sqlite(request: pytest.FixtureRequest, path: Path, clock: Clock) -> Storage:
    return await SQLiteStorage.open(path / "sdbot.db", clock=clock)


async def _postgresql(request: pytest.FixtureRequest, path: Path, clock: Clock) -> Storage:
    server = request.getfixturevalue("postgres_server")
    return await PostgresStorage.open(await server.new_database(), clock=clock)


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path, Clock], Awaitable[Storage]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(ENGINES))
async def storage(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[Storage]:
    opened = await ENGINES[request.param](request, tmp_path, clock)
    yield opened
    await opened.close()


def admission(
    user: UserRef = ANN, chat: ChatRef = GROUP, n: int = 1, *, exempt: bool = False, origin: str | None = None
) -> Admission:
    request = DrawRequest("a cat", n=n)
    return Admission(user, chat, request, {"chat_id": 1}, "placeholder", "en", 7, exempt, origin=origin)


async def admit(storage: Storage, a: Admission, limits: Limits = LIMITS) -> Job | None:
    return await storage.jobs.admit(a, limits, DAY, NOW)


async def test_admission_records_the_job_and_charges_its_day(storage: Storage) -> None:
    job = await admit(storage, admission(n=2, origin="telegram:-100:5"))
    assert job is not None
    assert (job.status, job.images, job.charged, job.quota_day, job.seed, job.user, job.chat) == (
        "queued", 2, 2, DAY, 7, "telegram:1", "telegram:-100"
    )  # fmt: skip
    assert job.request == DrawRequest("a cat", n=2) and job.route == {"chat_id": 1}
    assert await storage.jobs.get(job.id) == job
    state = await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)
    assert (state.used, state.chat_used, state.pending, state.recent) == (2, 2, 1, 1)


async def test_admission_refuses_past_a_limit_and_records_nothing(storage: Storage) -> None:
    assert await admit(storage, admission(n=5)) is not None
    assert await admit(storage, admission(n=1)) is None  # the day is used up
    assert await admit(storage, admission(n=1, exempt=True)) is not None  # admins are exempt
    await storage.quotas.set_banned(BO.key, True)
    assert await admit(storage, admission(BO)) is None
    assert len(await storage.jobs.unfinished()) == 2


async def test_concurrent_admissions_never_overspend(storage: Storage) -> None:
    outcomes = await asyncio.gather(*(admit(storage, admission()) for _ in range(40)))
    assert sum(job is not None for job in outcomes) == 5
    assert (await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)).used == 5


async def test_one_job_per_origin(storage: Storage) -> None:
    first = await admit(storage, admission(origin="telegram:-100:9"))
    assert first is not None
    assert await admit(storage, admission(origin="telegram:-100:9")) is None
    assert await storage.jobs.by_origin("telegram:-100:9") == first
    assert await storage.jobs.by_origin("telegram:-100:10") is None


async def test_transitions_happen_once_and_refunds_leave_the_counters(storage: Storage) -> None:
    job = await admit(storage, admission(n=3))
    assert job is not None
    claimed = await storage.jobs.claim(job.id)
    assert claimed is not None and (claimed.status, claimed.attempts) == ("running", 1)
    assert await storage.jobs.claim(job.id) is None
    assert not await storage.jobs.delivering(job.id, 0)  # another attempt's: fenced
    assert (await storage.jobs.get(job.id)).delivering_at is None  # type: ignore[union-attr]
    assert await storage.jobs.delivering(job.id, 1)
    assert (await storage.jobs.get(job.id)).delivering_at is not None  # type: ignore[union-attr]
    assert await storage.jobs.fail(job.id, "backend_timeout", refund=True, attempt=2) is None
    assert not await storage.jobs.finish(job.id, delivered=3, charged=3, attempt=2)
    failed = await storage.jobs.fail(job.id, "backend_timeout", refund=True, attempt=1)
    assert failed is not None and (failed.status, failed.error, failed.charged) == ("failed", "backend_timeout", 0)
    assert await storage.jobs.fail(job.id, "backend_timeout", refund=True) is None
    assert not await storage.jobs.finish(job.id, delivered=3, charged=3)
    assert (await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)).used == 0


async def test_delivery_may_only_lower_the_charge(storage: Storage) -> None:
    job = await admit(storage, admission(n=3))
    assert job is not None and await storage.jobs.claim(job.id) is not None
    assert await storage.jobs.finish(job.id, delivered=2, charged=2)
    done = await storage.jobs.get(job.id)
    assert done is not None and (done.status, done.delivered, done.charged) == ("done", 2, 2)
    assert (await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)).used == 2


async def test_requeue_and_recovery_see_unfinished_jobs_oldest_first(storage: Storage) -> None:
    a, b = await admit(storage, admission()), await admit(storage, admission(BO))
    assert a is not None and b is not None and await storage.jobs.claim(a.id) is not None
    requeued = await storage.jobs.requeue(a.id)
    assert requeued is not None and requeued.status == "queued" and requeued.attempts == 1
    assert [job.id for job in await storage.jobs.unfinished()] == [a.id, b.id]


async def test_cancelling_is_for_queued_jobs_of_their_owner(storage: Storage) -> None:
    jobs = [await admit(storage, admission()) for _ in range(3)]
    assert all(jobs)
    assert await storage.jobs.cancel(jobs[0].id, owner=BO.key) is None  # type: ignore[union-attr]
    cancelled = await storage.jobs.cancel(jobs[0].id, owner=ANN.key)  # type: ignore[union-attr]
    assert cancelled is not None and (cancelled.status, cancelled.charged) == ("cancelled", 0)
    assert await storage.jobs.cancel(2**70, owner=None) is None  # an id no job can have
    rest = await storage.jobs.cancel_all(ANN.key)
    assert [job.id for job in rest] == [jobs[1].id, jobs[2].id]  # type: ignore[union-attr]
    assert await storage.jobs.cancel_all(ANN.key) == []


async def test_a_running_job_is_cancelled_only_when_asked_and_not_while_its_pictures_are_sent(
    storage: Storage,
) -> None:
    a, b = await admit(storage, admission()), await admit(storage, admission())
    assert a is not None and b is not None
    for job in (a, b):
        assert await storage.jobs.claim(job.id) is not None
    assert await storage.jobs.cancel(a.id, owner=ANN.key) is None  # queued only, unless asked
    stopped = await storage.jobs.cancel(a.id, owner=ANN.key, running=True)
    assert stopped is not None and (stopped.status, stopped.charged) == ("cancelled", 0)
    assert not await storage.jobs.delivering(a.id, stopped.attempts)  # its pictures can no longer go out
    assert not await storage.jobs.finish(a.id, delivered=1, charged=1)
    assert await storage.jobs.delivering(b.id, 1)
    assert await storage.jobs.cancel(b.id, owner=ANN.key, running=True) is None  # being sent


async def test_a_route_can_be_replaced(storage: Storage) -> None:
    job = await admit(storage, admission())
    assert job is not None
    assert await storage.jobs.update_route(job.id, {"chat_id": 1, "status_id": 9})
    assert (await storage.jobs.get(job.id)).route == {"chat_id": 1, "status_id": 9}  # type: ignore[union-attr]
    assert not await storage.jobs.update_route(job.id + 1, {})


async def test_stats_cover_a_day_and_optionally_one_chat(storage: Storage) -> None:
    a = await admit(storage, admission(n=2))
    await admit(storage, admission(BO, DM))
    assert a is not None and await storage.jobs.claim(a.id) is not None
    await storage.jobs.fail(a.id, "backend_timeout", refund=False)
    stats = await storage.jobs.stats(DAY)
    assert stats.jobs == {"failed": 1, "queued": 1} and stats.images_charged == 3
    assert stats.failures == [("backend_timeout", 1)] and stats.busiest == [(ANN.key, 2), (BO.key, 1)]
    assert (await storage.jobs.stats(DAY, chat=DM.key)).busiest == [(BO.key, 1)]


async def test_limit_overrides_and_usage_resets(storage: Storage) -> None:
    await storage.quotas.set_user_limits(ANN.key, {"daily_images": 1, "max_pending": 3})
    await storage.quotas.set_chat_limit(GROUP.key, 10)
    state = await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)
    assert (state.daily_images, state.max_pending, state.chat_daily_images) == (1, 3, 10)
    assert state.daily_override and state.chat_override
    assert await admit(storage, admission(n=1)) is not None and await admit(storage, admission(n=1)) is None
    assert await storage.quotas.reset_usage("user", ANN.key, DAY) == 1
    assert await admit(storage, admission(n=1)) is not None
    await storage.quotas.set_user_limits(ANN.key, {"daily_images": None})
    assert (await storage.quotas.state(ANN.key, GROUP.key, LIMITS, DAY, NOW)).daily_images == 5


async def test_the_rate_window_says_when_the_next_request_fits(storage: Storage) -> None:
    for _ in range(3):
        await storage.jobs.admit(admission(), LIMITS, DAY, NOW - 50)
    assert await storage.quotas.rate_wait(ANN.key, 3, NOW) == pytest.approx(10.0)
    assert await storage.quotas.rate_wait(ANN.key, 4, NOW) == 0.0


async def test_people_names_and_language_choices(storage: Storage) -> None:
    await storage.people.touch_user(ANN)
    await storage.people.touch_user(UserRef("telegram", "1", "zh", None))  # a missing name keeps the known one
    await storage.people.touch_chat(GROUP)
    await storage.people.set_language(BO, "zh")
    assert await storage.people.language_choices() == {BO.key: "zh"}
    assert await storage.people.display_names([ANN.key, BO.key, "telegram:3"]) == {ANN.key: "Ann", BO.key: "Bo"}
    await storage.people.set_language(BO, None)
    assert await storage.people.language_choices() == {}


async def test_allowed_channels_keep_their_order(storage: Storage, clock: Clock) -> None:
    for channel in ("20", "10", "20"):
        clock.now += 1
        await storage.channels.allow("discord:1", channel)
    assert await storage.channels.allowed("discord:1") == ["20", "10"]
    await storage.channels.remove("discord:1", "20")
    assert await storage.channels.allowed("discord:1") == ["10"]
    await storage.channels.clear("discord:1")
    assert await storage.channels.allowed("discord:1") == []


async def test_the_inbox_holds_events_until_done_and_hands_back_the_rest(storage: Storage) -> None:
    assert await storage.inbox.receive("telegram", 1, '{"a": 1}', NOW)
    assert not await storage.inbox.receive("telegram", 1, "{}", NOW)
    assert await storage.inbox.receive("telegram", 2, "{}", NOW - 100)
    await storage.inbox.done("telegram", 1, NOW)
    assert await storage.inbox.unhandled("telegram") == 1
    dropped, held = await storage.inbox.take_over("telegram", now=NOW, since=NOW - 50, max_attempts=3)
    assert dropped == [2] and held == []  # too old
    await storage.inbox.receive("telegram", 3, "{}", NOW)
    for attempt in range(3):
        dropped, held = await storage.inbox.take_over("telegram", now=NOW, since=NOW - 50, max_attempts=3)
        assert dropped == [] and [e.event_id for e in held] == [3], attempt
    assert await storage.inbox.take_over("telegram", now=NOW, since=NOW - 50, max_attempts=3) == ([3], [])
    await storage.inbox.forget_handled_before(NOW + 1)
    assert await storage.inbox.receive("telegram", 1, "{}", NOW)  # forgotten: new again


async def test_the_inbox_hands_back_only_events_nobody_holds(storage: Storage) -> None:
    """Several processes: an event is its receiver's while the receiver renews its hold; a take-over passes
    over it, then takes it (held by the taker now) once the hold has run out."""
    await storage.inbox.receive("telegram", 1, "{}", NOW, worker="a", until=NOW + 30)
    await storage.inbox.receive("telegram", 2, "{}", NOW, worker="b", until=NOW + 30)
    take = {"since": NOW - 1000, "max_attempts": 3, "worker": "c"}
    assert await storage.inbox.take_over("telegram", now=NOW + 10, until=NOW + 40, **take) == ([], [])
    await storage.inbox.renew("a", NOW + 60)  # a lives on; b died
    _, held = await storage.inbox.take_over("telegram", now=NOW + 31, until=NOW + 61, **take)
    assert [e.event_id for e in held] == [2]
    _, held = await storage.inbox.take_over("telegram", now=NOW + 50, until=NOW + 80, **take)
    assert held == []  # 2 is c's now, 1 still a's


async def test_a_kept_picture_lives_exactly_as_long_as_its_job(storage: Storage) -> None:
    """Admitted with the job in one step (a refused admission keeps nothing), read while the job is unfinished,
    gone the moment it ends, whichever way it ends."""
    picture = bytes(range(256)) * 40
    endings = ("finish", "fail", "cancel")
    jobs = []
    for i, _ending in enumerate(endings):
        a = dataclasses.replace(admission(exempt=True, origin=f"o{i}"), picture=picture)
        job = await admit(storage, a)
        assert job is not None and await storage.jobs.picture(job.id) == picture
        jobs.append(job)
    refused = await admit(storage, dataclasses.replace(admission(BO, DM, n=9), picture=b"never kept"))
    assert refused is None
    plain = await admit(storage, admission(BO, DM))
    assert plain is not None and await storage.jobs.picture(plain.id) is None

    finished, failed, cancelled = jobs
    assert await storage.jobs.claim(finished.id) is not None and await storage.jobs.claim(failed.id) is not None
    await storage.jobs.finish(finished.id, delivered=1, charged=1)
    await storage.jobs.fail(failed.id, "backend_unavailable", refund=True)
    await storage.jobs.cancel(cancelled.id, owner=None)
    assert [await storage.jobs.picture(job.id) for job in jobs] == [None, None, None]
    rows = await storage.fetchall("SELECT count(*) AS n FROM job_pictures")
    assert int(rows[0]["n"]) == 0  # the refused admission left nothing behind either


async def test_an_upscale_is_charged_its_cost_not_its_pictures(storage: Storage) -> None:
    job = await admit(storage, dataclasses.replace(admission(n=1), cost=3))
    free = await admit(storage, dataclasses.replace(admission(n=1, origin="free"), cost=0))
    assert job is not None and (job.images, job.charged) == (3, 3)
    assert free is not None and free.charged == 0
    over = await admit(storage, dataclasses.replace(admission(n=1, origin="over"), cost=3))  # 3 of 5 spent
    assert over is None


async def test_the_block_list_and_its_refusals(storage: Storage) -> None:
    moderation = storage.moderation
    word, added = await moderation.add_rule("word", "kill", "telegram:1")
    again, added_again = await moderation.add_rule("word", "kill", "telegram:2")
    regex, _ = await moderation.add_rule("regex", r"gore\w*", "cli")
    assert added and not added_again and again == word
    assert [r.pattern for r in await moderation.rules()] == ["kill", r"gore\w*"]
    await moderation.record_refusal("telegram:1", "telegram:-100", word, "prompt", DAY)
    await moderation.record_refusal("telegram:2", "telegram:2", regex, "negative", DAY)
    await moderation.record_refusal("telegram:2", "telegram:2", regex, "prompt", "2027-01-14")
    assert await moderation.remove_rule(word.id) == word and await moderation.remove_rule(word.id) is None
    newest, older, oldest = await moderation.refusals(10)
    assert (newest.field, newest.rule_id) == ("prompt", regex.id)
    assert (oldest.user, oldest.pattern, oldest.rule_id) == ("telegram:1", "kill", None)  # the rule was removed
    assert older.field == "negative"
    assert await moderation.refused_on(DAY) == 2 and await moderation.refused_on(DAY, "telegram:2") == 1
    assert await moderation.prune_refusals_before(DAY) == 1 and len(await moderation.refusals(10)) == 2
