"""Three real ``sdbot run`` processes on one PostgreSQL database, Telegram's webhooks reaching them through a
reverse proxy, the fake AUTOMATIC1111 drawing: a process killed (SIGKILL) or paused (SIGSTOP) while it holds
jobs loses them to the others, and every user gets their picture once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.cluster_support import Cluster, cluster, logs
from tests.fakes.a1111 import FakeA1111
from tests.fakes.telegram import FakeTelegram
from tests.postgres_support import PostgresServer
from tests.telegram_support import fake_telegram
from tests.test_observe import samples

LEASE = 3  # SDBOT_JOB_LEASE for these tests: takeovers within seconds
USERS = range(5001, 5010)


async def environment(postgres_server: PostgresServer, tg: FakeTelegram, a1111: FakeA1111) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.url,
        "SDBOT_DB": await postgres_server.new_database(),
        "SDBOT_BACKEND": "a1111",
        "A1111_URL": a1111.url,
        "SDBOT_BACKEND_CONCURRENCY": "3",
        "SDBOT_JOB_LEASE": str(LEASE),
        "SDBOT_RATE_PER_MINUTE": "0",
        "SDBOT_DAILY_IMAGES": "0",
        "SDBOT_LOG_LEVEL": "INFO",
    }


async def busiest(group: Cluster, at_least: int = 1) -> int:
    """The pid of a process holding ``at_least`` running jobs, once there is one."""
    async with asyncio.timeout(30):
        while True:
            held = await group.workers()
            for pid, count in held.items():
                if count >= at_least:
                    return pid
            await asyncio.sleep(0.05)


async def every_user_got_one_picture(tg: FakeTelegram, group: Cluster, tmp_path: Path, timeout: float) -> None:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            for _ in USERS:
                await tg.wait_for("sendPhoto", timeout=timeout)
    except TimeoutError:
        jobs = await group.fetch("SELECT id, status, error, attempts, worker, delivering_at FROM jobs ORDER BY id")
        photos = {user: len(tg.photos(user)) for user in USERS}
        raise AssertionError(f"photos {photos}\njobs {[dict(r) for r in jobs]}\n{logs(tmp_path)[-20000:]}") from None
    await asyncio.sleep(LEASE)  # time enough for a second copy to show up, were there one
    assert {user: len(tg.photos(user)) for user in USERS} == dict.fromkeys(USERS, 1)


@asynccontextmanager
async def drawing(postgres_server: PostgresServer, tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, Cluster, int]]:
    """Three processes drawing a /draw of each of USERS (a second each, the fake drawing one at a time), and
    the pid of one generating some of them now."""
    async with fake_telegram() as tg, FakeA1111(duration=1.0) as a1111:
        env = await environment(postgres_server, tg, a1111)
        async with cluster(3, env, tmp_path) as group:
            for user in USERS:
                tg.send_text(user, f"/draw a lighthouse number {user}")
            yield tg, group, await busiest(group)


async def test_sigkill_one_of_three_processes_while_it_runs_jobs(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with drawing(postgres_server, tmp_path) as (tg, group, victim):
        group.process(victim).send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await every_user_got_one_picture(tg, group, tmp_path, timeout=60)
        took = time.monotonic() - killed_at
        rows = await group.fetch("SELECT status, charged, attempts, worker FROM jobs ORDER BY id")
        assert [(r["status"], r["charged"]) for r in rows] == [("done", 1)] * len(USERS), logs(tmp_path)
        assert any(r["attempts"] == 2 for r in rows)  # the dead process's jobs ran again elsewhere
        assert not any(r["worker"] and r["worker"].split(":")[1] == str(victim) for r in rows)
        assert took < 60
        assert not any(tg.texts(user) and "interrupted" in " ".join(tg.texts(user)) for user in USERS)


async def test_sigstop_past_the_lease_then_sigcont_delivers_nothing_another_took_over(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with drawing(postgres_server, tmp_path) as (tg, group, paused):
        os.kill(paused, signal.SIGSTOP)
        await every_user_got_one_picture(tg, group, tmp_path, timeout=60)
        os.kill(paused, signal.SIGCONT)  # it wakes up with pictures to send, and finds itself fenced
        await asyncio.sleep(2 * LEASE)
        rows = await group.fetch("SELECT status, charged FROM jobs ORDER BY id")
        async with httpx.AsyncClient() as http:
            health = [(await http.get(url + "/healthz")).status_code for url in group.status]
            metrics = [samples((await http.get(url + "/metrics")).text) for url in group.status]
        assert health == [200, 200, 200]  # the resumed one too: it serves, and its database answers
        delivered = [m.get(("sdbot_deliveries_total", (("platform", "telegram"),)), 0) for m in metrics]
        assert sum(delivered) == len(USERS)  # each job counted once, by the process that delivered it
        assert {user: len(tg.photos(user)) for user in USERS} == dict.fromkeys(USERS, 1), logs(tmp_path)
        assert [(r["status"], r["charged"]) for r in rows] == [("done", 1)] * len(USERS)
        assert "no longer this process's" in logs(tmp_path) or "lease lost" in logs(tmp_path)


async def test_a_thousand_webhooks_through_a_proxy_to_three_processes_one_killed_halfway(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """970 /quota and 30 /draw from as many users, pushed one by one (as Telegram does per bot) through the
    proxy; one process is killed after 500. Every /draw is delivered once; every /quota is answered. A command
    is answered twice only if the process died after answering it and before marking it handled (the inbox
    is at least once; /draw is exactly once whatever happens, by the update's id)."""
    askers = range(6000, 6970)
    drawers = range(7000, 7030)
    async with fake_telegram() as tg, FakeA1111(duration=0.05) as a1111:
        env = await environment(postgres_server, tg, a1111)
        async with cluster(3, env, tmp_path) as group:
            next_asker = iter(askers)
            for n in range(1000):
                if n % 33 == 0 and n // 33 < len(drawers):
                    tg.send_text(drawers[n // 33], f"/draw a boat number {n}")
                else:
                    tg.send_text(next(next_asker), "/quota")
            async with asyncio.timeout(120):
                while len(tg.webhook_deliveries) < 500:  # noqa: ASYNC110 (the fake's own pace)
                    await asyncio.sleep(0.05)
            group.processes[1].send_signal(signal.SIGKILL)
            async with asyncio.timeout(180):
                for _ in drawers:
                    await tg.wait_for("sendPhoto", timeout=180)
                while any(not tg.texts(u) for u in askers):  # noqa: ASYNC110 (answers spread over processes)
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3 * LEASE)  # any second copy would show up by now
            handled = await group.fetch("SELECT count(*) AS n FROM inbox WHERE handled_at IS NOT NULL")
        assert {u: len(tg.photos(u)) for u in drawers} == dict.fromkeys(drawers, 1), logs(tmp_path)
        answers = {u: sum(1 for text in tg.texts(u) if "quota today" in text.lower()) for u in askers}
        twice = [u for u, n in answers.items() if n > 1]
        assert all(n >= 1 for n in answers.values()) and len(twice) <= 3, twice
        assert handled[0]["n"] == 1000
        # The menus were set once, by the first process to start: the default menu, then its zh and en variants.
        assert len(tg.calls_to("setMyCommands")) == 3
        assert len({update_id for update_id, status in tg.webhook_deliveries if status == 200}) == 1000
