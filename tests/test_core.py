"""The facade: submit -> queue -> generate -> deliver, failures and refunds, again, cancel, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.commands import describe_event, describe_failure
from bot.core import Core, JobEvent
from bot.draw.capabilities import SEED, Capabilities
from bot.errors import BackendError, DrawError, SdbotError
from bot.jobs.job import MAX_ATTEMPTS
from bot.messages.i18n import render_error
from bot.quotas.rules import QuotaError
from tests.pipeline_support import GatedBackend, RecordingSink, make_settings, open_core, usage_matches_jobs

ANN = UserRef("telegram", "1", "en", "Ann")
BO = UserRef("telegram", "2", "zh-hans", "Bo")
ADMIN = UserRef("telegram", "99", "en", "Root")
DM = ChatRef("telegram", "1", False)
GROUP = ChatRef("telegram", "-100", True)
SMALL = "--size 768x768"


async def used(core: Core, user: UserRef) -> int:
    return (await core.quotas.state(user.key)).used


async def test_a_job_is_generated_with_its_seed_delivered_and_charged(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db") as (core, sink):
        job = await core.submit(ANN, GROUP, f"/draw a red fox --n 2 {SMALL}", {"chat_id": -100, "reply_to": 5})
        assert (job.status, job.images, job.charged, job.lang, job.route) == (
            "queued",
            2,
            2,
            "en",
            {"chat_id": -100, "reply_to": 5},
        )  # fmt: skip
        await core.wait_idle()
        done = await core.get_job(job.id)
        assert done is not None
        assert (done.status, done.delivered, done.charged, done.attempts) == ("done", 2, 2, 1)
        generation = sink.generations[job.id]
        assert generation.request.seed == job.seed and generation.request.prompt == "a red fox"
        assert len(generation.images) == 2
        assert await used(core, ANN) == 2
        assert (await core.quotas.state(ANN.key, GROUP.key)).chat_used == 2
        assert await usage_matches_jobs(core.storage) == []


async def test_positions_and_progress_reach_the_sink_and_stop_before_the_result(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with open_core(tmp_path / "db", backend, backend_concurrency=1) as (core, sink):
        first = await core.submit(ANN, DM, f"/draw one --n 2 {SMALL}", {})
        second = await core.submit(BO, DM, f"/draw two {SMALL}", {})
        third = await core.submit(UserRef("telegram", "3"), DM, f"/draw three {SMALL}", {})
        await backend.wait_started(1)
        assert (core.position(first.id), core.position(second.id), core.position(third.id)) == (None, 1, 2)
        await sink.wait_until(lambda: (sink.events(third.id) or [None])[-1] == JobEvent("queued", position=2))
        backend.release()
        await core.wait_idle()
        assert sink.events(third.id)[-1] == JobEvent("running", progress=1.0)
        assert JobEvent("queued", position=1) in sink.events(third.id)
        assert JobEvent("running", progress=1.0) in sink.events(first.id)
        for job in (first, second, third):  # nothing about a job after its result
            kinds = [kind for kind, job_id, _ in sink.calls if job_id == job.id]
            assert kinds[-1] == "delivered" and "progress" not in kinds[kinds.index("deliver_started") :]
    assert describe_event(JobEvent("queued", position=3), "en") == "#3 in the queue"
    assert describe_event(JobEvent("running", progress=0.42), "zh") == "正在绘制… 42%"


async def test_a_delivering_job_gives_its_slot_to_the_next_while_deliveries_stay_bounded(tmp_path: Path) -> None:
    """Delivery needs no image service: the next job generates meanwhile. A job whose pictures are ready keeps
    its slot until it has a place to deliver in, so pictures waiting for an upload stay as few as the slots."""
    backend = GatedBackend(hold=True)
    async with open_core(tmp_path / "db", backend, backend_concurrency=1, rate_per_minute=0) as (core, sink):
        sink.hold_delivery = True
        one = await core.submit(ANN, DM, f"/draw one {SMALL}", {})
        two = await core.submit(BO, DM, f"/draw two {SMALL}", {})
        three = await core.submit(UserRef("telegram", "3"), DM, f"/draw three {SMALL}", {})
        await backend.wait_started(1)
        backend.release(0)
        await sink.wait_for("deliver_started", 1)
        await backend.wait_started(2)  # one is still delivering
        assert core.scheduler.running == frozenset({one.id, two.id}) and core.position(three.id) == 1
        backend.release(1)
        await sink.wait_until(lambda: JobEvent("running", progress=1.0) in sink.events(two.id))
        await asyncio.sleep(0.05)  # time for anything that would wrongly start
        assert [r.prompt for r in backend.started] == ["one", "two"]
        assert sink.of("deliver_started") == [(one.id, one.seed)]
        sink.release_delivery()
        backend.release()
        await core.wait_idle()
        assert [job_id for job_id, _ in sink.of("delivered")] == [one.id, two.id, three.id]
        assert await usage_matches_jobs(core.storage) == []


async def test_a_job_waiting_for_a_place_to_deliver_in_is_rerun_after_a_stop(tmp_path: Path) -> None:
    db = tmp_path / "db"
    settings = {"backend_concurrency": 1, "rate_per_minute": 0}
    async with open_core(db, GatedBackend(), **settings) as (core, sink):
        sink.hold_delivery = True
        delivering = await core.submit(ANN, DM, f"/draw one {SMALL}", {})
        waiting = await core.submit(BO, DM, f"/draw two {SMALL}", {})
        await sink.wait_until(lambda: JobEvent("running", progress=1.0) in sink.events(waiting.id))
        assert sink.of("deliver_started") == [(delivering.id, delivering.seed)]
        # Stopping now leaves one job delivering and one with its pictures, waiting for a place to deliver.
    async with open_core(db, GatedBackend(), **settings) as (core, sink):
        await core.wait_idle()
        for job in (delivering, waiting):
            done = await core.get_job(job.id)
            assert done is not None and (done.status, done.attempts, done.charged) == ("done", 2, 1), done
            assert sink.generations[job.id].request.seed == job.seed
        assert await used(core, ANN) == 1 and await used(core, BO) == 1
        assert await usage_matches_jobs(core.storage) == []


async def test_invalid_requests_charge_nothing(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db") as (core, _sink):
        with pytest.raises(DrawError) as caught:
            await core.submit(ANN, DM, "/draw a cat --style Vaporwave", {})
        assert caught.value.code == "unknown_style"
        with pytest.raises(DrawError):  # Discord's typed options are validated again by the core
            await core.submit(ANN, DM, "a cat", {}, typed={"n": 9})
        with pytest.raises(DrawError) as caught:  # given twice, typed and in the text
            await core.submit(ANN, DM, "a cat --n 2", {}, typed={"n": 1})
        assert caught.value.code == "duplicate_option"
        job = await core.submit(ANN, DM, "a cat", {}, typed={"style": "Anime", "size": "768x768", "n": None})
        assert job.request.style == "Anime"
        await core.wait_idle()
        assert (await core.storage.fetchone("SELECT count(*) FROM jobs"))[0] == 1


async def test_a_refused_request_leaves_no_job(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", GatedBackend(hold=True), daily_images=2) as (core, _sink):
        await core.submit(ANN, DM, f"/draw a cat --n 2 {SMALL}", {})
        with pytest.raises(QuotaError) as caught:
            await core.submit(ANN, DM, f"/draw a dog {SMALL}", {})
        assert caught.value.code == "quota_daily"
        assert "2 of your 2" in render_error(caught.value, core.language_for(ANN))
        assert (await core.storage.fetchone("SELECT count(*) FROM jobs"))[0] == 1


async def test_people_and_groups_are_recorded_with_the_admission_even_when_it_is_refused(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", GatedBackend(hold=True), daily_images=1) as (core, _sink):
        await core.submit(ANN, GROUP, f"/draw a cat {SMALL}", {})
        with pytest.raises(QuotaError):
            await core.submit(BO, GROUP, f"/draw a cat --n 2 {SMALL}", {})
        users = await core.storage.fetchall("SELECT key, display_name, platform_language FROM users ORDER BY key")
        assert [tuple(r) for r in users] == [("telegram:1", "Ann", "en"), ("telegram:2", "Bo", "zh-hans")]
        chat = await core.storage.fetchone("SELECT key, is_group FROM chats")
        assert tuple(chat) == ("telegram:-100", 1)
        renamed = dataclasses.replace(BO, display_name="Bo2")
        with pytest.raises(QuotaError):
            await core.submit(renamed, DM, f"/draw a cat --n 2 {SMALL}", {})
        row = await core.storage.fetchone("SELECT display_name FROM users WHERE key = 'telegram:2'")
        assert row[0] == "Bo2"
        assert (await core.storage.fetchone("SELECT count(*) FROM chats"))[0] == 1  # a private chat has no row


@pytest.mark.parametrize(
    ("failure", "refund_filtered", "code", "refunded"),
    [
        (BackendError("backend_unavailable", provider="test"), True, "backend_unavailable", True),
        (BackendError("backend_timeout"), True, "backend_timeout", True),
        # even a request the provider blames on the user is not charged: it passed our validation
        (BackendError("backend_invalid_request", user_fault=True), True, "backend_invalid_request", True),
        (BackendError("content_filtered"), True, "content_filtered", True),
        (BackendError("content_filtered"), False, "content_filtered", False),
        (RuntimeError("a bug in a backend"), True, "internal", True),
    ],
)
async def test_failed_generations_are_reported_and_refunded_except_by_filter_policy(
    tmp_path: Path, failure: BaseException, refund_filtered: bool, code: str, refunded: bool
) -> None:
    backend = GatedBackend()
    backend.failures["doomed"] = failure
    async with open_core(tmp_path / "db", backend, refund_filtered=refund_filtered) as (core, sink):
        job = await core.submit(ANN, DM, f"/draw doomed --n 3 {SMALL}", {})
        await core.wait_idle()
        assert sink.of("failed") == [(job.id, (code, refunded))]
        failed = await core.get_job(job.id)
        assert failed is not None and (failed.status, failed.error) == ("failed", code)
        assert await used(core, ANN) == (0 if refunded else 3)
        assert await usage_matches_jobs(core.storage) == []
    error = SdbotError(code)
    text = describe_failure(error, refunded, "en")
    assert text.startswith(render_error(error, "en"))
    assert ("count against your daily quota" in text) is not refunded


async def test_filtered_images_are_refunded_when_so_configured(tmp_path: Path) -> None:
    for refund, expected in ((True, 2), (False, 3)):
        async with open_core(tmp_path / f"db{refund}", GatedBackend(filtered=1), refund_filtered=refund) as (core, _):
            job = await core.submit(ANN, DM, f"/draw a cat --n 3 {SMALL}", {})
            await core.wait_idle()
            done = await core.get_job(job.id)
            assert done is not None and (done.status, done.delivered, done.charged) == ("done", 2, expected)
            assert await used(core, ANN) == expected


async def test_undeliverable_results_are_refunded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with open_core(tmp_path / "db", rate_per_minute=0) as (core, sink):
        gone = await core.submit(ANN, DM, f"/draw a cat {SMALL}", {"gone": True})
        broken = await core.submit(BO, DM, f"/draw a dog {SMALL}", {"broken": True})
        await core.wait_idle()
        assert (await core.get_job(gone.id)).error == "delivery_gone"  # type: ignore[union-attr]
        assert (await core.get_job(broken.id)).error == "delivery_failed"  # type: ignore[union-attr]
        assert sink.of("failed") == [(broken.id, ("delivery_failed", True))]  # nobody to tell about `gone`
        assert await used(core, ANN) == 0 and await used(core, BO) == 0
    assert "platform API exploded" in caplog.text  # the unexpected one is logged with its cause


async def test_again_reruns_the_owners_request_with_a_new_seed(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", rate_per_minute=0) as (core, sink):
        original = await core.submit(ANN, GROUP, f"/draw a castle --seed 7 --style Anime {SMALL}", {"m": 1})
        await core.wait_idle()
        rerun = await core.again(original.id, ANN, {"m": 2})
        assert (rerun.parent_id, rerun.request.prompt, rerun.request.style, rerun.chat) == (
            original.id, "a castle", "Anime", GROUP.key,
        )  # fmt: skip
        assert rerun.request.seed is None and original.seed == 7
        await core.wait_idle()
        assert sink.generations[rerun.id].request.seed == rerun.seed
        assert await used(core, ANN) == 2
        with pytest.raises(SdbotError) as caught:
            await core.again(original.id, BO, {})
        assert caught.value.code == "job_not_found"
        with pytest.raises(SdbotError):
            await core.again(12345, ANN, {})


async def test_cancel_refunds_queued_jobs(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    settings = {"backend_concurrency": 1, "max_pending": 5, "rate_per_minute": 0, "admins": frozenset({ADMIN.key})}
    async with open_core(tmp_path / "db", backend, **settings) as (core, sink):
        running = await core.submit(ANN, DM, f"/draw one {SMALL}", {})
        queued = await core.submit(ANN, DM, f"/draw two --n 2 {SMALL}", {})
        more = [await core.submit(ANN, DM, f"/draw {w} {SMALL}", {}) for w in ("three", "four")]
        bos = await core.submit(BO, DM, f"/draw five {SMALL}", {})
        await backend.wait_started(1)
        assert running.id in core._generating  # cancelling it is the next test's

        with pytest.raises(SdbotError) as caught:
            await core.cancel(ANN, bos.id)
        assert caught.value.code == "job_not_found"  # someone else's job does not exist for you

        assert [j.id for j in await core.cancel(ANN, queued.id)] == [queued.id]
        assert core.position(queued.id) is None and await used(core, ANN) == 3
        assert sink.of("failed") == []  # the owner's /cancel reply tells them

        assert [j.id for j in await core.cancel(ADMIN, bos.id)] == [bos.id]
        await sink.wait_for("failed", 1)
        assert sink.of("failed") == [(bos.id, ("cancelled", True))]  # cancelled by an admin: owner told

        assert [j.id for j in await core.cancel(ANN)] == [j.id for j in more]
        with pytest.raises(SdbotError) as caught:
            await core.cancel(ANN)
        assert caught.value.code == "nothing_to_cancel"
        backend.release()
        await core.wait_idle()
        assert [r.prompt for r in backend.started] == ["one"]
        assert await used(core, ANN) == 1 and await used(core, BO) == 0
        assert await usage_matches_jobs(core.storage) == []


async def test_cancel_stops_a_job_being_drawn_but_not_one_being_sent(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with open_core(tmp_path / "db", backend, backend_concurrency=1, rate_per_minute=0) as (core, sink):
        drawing = await core.submit(ANN, DM, f"/draw one --n 2 {SMALL}", {})
        waiting = await core.submit(ANN, DM, f"/draw two {SMALL}", {})
        await backend.wait_started(1)
        assert [j.id for j in await core.cancel(ANN, drawing.id)] == [drawing.id]
        await backend.wait_started(2)  # its slot went to the next job at once
        assert await used(core, ANN) == 1
        sink.hold_delivery = True
        backend.release()
        await sink.wait_for("deliver_started", 1)
        with pytest.raises(SdbotError) as caught:  # its pictures are being sent
            await core.cancel(ANN, waiting.id)
        assert caught.value.code == "job_not_cancellable"
        assert "being sent" in render_error(caught.value, "en") and "正在发送" in render_error(caught.value, "zh")
        sink.release_delivery()
        await core.wait_idle()
        stopped, done = await core.get_job(drawing.id), await core.get_job(waiting.id)
        assert stopped is not None and (stopped.status, stopped.charged) == ("cancelled", 0)
        assert done is not None and (done.status, done.charged) == ("done", 1)
        assert drawing.id not in sink.generations and sink.of("failed") == []
        assert core._generating == {} and core._stopped == set()
        assert await usage_matches_jobs(core.storage) == []


async def test_submitting_needs_start_and_a_sink(tmp_path: Path) -> None:
    core = await Core.open(make_settings(tmp_path / "db"), GatedBackend())
    try:
        core.register_sink("telegram", RecordingSink())
        with pytest.raises(RuntimeError, match="start"):
            await core.submit(ANN, DM, "/draw a cat", {})
        await core.start()
        with pytest.raises(RuntimeError, match="discord"):
            await core.submit(UserRef("discord", "5"), ChatRef("discord", "7", True), "/draw a cat", {})
    finally:
        await core.close()


async def test_language_choice_beats_the_platform_which_beats_the_default(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", lang="zh") as (core, _):
        assert core.language_for(UserRef("telegram", "5")) == "zh"
        assert core.language_for(UserRef("telegram", "5", "en-GB")) == "en"
        assert "English" in await core.handle_command(BO, DM, "lang", "en")
        assert core.language_for(BO) == "en"
    async with open_core(tmp_path / "db", lang="zh") as (core, _):
        assert core.language_for(BO) == "en"  # remembered across restarts


# Recovery in one process (the SIGKILL version is tests/test_recovery.py) ------------------------------


async def test_jobs_left_running_or_queued_are_rerun_with_the_same_seed(tmp_path: Path) -> None:
    db = tmp_path / "db"
    backend = GatedBackend(hold=True)
    settings = {"backend_concurrency": 2, "rate_per_minute": 0, "max_pending": 5}
    async with open_core(db, backend, **settings) as (core, sink):
        delivering = await core.submit(ANN, DM, f"/draw delivering {SMALL}", {})
        generating = await core.submit(BO, DM, f"/draw generating {SMALL}", {})
        taking_over = await core.submit(ANN, DM, f"/draw taking over --n 2 {SMALL}", {})
        waiting = await core.submit(BO, DM, f"/draw waiting {SMALL}", {})
        sink.hold_delivery = True
        await backend.wait_started(2)
        backend.release(0)
        await sink.wait_for("deliver_started", 1)
        await backend.wait_started(3)  # the delivering job gave its slot to the next
        # Closing now leaves one job between generation and delivery, two generating and one queued.
    async with open_core(db, GatedBackend(), **settings) as (core, sink):
        await core.wait_idle()
        jobs = (delivering, generating, taking_over, waiting)
        for job in jobs:
            done = await core.get_job(job.id)
            assert done is not None and done.status == "done", done
            assert sink.generations[job.id].request.seed == job.seed
        assert [(await core.get_job(j.id)).attempts for j in jobs] == [2, 2, 2, 1]  # type: ignore[union-attr]
        assert await used(core, ANN) == 3 and await used(core, BO) == 2
        assert await usage_matches_jobs(core.storage) == []


async def test_unrecoverable_jobs_are_failed_refunded_and_reported(tmp_path: Path) -> None:
    db = tmp_path / "db"
    backend = GatedBackend(hold=True)
    settings = {"backend_concurrency": 1, "rate_per_minute": 0, "max_pending": 5, "job_max_age": 600}
    async with open_core(db, backend, **settings) as (core, _):
        crashing = await core.submit(ANN, GROUP, f"/draw crashing {SMALL}", {})
        old = await core.submit(ANN, GROUP, f"/draw old --n 2 {SMALL}", {})
        orphan = await core.submit(UserRef("discord", "3"), ChatRef("discord", "8", True), f"/draw orphan {SMALL}", {})
        fine = await core.submit(BO, DM, f"/draw fine {SMALL}", {})
        await backend.wait_started(1)
    store_core = await Core.open(make_settings(db), GatedBackend())
    await store_core.storage.execute("UPDATE jobs SET attempts = ? WHERE id = ?", (MAX_ATTEMPTS, crashing.id))
    await store_core.storage.execute("UPDATE jobs SET created_at = created_at - 3600 WHERE id = ?", (old.id,))
    await store_core.close()

    async with open_core(db, GatedBackend(), platforms=("telegram",), **settings) as (core, sink):
        await core.wait_idle()
        outcome = {j.id: (await core.get_job(j.id)) for j in (crashing, old, orphan, fine)}
        assert {i: (j.status, j.error, j.charged) for i, j in outcome.items()} == {  # type: ignore[union-attr]
            crashing.id: ("failed", "job_crashed", 0),
            old.id: ("failed", "job_expired", 0),
            orphan.id: ("failed", "delivery_gone", 0),
            fine.id: ("done", None, 1),
        }
        assert sorted(sink.of("failed")) == sorted(
            [(crashing.id, ("job_crashed", True)), (old.id, ("job_expired", True))]
        )
        assert await used(core, ANN) == 0 and await used(core, BO) == 1
        assert (await core.quotas.state(ANN.key, GROUP.key)).chat_used == 0
        assert await usage_matches_jobs(core.storage) == []
        message = describe_failure(SdbotError("job_expired", job=old.id), True, "zh")
        assert f"#{old.id}" in message


async def test_jobs_of_a_backend_that_cannot_serve_them_any_more_are_refunded(tmp_path: Path) -> None:
    db = tmp_path / "db"
    async with open_core(db, GatedBackend(hold=True), backend_concurrency=1, rate_per_minute=0) as (core, _):
        square = await core.submit(ANN, DM, "/draw a cat", {})
        small = await core.submit(ANN, DM, f"/draw a small cat {SMALL}", {})

    class SquareOnly(GatedBackend):
        name = "square"

        async def capabilities(self):  # type: ignore[no-untyped-def]
            return dataclasses.replace(await super().capabilities(), backend=self.name, sizes=("1024x1024",))

    async with open_core(db, SquareOnly()) as (core, sink):
        await core.wait_idle()
        assert sink.of("failed") == [(small.id, ("unsupported_size", True))]
        assert [job_id for job_id, _ in sink.of("delivered")] == [square.id]
        assert await used(core, ANN) == 1


class RatioBackend(GatedBackend):
    """A service without steps, sampler or cfg (Stability v2beta, Bedrock's SD3.5...)."""

    async def capabilities(self) -> Capabilities:
        return dataclasses.replace(
            SEED, backend=self.name, samplers=(), unsupported=frozenset({"steps", "sampler", "cfg"})
        )


async def test_edit_and_again_leave_out_what_the_service_does_not_take(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", RatioBackend(), rate_per_minute=0) as (core, _):
        job = await core.submit(ANN, DM, f"/draw a fox --seed 9 {SMALL}", {})
        await core.wait_idle()
        text = await core.edit_text(job.id, ANN, DM)
        assert text.startswith("/draw a fox") and "--seed 9" in text and "--size 768x768" in text
        assert "--steps" not in text and "--sampler" not in text and "--cfg" not in text
        again = await core.again(job.id, ANN, {})  # the stored defaults of unused options are not refused
        await core.wait_idle()
        assert (await core.get_job(again.id)).status == "done"  # type: ignore[union-attr]
