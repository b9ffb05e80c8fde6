"""Discord sharding across processes: two real ``sdbot run`` processes (through bench/soak_bot.py, which only
points discord.py at the fake) on one PostgreSQL database, DISCORD_SHARD_COUNT=4, shards 0,1 and 2,3. Each
server's commands reach the process running its shard, every /draw is delivered, the commands are synced once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from adapters.discord.adapter import parse_shards
from bot.errors import ConfigError
from bot.messages.i18n import render_error
from tests.cluster_support import start_process
from tests.discord_support import TOKEN
from tests.fakes.a1111 import FakeA1111
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeGuild
from tests.postgres_support import PostgresServer

# One server on each of the four shards: Discord routes a server's events to shard (id >> 22) % count.
GUILDS = [FakeGuild((1_000_000 + n * 4 + shard) << 22, f"Guild {shard}", channels=[FakeChannel(7_000 + shard)])
          for n, shard in enumerate(range(4))]  # fmt: skip


def test_shard_settings_are_checked() -> None:
    assert parse_shards("", "") == (None, None)
    assert parse_shards("4", "") == (4, None)
    assert parse_shards("4", "3, 1") == (4, [1, 3])
    for count, ids, variable in (("", "0", "DISCORD_SHARD_COUNT"), ("0", "", "DISCORD_SHARD_COUNT"),
                                 ("4", "4", "DISCORD_SHARD_IDS"), ("4", "x", "DISCORD_SHARD_IDS")):  # fmt: skip
        with pytest.raises(ConfigError) as bad:
            parse_shards(count, ids)
        assert bad.value.variable == variable and variable in render_error(bad.value, "zh")


async def test_two_processes_with_two_shards_each_answer_their_servers_and_sync_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    assert sorted((g.id >> 22) % 4 for g in GUILDS) == [0, 1, 2, 3]
    async with FakeDiscord(TOKEN, guilds=GUILDS) as dc, FakeA1111(duration=0.05) as a1111:
        env = {
            "SOAK_DISCORD_API": dc.api_base,
            "SOAK_DISCORD_GATEWAY": dc.gateway_url,
            "DISCORD_BOT_TOKEN": TOKEN,
            "DISCORD_SHARD_COUNT": "4",
            "SDBOT_DB": await postgres_server.new_database(),
            "SDBOT_BACKEND": "a1111",
            "A1111_URL": a1111.url,
            "SDBOT_LOG_LEVEL": "INFO",
            "SDBOT_RATE_PER_MINUTE": "0",
        }
        processes = [
            await start_process({**env, "DISCORD_SHARD_IDS": ids}, tmp_path / f"p{n}", "bench.soak_bot")
            for n, ids in enumerate(("0,1", "2,3"))
        ]
        try:
            await dc.wait_for(lambda: len(dc.identifies) >= 4 and dc.commands, timeout=60)
            await asyncio.sleep(1)  # the second process would sync by now, were it to
            answers = []
            for n, guild in enumerate(GUILDS):
                prompt = {"prompt": f"a lighthouse in {guild.name}"}
                rec = await dc.invoke_command("draw", prompt, guild_id=guild.id, user_id=5000 + n)
                answers.append(rec)
            for rec in answers:
                await dc.wait_for(lambda rec=rec: rec.original and rec.original.attachments, timeout=60)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), 30)
    logs = [(tmp_path / f"p{n}" / "log").read_text(errors="replace") for n in range(2)]
    assert sorted(tuple(i["shard"]) for i in dc.identifies) == [(0, 4), (1, 4), (2, 4), (3, 4)], logs
    syncs = [c for c in dc.calls if c.method == "PUT" and c.path.endswith("/commands")]
    assert len(syncs) == 1, syncs
    assert sum("commands are synced by another process" in log for log in logs) == 1
    # Each process's gateway sessions carried only its own shards' servers, and each server got its answer.
    for n, shards in enumerate(((0, 1), (2, 3))):
        assert all(f"Shard ID {s} has connected" in logs[n] or f"shard ID {s}" in logs[n] for s in shards), logs[n]
    assert all(rec.original is not None and len(rec.original.attachments) == 1 for rec in answers)
    assert all(process.returncode == 0 for process in processes), logs
