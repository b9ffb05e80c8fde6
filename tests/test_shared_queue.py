"""The queue several processes share (PostgreSQL): two real Cores on one database, as two processes would be.

Each Core has its own backend and sink, so what each "process" generated and delivered can be told apart.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.errors import SdbotError
from bot.jobs.shared import SharedScheduler
from tests.pipeline_support import GatedBackend, RecordingSink, open_core
from tests.postgres_support import PostgresServer

CHAT = ChatRef("telegram", "-100", True)
LIMITS = {"daily_images": 0, "rate_per_minute": 0, "max_pending": 10}


def user(n: int) -> UserRef:
    return UserRef("telegram", str(n))


@asynccontextmanager
async def processes(
    dsn: str, count: int, **settings: object
) -> AsyncIterator[list[tuple[Core, RecordingSink, GatedBackend]]]:
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            backend = GatedBackend(hold=True)
            core, sink = await stack.enter_async_context(
                open_core(
                    dsn,
                    backend,  # type: ignore[arg-type]
                    platforms=("telegram",),
                    **{**LIMITS, **settings},
                )
            )
            started.append((core, sink, backend))
        yield started


async def settle(seconds: float = 0.5) -> None:
    await asyncio.sleep(seconds)


async def test_two_processes_share_one_queue_under_one_cap_and_deliver_each_job_once(
    postgres_server: PostgresServer,
) -> None:
    """SDBOT_BACKEND_CONCURRENCY counts across processes; every job runs in exactly one of them."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, backend_concurrency=2) as ((a, sink_a, gen_a), (b, sink_b, gen_b)):
        assert isinstance(a.scheduler, SharedScheduler) and isinstance(b.scheduler, SharedScheduler)
        jobs = [await a.submit(user(n), CHAT, f"/draw cat {n}", {}) for n in range(6)]
        await settle()
        assert len(gen_a.started) + len(gen_b.started) == 2  # the cap, whichever processes claimed
        gen_a.release()
        gen_b.release()
        await a.wait_idle()
        await b.wait_idle()
        delivered = [job_id for job_id, _ in sink_a.of("delivered") + sink_b.of("delivered")]
        assert sorted(delivered) == sorted(job.id for job in jobs)  # each once
        assert len(gen_a.started) + len(gen_b.started) == 6
        for job in jobs:
            done = await a.get_job(job.id)
            assert done is not None and (done.status, done.charged, done.attempts) == ("done", 1, 1)


async def test_the_shared_queue_is_round_robin_between_users(postgres_server: PostgresServer) -> None:
    """Alice queues three jobs before Bob's and Carol's one each: they start alice, bob, carol, alice, alice."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 1, backend_concurrency=1) as [(core, sink, gen)]:
        blocker = await core.submit(user(9), CHAT, "/draw first", {})
        await gen.wait_started(1)
        alice = [await core.submit(user(1), CHAT, f"/draw alice {n}", {}) for n in range(3)]
        bob = await core.submit(user(2), CHAT, "/draw bob", {})
        carol = await core.submit(user(3), CHAT, "/draw carol", {})
        gen.release()
        await core.wait_idle()
        order = [job_id for job_id, _ in sink.of("delivered")]
        assert order == [blocker.id, alice[0].id, bob.id, carol.id, alice[1].id, alice[2].id]


async def test_places_come_from_the_database(postgres_server: PostgresServer) -> None:
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, backend_concurrency=1) as ((a, _, gen_a), (b, sink_b, gen_b)):
        await a.submit(user(9), CHAT, "/draw first", {})
        await settle()
        waiting = [await b.submit(user(n), CHAT, f"/draw cat {n}", {}) for n in range(3)]
        await sink_b.wait_until(lambda: all(sink_b.events(job.id) for job in waiting))
        told = {job.id: sink_b.events(job.id)[0].position for job in waiting}
        assert told == {waiting[0].id: 1, waiting[1].id: 2, waiting[2].id: 3}
        gen_a.release()
        gen_b.release()


async def test_a_process_paused_past_its_lease_neither_delivers_nor_finishes_the_job(
    postgres_server: PostgresServer,
) -> None:
    """A stops renewing (as if paused) while generating; B takes the job over once the lease ran out and
    delivers it; A, resumed, finds itself fenced: its pictures are not sent and its outcome is not recorded."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, backend_concurrency=1, job_lease=1.0) as ((a, sink_a, gen_a), (b, sink_b, gen_b)):
        assert isinstance(b.scheduler, SharedScheduler)
        await b.scheduler.stop()  # B claims nothing until A holds the job
        job = await a.submit(user(1), CHAT, "/draw kite", {})
        await gen_a.wait_started(1)
        assert isinstance(a.scheduler, SharedScheduler)
        paused = a.scheduler._loop_task  # its heartbeats stop; the generation goes on, as after a SIGSTOP
        assert paused is not None
        paused.cancel()
        b.scheduler.start()
        await gen_b.wait_started(1)  # taken over after the lease ran out
        gen_b.release()
        await sink_b.wait_for("delivered", 1)
        gen_a.release()  # A resumes: its generation ends, and it tries to deliver
        await settle(1.0)
        assert sink_a.of("delivered") == [] and sink_a.of("failed") == []
        done = await b.get_job(job.id)
        assert done is not None and (done.status, done.attempts, done.charged) == ("done", 2, 1)


async def test_a_job_whose_process_died_delivering_is_drawn_again_by_another(
    postgres_server: PostgresServer,
) -> None:
    """Dead while uploading (its lease runs out with delivering_at set): another process draws it again with
    its seed and delivers it, as one process does with its own jobs at start, charged once."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, backend_concurrency=1, job_lease=1.0) as ((a, sink_a, gen_a), (b, sink_b, gen_b)):
        assert isinstance(a.scheduler, SharedScheduler) and isinstance(b.scheduler, SharedScheduler)
        await b.scheduler.stop()
        sink_a.hold_delivery = True
        gen_a.release()
        gen_b.release()
        job = await a.submit(user(1), CHAT, "/draw kite", {})
        await sink_a.wait_for("deliver_started", 1)
        a.scheduler._loop_task.cancel()  # type: ignore[union-attr]  # dies mid-upload: no more heartbeats
        b.scheduler.start()
        await sink_b.wait_for("delivered", 1)
        assert [request.seed for request in gen_b.started] == [job.seed]
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT status, charged, attempts FROM jobs WHERE id = $1", job.id)
        finally:
            await conn.close()
        assert (row["status"], row["charged"], row["attempts"]) == ("done", 1, 2)
        sink_a.release_delivery()


async def test_a_language_chosen_through_one_process_holds_at_once_in_the_other(
    postgres_server: PostgresServer,
) -> None:
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2) as ((a, _, _), (b, _, _)):
        someone = UserRef("telegram", "7", language_code="en")
        assert b.language_for(someone) == "en"
        await a.handle_command(someone, ChatRef("telegram", "7", False), "lang", "zh")
        async with asyncio.timeout(5):
            while b.language_for(someone) != "zh":  # noqa: ASYNC110 (another process's notification)
                await asyncio.sleep(0.02)


async def test_a_flood_limit_is_shared_by_every_process(postgres_server: PostgresServer) -> None:
    """10 requests a second with a burst of 5, asked 25 times by two processes at once: the first 5 go at once,
    the other 20 one every 0.1 s whichever process asks, so the last leaves after 2 s; a second key is apart."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2) as ((a, _, _), (b, _, _)):
        loop = asyncio.get_running_loop()
        began = loop.time()
        left: list[float] = []

        async def send(core: Core) -> None:
            await core.pace("telegram", 10, 5)
            left.append(loop.time() - began)

        await asyncio.gather(*(send(a if n % 2 else b) for n in range(25)))
        other = loop.time()
        await a.pace("telegram:-100", 10, 5)
    left.sort()
    assert left[4] < 0.5 and 1.9 <= left[-1] < 3.0, left
    assert all(later - earlier > 0.05 for earlier, later in itertools.pairwise(left[5:])), left
    assert loop.time() - other < 0.5  # another chat's limit has its own slots


async def test_a_ban_and_a_limit_set_through_one_process_hold_at_once_in_the_other(
    postgres_server: PostgresServer,
) -> None:
    """An admin's /admin ban and /admin quota through A; the next /draw through B is refused by them (limits
    and bans are read from the database at each admission, never cached)."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, admins=frozenset({"telegram:1"})) as ((a, _, _), (b, _, gen_b)):
        admin, chat = UserRef("telegram", "1"), ChatRef("telegram", "1", False)
        gen_b.release()
        await a.handle_command(admin, chat, "admin", "ban telegram:2")
        with pytest.raises(SdbotError) as banned:
            await b.submit(user(2), CHAT, "/draw a kite", {})
        await a.handle_command(admin, chat, "admin", "unban telegram:2")
        await a.handle_command(admin, chat, "admin", "quota telegram:2 1")
        await b.submit(user(2), CHAT, "/draw a kite", {})
        with pytest.raises(SdbotError) as limited:
            await b.submit(user(2), CHAT, "/draw another kite", {})
    assert banned.value.code == "banned" and limited.value.code == "quota_daily"


async def test_cancel_through_one_process_stops_the_job_drawn_by_another(postgres_server: PostgresServer) -> None:
    """/cancel 12 reaches whichever process draws job 12: it is cancelled and refunded in the database, and the
    process drawing it stops at once (a NOTIFY), not at the end of the generation."""
    dsn = await postgres_server.new_database()
    async with processes(dsn, 2, backend_concurrency=1) as ((a, sink_a, gen_a), (b, sink_b, gen_b)):
        job = await a.submit(user(1), CHAT, "/draw cat", {})
        await settle()
        drawer = a if gen_a.started else b
        other = b if drawer is a else a
        assert job.id in drawer._generating
        assert [j.id for j in await other.cancel(user(1), job.id)] == [job.id]
        async with asyncio.timeout(5):
            while job.id in drawer._generating:  # noqa: ASYNC110 - the core keeps it in a plain dict
                await asyncio.sleep(0.02)
        gen_a.release()
        gen_b.release()
        await a.wait_idle()
        await b.wait_idle()
        ended = await a.get_job(job.id)
        assert ended is not None and (ended.status, ended.charged) == ("cancelled", 0)
        assert sink_a.of("delivered") == [] and sink_b.of("delivered") == []
