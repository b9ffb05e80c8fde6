"""The outage breaker: repeated failures mark the image service down; users are refused at once and charged
nothing, waiting jobs fail at once and are refunded, and a trial after the cooldown brings it back by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.backends.a1111 import A1111Backend
from bot.backends.http import RetryPolicy
from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.errors import BackendError, DrawError, SdbotError
from bot.jobs.breaker import Breaker, outage
from bot.messages.i18n import render_error, t
from tests.fakes.a1111 import FakeA1111
from tests.pipeline_support import WAIT_LIMIT, GatedBackend, RecordingSink, make_settings, usage_matches_jobs
from tests.telegram_support import USER, ZH_USER, fake_telegram, running, tg_settings

ANN = UserRef("telegram", "1", "en")
BO = UserRef("telegram", "2", "zh-hans")
CY = UserRef("telegram", "3", "en")
DM = ChatRef("telegram", "1", False)
SMALL = "--size 768x768"
DOWN = BackendError("backend_unavailable", provider="test")
COOLDOWN = 30.0


class Clock:
    """Monotonic seconds the test moves by hand: cooldowns pass without waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def used(core: Core, user: UserRef) -> int:
    return (await core.quotas.state(user.key)).used


async def job_count(core: Core) -> int:
    return (await core.storage.fetchone("SELECT count(*) FROM jobs"))[0]  # type: ignore[index]


@asynccontextmanager
async def breaker_core(
    db: Path, backend: Any, clock: Clock, **settings: Any
) -> AsyncIterator[tuple[Core, RecordingSink]]:
    options = {"breaker_failures": 2, "breaker_cooldown": COOLDOWN, "rate_per_minute": 0, "max_pending": 10}
    core = await Core.open(make_settings(db, **{**options, **settings}), backend, monotonic=clock)
    sink = RecordingSink()
    core.register_sink("telegram", sink)
    await core.start()
    try:
        yield core, sink
    finally:
        await core.close()


# The policy alone ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (BackendError("backend_unavailable", provider="qianfan", provider_code=336100), True),
        (BackendError("backend_timeout"), True),
        (BackendError("backend_bad_image", reason="bomb"), True),
        # one request too big for the GPU: counting it would let one user take the service down for all
        (BackendError("backend_unavailable", provider="a1111", provider_code="out_of_memory"), False),
        (BackendError("backend_rate_limited", retry_after=5.0), False),
        (BackendError("backend_auth_failed"), False),
        (BackendError("backend_quota_exhausted"), False),
        (BackendError("backend_invalid_request", user_fault=True), False),
        (BackendError("content_filtered"), False),
        (SdbotError("internal"), False),
    ],
)
def test_which_failures_count_as_an_outage(error: SdbotError, counts: bool) -> None:
    assert outage(error) is counts


async def test_a_streak_opens_it_an_answer_ends_the_streak_and_the_cooldown_leads_to_one_trial() -> None:
    clock = Clock()
    breaker = Breaker(3, 10.0, clock)
    for error in (DOWN, DOWN, BackendError("content_filtered"), DOWN, DOWN):  # the filter proves it is up
        assert breaker.record(error) is False
    assert breaker.record(SdbotError("internal")) is False  # says nothing about the service
    assert breaker.record(DrawError("picture_gone")) is False  # nor does a picture that could not be had
    assert (breaker.state, breaker.streak) == ("closed", 2)
    assert breaker.record(BackendError("backend_timeout")) is True
    assert (breaker.state, breaker.retry_in(), breaker.opened) == ("open", 10.0, 1)
    assert await breaker.admit() == "refuse"
    clock.now += 9.2
    error = breaker.error()
    assert (error.code, error.params) == ("backend_down", {"seconds": 1})  # whole seconds, rounded up
    assert render_error(error, "en") == t("en", "error.backend_down", seconds=1)

    clock.now += 1
    assert (breaker.state, breaker.retry_in()) == ("half_open", None)
    assert await breaker.admit() == "trial"
    second = asyncio.create_task(breaker.admit())  # waits for the trial instead of piling on
    await asyncio.sleep(0.01)
    assert not second.done()
    assert breaker.record(DOWN, trial=True) is True  # the trial failed: open again at once
    assert await asyncio.wait_for(second, WAIT_LIMIT) == "refuse"
    clock.now += 10
    assert await breaker.admit() == "trial"
    third = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0.01)
    assert breaker.record(None, trial=True) is False  # success: closed
    assert await asyncio.wait_for(third, WAIT_LIMIT) == "run"
    assert (breaker.state, breaker.opened) == ("closed", 2)


async def test_zero_failures_means_never() -> None:
    breaker = Breaker(0, 10.0)
    for _ in range(20):
        assert breaker.record(DOWN) is False
    assert breaker.state == "closed" and await breaker.admit() == "run"


# Through the core ----------------------------------------------------------------------------------------


async def test_an_outage_refuses_at_once_fails_the_queue_and_charges_nobody(tmp_path: Path) -> None:
    clock = Clock()
    backend = GatedBackend(hold=True)
    for prompt in ("first", "second"):
        backend.failures[prompt] = DOWN
    async with breaker_core(tmp_path / "db", backend, clock, backend_concurrency=1) as (core, sink):
        failing = [await core.submit(u, DM, f"/draw {p} {SMALL}", {}) for u, p in ((ANN, "first"), (BO, "second"))]
        waiting = [await core.submit(CY, DM, f"/draw queued {SMALL} --n 2", {}) for _ in range(2)]
        backend.release()
        await core.wait_idle()

        # The two failures opened it; the two waiting jobs never reached the service and were refunded.
        assert [r.prompt for r in backend.started] == ["first", "second"]
        assert sink.of("failed") == [
            *((job.id, ("backend_unavailable", True)) for job in failing),
            *((job.id, ("backend_down", True)) for job in waiting),
        ]
        for job in waiting:
            stored = await core.get_job(job.id)
            assert stored is not None and (stored.status, stored.error, stored.charged) == ("failed", "backend_down", 0)

        # New requests and Again: refused before anything is stored or charged, with when to retry.
        clock.now += 12.5
        before = await job_count(core)
        with pytest.raises(SdbotError) as refused:
            await core.submit(BO, DM, f"/draw a cat {SMALL}", {})
        assert (refused.value.code, refused.value.params) == ("backend_down", {"seconds": 18})
        assert render_error(refused.value, "zh") == t("zh", "error.backend_down", seconds=18)
        with pytest.raises(SdbotError) as refused:
            await core.again(failing[0].id, ANN, {})
        assert refused.value.code == "backend_down"
        assert await job_count(core) == before
        assert [await used(core, u) for u in (ANN, BO, CY)] == [0, 0, 0]
        assert await usage_matches_jobs(core.storage) == []

        # Cooldown over: requests are taken again; the service works, so the trial closes the circuit.
        clock.now += COOLDOWN
        trial = await core.submit(ANN, DM, f"/draw back {SMALL}", {})
        await core.wait_idle()
        assert sink.of("delivered")[-1][0] == trial.id and core.breaker.state == "closed"
        assert await used(core, ANN) == 1


async def test_jobs_starting_during_the_trial_wait_for_it_and_fail_with_it(tmp_path: Path) -> None:
    clock = Clock()
    backend = GatedBackend(hold=True)
    backend.failures["probe"] = DOWN
    async with breaker_core(tmp_path / "db", backend, clock, backend_concurrency=2, breaker_failures=1) as (core, sink):
        opening = await core.submit(ANN, DM, f"/draw probe {SMALL}", {})
        await backend.wait_started(1)
        backend.release(0)
        await sink.wait_for("failed", 1)
        assert core.breaker.state == "open"

        clock.now += COOLDOWN
        probe = await core.submit(ANN, DM, f"/draw probe {SMALL}", {})  # fails again
        other = await core.submit(BO, DM, f"/draw other {SMALL}", {})  # would work, but must wait
        await backend.wait_started(2)
        await asyncio.sleep(0.05)  # a free slot: the other job would have started by now if not held back
        assert [r.prompt for r in backend.started] == ["probe", "probe"]
        assert core.breaker.state == "half_open"
        backend.release(1)
        await core.wait_idle()

        assert [r.prompt for r in backend.started] == ["probe", "probe"]  # "other" never reached the service
        assert sink.of("failed") == [
            (opening.id, ("backend_unavailable", True)),
            (probe.id, ("backend_unavailable", True)),
            (other.id, ("backend_down", True)),
        ]
        assert core.breaker.state == "open" and await used(core, BO) == 0


async def test_a_successful_trial_lets_the_waiting_jobs_run(tmp_path: Path) -> None:
    clock = Clock()
    backend = GatedBackend(hold=True)
    backend.failures["broken"] = DOWN
    async with breaker_core(tmp_path / "db", backend, clock, backend_concurrency=2, breaker_failures=1) as (core, sink):
        await core.submit(ANN, DM, f"/draw broken {SMALL}", {})
        await backend.wait_started(1)
        backend.release(0)
        await sink.wait_for("failed", 1)
        clock.now += COOLDOWN
        trial = await core.submit(ANN, DM, f"/draw trial {SMALL}", {})
        waiting = await core.submit(BO, DM, f"/draw waiting {SMALL}", {})
        await backend.wait_started(2)
        backend.release(1)
        await backend.wait_started(3)  # only now: after the trial succeeded
        backend.release()
        await core.wait_idle()
        assert [r.prompt for r in backend.started] == ["broken", "trial", "waiting"]
        assert [job_id for job_id, _ in sink.of("delivered")] == [trial.id, waiting.id]
        assert core.breaker.state == "closed"


# End to end: the real A1111 backend (httpx) and the fake A1111 going away and coming back ---------------


async def test_a1111_outage_and_recovery_through_the_core(tmp_path: Path) -> None:
    clock = Clock()
    async with FakeA1111() as fake:
        backend = A1111Backend(fake.url, timeout=5.0, connect_timeout=1.0, retry=RetryPolicy(retries=0))
        async with backend, breaker_core(tmp_path / "db", backend, clock, backend_concurrency=1) as (core, sink):
            ok = await core.submit(ANN, DM, f"/draw before {SMALL}", {})
            await core.wait_idle()
            assert sink.of("delivered") == [(ok.id, ok.seed)]

            await fake.stop()  # the service goes away: connections are refused
            down = [await core.submit(u, DM, f"/draw during {SMALL}", {}) for u in (ANN, BO, CY)]
            await core.wait_idle()
            assert [detail for _, detail in sink.of("failed")] == [
                ("backend_unavailable", True),
                ("backend_unavailable", True),
                ("backend_down", True),  # the third never tried: failed at once
            ]
            assert [job_id for job_id, _ in sink.of("failed")] == [job.id for job in down]
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(SdbotError) as refused:
                await core.submit(BO, DM, f"/draw still {SMALL}", {})
            assert refused.value.code == "backend_down" and loop.time() - started < 0.5  # told at once
            assert [await used(core, u) for u in (ANN, BO, CY)] == [1, 0, 0]

            await fake.start()  # the same address answers again
            served = len(fake.generate_calls)
            clock.now += COOLDOWN
            back = await core.submit(BO, DM, f"/draw after {SMALL}", {})
            await core.wait_idle()
            after = await core.submit(CY, DM, f"/draw later {SMALL}", {})
            await core.wait_idle()
            assert [j for j, _ in sink.of("delivered")] == [ok.id, back.id, after.id]
            assert len(fake.generate_calls) == served + 2 and core.breaker.state == "closed"
            assert [await used(core, u) for u in (ANN, BO, CY)] == [1, 1, 1]
            assert await usage_matches_jobs(core.storage) == []


# Users see it in their language, at once -----------------------------------------------------------------


async def test_telegram_users_are_told_at_once_in_their_language(tmp_path: Path) -> None:
    clock = Clock()
    backend = GatedBackend()
    backend.failures["boom"] = DOWN
    async with fake_telegram() as tg:
        settings = tg_settings(tmp_path, tg, breaker_failures=1, breaker_cooldown=COOLDOWN)
        async with running(settings, backend) as bot:
            bot.core.breaker.clock = clock
            tg.send_text(USER, "/draw boom")
            await tg.wait_for(
                "sendMessage", lambda c: c.params["text"].startswith(t("en", "error.backend_unavailable"))
            )
            await bot.core.wait_idle()
            tg.send_text(ZH_USER, "/draw 一只猫", language_code="zh-hans")
            refusal = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == ZH_USER)
            quota = await bot.core.quotas.state(f"telegram:{ZH_USER}")
    assert refusal.params["text"] == t("zh", "error.backend_down", seconds=int(COOLDOWN))
    assert quota.used == 0 and quota.pending == 0
    assert [r.prompt for r in backend.started] == ["boom"]
