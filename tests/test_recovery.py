"""Nothing lost: a bot process killed (SIGKILL) with jobs queued, generating and delivering; the restarted one
delivers or refunds every accepted job, and the quota counters match exactly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.errors import BackendError, SdbotError
from bot.jobs.job import Job
from bot.messages.i18n import render_error
from tests.pipeline_support import (
    WAIT_LIMIT,
    GatedBackend,
    RecordingSink,
    Worker,
    make_settings,
    open_core,
    usage_matches_jobs,
)


def test_a_killed_bot_delivers_or_refunds_every_accepted_job_after_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "sdbot.db", tmp_path / "sink.jsonl"
    env = {
        "SDBOT_DB": str(db),
        "SDBOT_BACKEND_CONCURRENCY": "2",
        "SDBOT_DAILY_IMAGES": "5",
        "SDBOT_RATE_PER_MINUTE": "0",
        "SDBOT_MAX_PENDING": "5",
        "SDBOT_JOB_MAX_AGE": "3600",
    }
    crashed = Worker(env, "crash")
    try:
        lines = crashed.read_until("ready")
        os.kill(crashed.proc.pid, signal.SIGKILL)
        assert crashed.proc.wait() == -signal.SIGKILL
    finally:
        crashed.close()
    accepted = {line.split()[2]: int(line.split()[1]) for line in lines if line.startswith("accepted")}
    assert set(accepted) == {"fast", "slow", "queued", "gone", "old"}
    assert [line for line in lines if line.startswith("refused")] == ["refused quota_daily"]

    with sqlite3.connect(db) as conn:
        status = dict(conn.execute("SELECT json_extract(request, '$.prompt'), status FROM jobs"))
        # What the kill left: one job generated but not delivered, two generating, two waiting.
        assert status == {"fast": "running", "slow": "running", "gone": "running", "queued": "queued", "old": "queued"}
        used_before = dict(conn.execute("SELECT key, images FROM usage WHERE scope = 'user'"))
        assert used_before == {"telegram:1": 3, "telegram:2": 3, "telegram:3": 1}
        conn.execute("UPDATE jobs SET created_at = created_at - 7200 WHERE id = ?", (accepted["old"],))
    conn.close()

    resumed = Worker(env, "resume", "--log", str(log))
    try:
        assert resumed.read_until("idle") == []
        assert resumed.proc.wait() == 0, resumed.error_output()
    finally:
        resumed.close()

    told = [json.loads(line) for line in log.read_text().splitlines()]
    delivered = {entry["job"]: entry["detail"] for entry in told if entry["kind"] == "delivered"}
    failed = {entry["job"]: entry["detail"] for entry in told if entry["kind"] == "failed"}
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        jobs = {row["id"]: row for row in conn.execute("SELECT * FROM jobs")}
        usage = {(r["key"], r["day"]): r["images"] for r in conn.execute("SELECT * FROM usage WHERE scope = 'user'")}
        charged = {
            (r["user_key"], r["quota_day"]): r["images"]
            for r in conn.execute("SELECT user_key, quota_day, sum(charged) AS images FROM jobs GROUP BY 1, 2")
        }
    conn.close()

    assert set(jobs) == set(accepted.values())  # refused requests left nothing behind
    for prompt in ("fast", "slow", "queued"):  # re-run with the seed they were admitted with, and delivered
        job = jobs[accepted[prompt]]
        assert (job["status"], job["delivered"], job["charged"]) == ("done", job["images"], job["images"])
        assert delivered[job["id"]] == job["seed"]
    assert jobs[accepted["fast"]]["attempts"] == 2 and jobs[accepted["queued"]]["attempts"] == 1
    gone, old = jobs[accepted["gone"]], jobs[accepted["old"]]
    assert (gone["status"], gone["error"], gone["charged"]) == ("failed", "delivery_gone", 0)
    assert (old["status"], old["error"], old["charged"]) == ("failed", "job_expired", 0)
    assert failed == {old["id"]: ["job_expired", True]}  # told; the gone chat cannot be
    assert not [j for j in jobs.values() if j["status"] in ("queued", "running")]

    # Counters are exact: each equals what its jobs still charge, and that is what was delivered.
    assert usage == charged
    day = jobs[accepted["fast"]]["quota_day"]
    assert usage == {("telegram:1", day): 3, ("telegram:2", day): 2, ("telegram:3", day): 0}


class NoticeHeldSink(RecordingSink):
    """A sink whose failure notices (of the ``held`` codes) wait for :meth:`release_notices`: the platform
    is slow, or the process dies first."""

    def __init__(self, held: frozenset[str] | None = None) -> None:
        super().__init__()
        self.held = held
        self.notice_started = asyncio.Event()
        self._notices_may_go = asyncio.Event()

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        if self.held is None or error.code in self.held:
            self.notice_started.set()
            await self._notices_may_go.wait()
        await super().on_failed(job, error, refunded)

    def release_notices(self) -> None:
        self._notices_may_go.set()


async def test_a_failure_is_recorded_only_once_the_user_was_told(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    backend = GatedBackend()
    backend.failures["doomed"] = BackendError("backend_unavailable")
    core = await Core.open(make_settings(db), backend)
    held = NoticeHeldSink()
    core.register_sink("telegram", held)
    await core.start()
    try:
        job = await core.submit(UserRef("telegram", "1"), ChatRef("telegram", "1", False), "doomed --n 2", {})
        await asyncio.wait_for(held.notice_started.wait(), WAIT_LIMIT)
        # The notice is on its way: were the process to die now, nothing may say the user was told.
        during = await core.get_job(job.id)
        assert during is not None and (during.status, during.charged) == ("running", 2)
    finally:
        await core.close()  # the process ends with the notice still waiting

    async with open_core(db, backend, platforms=("telegram",)) as (restarted, sink):
        await restarted.wait_idle()
        ended = await restarted.get_job(job.id)
        store = restarted.storage
        assert await usage_matches_jobs(store) == []
    assert sink.of("failed") == [(job.id, ("backend_unavailable", True))]  # told at the next start
    assert ended is not None and (ended.status, ended.error, ended.charged) == ("failed", "backend_unavailable", 0)


async def test_a_job_whose_failure_is_being_told_can_no_longer_be_cancelled(tmp_path: Path) -> None:
    """The service was marked down while a job waited: it fails when its turn comes. While that notice is on
    its way (seconds, behind a platform's flood limits) the owner's /cancel must not end the job a second
    way: one outcome, one message."""
    backend = GatedBackend(hold=True)
    backend.failures["first"] = BackendError("backend_unavailable")
    settings = {"backend_concurrency": 1, "breaker_failures": 1, "breaker_cooldown": 600, "rate_per_minute": 0}
    core = await Core.open(make_settings(tmp_path / "sdbot.db", **settings), backend)
    sink = NoticeHeldSink(held=frozenset({"backend_down"}))
    core.register_sink("telegram", sink)
    await core.start()
    user, chat = UserRef("telegram", "1"), ChatRef("telegram", "1", False)
    try:
        await core.submit(user, chat, "first", {})
        second = await core.submit(user, chat, "second", {})
        await backend.wait_started(1)
        backend.release()  # "first" fails: the service is marked down, and "second" fails when its turn comes
        await asyncio.wait_for(sink.notice_started.wait(), WAIT_LIMIT)
        with pytest.raises(SdbotError) as refused:
            await core.cancel(user)
        assert refused.value.code == "nothing_to_cancel"
        sink.release_notices()
        await core.wait_idle()
        ended = await core.get_job(second.id)
    finally:
        await core.close()
    assert ended is not None and (ended.status, ended.error, ended.charged) == ("failed", "backend_down", 0)
    assert [code for job_id, (code, _) in sink.of("failed") if job_id == second.id] == ["backend_down"]


def test_a_job_given_up_while_delivering_says_its_pictures_may_have_arrived(tmp_path: Path) -> None:
    """Killed for the last time during an upload: 'interrupted and given up' would be false, the pictures may
    be in the chat. Killed while generating: the plain notice. Both refunded."""
    db, log = tmp_path / "sdbot.db", tmp_path / "sink.jsonl"
    env = {"SDBOT_DB": str(db), "SDBOT_BACKEND_CONCURRENCY": "2", "SDBOT_DAILY_IMAGES": "5",
           "SDBOT_RATE_PER_MINUTE": "0", "SDBOT_MAX_PENDING": "5", "SDBOT_JOB_MAX_AGE": "3600"}  # fmt: skip
    crashed = Worker(env, "crash")
    try:
        lines = crashed.read_until("ready")  # "fast" is being delivered, "slow" generating
        os.kill(crashed.proc.pid, signal.SIGKILL)
        crashed.proc.wait()
    finally:
        crashed.close()
    accepted = {line.split()[2]: int(line.split()[1]) for line in lines if line.startswith("accepted")}
    with sqlite3.connect(db) as conn:  # as if these were their third deaths
        conn.execute("UPDATE jobs SET attempts = 3 WHERE status = 'running'")
    conn.close()
    resumed = Worker(env, "resume", "--log", str(log))
    try:
        resumed.read_until("idle")
        assert resumed.proc.wait() == 0, resumed.error_output()
    finally:
        resumed.close()
    failed = {e["job"]: e["detail"] for e in map(json.loads, log.read_text().splitlines()) if e["kind"] == "failed"}
    assert failed[accepted["fast"]] == ["job_crashed_delivering", True]
    assert failed[accepted["slow"]] == ["job_crashed", True]
    with sqlite3.connect(db) as conn:
        charged = dict(
            conn.execute("SELECT id, charged FROM jobs WHERE id IN (?, ?)", (accepted["fast"], accepted["slow"]))
        )
    conn.close()
    assert charged == {accepted["fast"]: 0, accepted["slow"]: 0}
    assert "may have arrived" in render_error(SdbotError("job_crashed_delivering", job=1), "en")


@pytest.mark.parametrize(
    ("deaths", "told"),
    [
        (("generating", "generating", "delivering"), "job_crashed_delivering"),
        (("delivering", "delivering", "generating"), "job_crashed"),  # the last attempt never sent anything
    ],
)
async def test_the_notice_of_a_job_given_up_follows_where_its_last_attempt_died(
    deaths: tuple[str, ...], told: str, tmp_path: Path
) -> None:
    """Three attempts die (the process stops mid-job, nothing recorded after), each at ``deaths``; the next start
    gives the job up, saying its pictures may have arrived only when the last attempt was sending them."""
    db = tmp_path / "sdbot.db"
    job_id = 0
    for phase in deaths:
        backend = GatedBackend(hold=phase == "generating")
        async with open_core(db, backend, platforms=("telegram",)) as (core, sink):
            sink.hold_delivery = True
            if not job_id:
                job_id = (await core.submit(UserRef("telegram", "1"), ChatRef("telegram", "1", False), "cat", {})).id
            if phase == "generating":
                await backend.wait_started(1)
            else:
                await sink.wait_for("deliver_started", 1)
        # open_core's close leaves the job running, as a killed process does
    async with open_core(db, platforms=("telegram",)) as (core, sink):
        await core.wait_idle()
        job = await core.get_job(job_id)
        assert await usage_matches_jobs(core.storage) == []
    assert sink.of("failed") == [(job_id, (told, True))] and sink.of("deliver_started") == []
    assert job is not None and (job.status, job.error, job.attempts, job.charged) == ("failed", told, 3, 0)
    if told == "job_crashed_delivering":
        for lang in ("en", "zh"):
            assert render_error(SdbotError(told, job=job_id), lang) != render_error(
                SdbotError("job_crashed", job=1), lang
            )
