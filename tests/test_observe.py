"""``/healthz`` and ``/metrics`` (SDBOT_HTTP_LISTEN): a real Core on SQLite and on PostgreSQL, read over HTTP
with httpx, the metrics parsed with prometheus-client's own parser (meanings, not the text's layout)."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.errors import ConfigError, DrawError
from bot.messages.i18n import render_error
from bot.observe.server import StatusServer
from tests.pipeline_support import open_core
from tests.postgres_support import PostgresServer
from tests.test_telegram_run import free_port

ANN = UserRef("telegram", "1")
CHAT = ChatRef("telegram", "1", False)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_and_metrics_of_a_running_core(tmp_path: Path) -> None:
    async with open_core(tmp_path / "sdbot.db", daily_images=0) as (core, sink):
        server = StatusServer(core, "127.0.0.1", free_port())
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/healthz")).status_code == 200
                await core.submit(ANN, CHAT, "/draw a cat --n 2", {})
                await sink.wait_for("delivered", 1)
                await core.wait_idle()
                with pytest.raises(DrawError) as refusal:
                    await core.submit(ANN, CHAT, "/draw a cat --steps 9999", {})
                answer = await http.get("/metrics")
                assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
                seen = samples(answer.text)
            await core.close()
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/healthz")).status_code == 503  # not serving any more
        finally:
            await server.stop()
    assert seen[("sdbot_deliveries_total", (("platform", "telegram"),))] == 1
    assert seen[("sdbot_jobs", (("state", "done"),))] == 1
    assert seen[("sdbot_jobs", (("state", "queued"),))] == 0
    assert seen[("sdbot_queue_depth", ())] == 0
    assert seen[("sdbot_backend_up", (("backend", "gated"),))] == 1
    assert seen[("sdbot_generation_seconds_count", (("backend", "gated"), ("outcome", "ok")))] == 1
    assert seen[("sdbot_leader", ())] == 1
    refused = {labels: value for (name, labels), value in seen.items() if name == "sdbot_refusals_total"}
    assert refused == {(("reason", refusal.value.code),): 1.0}


async def test_health_is_503_while_the_postgresql_database_refuses_connections(
    postgres_server: PostgresServer,
) -> None:
    dsn = await postgres_server.new_database()
    name = dsn.rsplit("/", 1)[1]
    settings = Settings.from_env({"SDBOT_DB": dsn}, env_file=None)
    async with open_core(settings.db) as (core, _):  # type: ignore[arg-type]
        server = StatusServer(core, "127.0.0.1", free_port())
        await server.start()
        admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
                assert (await http.get("/healthz")).status_code == 503
                assert (await http.get("/metrics")).status_code == 503
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                assert (await http.get("/healthz")).status_code == 200  # the pool connects again
        finally:
            await admin.close()
            await server.stop()


async def test_an_address_that_cannot_be_listened_on_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        Settings.from_env({"SDBOT_HTTP_LISTEN": "localhost"}, env_file=None)
    assert bad.value.code == "config_invalid" and "SDBOT_HTTP_LISTEN" in render_error(bad.value, "zh")
    assert Settings.from_env({"SDBOT_HTTP_LISTEN": ":9090"}, env_file=None).http_listen == ("0.0.0.0", 9090)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with open_core(tmp_path / "sdbot.db") as (core, _):
            with pytest.raises(ConfigError) as refused:
                await StatusServer(core, "127.0.0.1", taken.getsockname()[1]).start()
    assert refused.value.code == "listen_failed"
    assert "SDBOT_HTTP_LISTEN" in render_error(refused.value, "en") and "SDBOT_HTTP_LISTEN" in render_error(
        refused.value, "zh"
    )
