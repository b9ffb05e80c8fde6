"""Core support for server administration: allowed channels per chat and one chat's statistics."""

from __future__ import annotations

from pathlib import Path

from bot.chats.channels import Channels
from bot.chats.refs import ChatRef, UserRef
from bot.storage.sqlite import SQLiteStorage
from tests.pipeline_support import open_core


async def test_allowed_channels_are_kept_per_chat_in_order(tmp_path: Path) -> None:
    clock = iter(range(100))
    store = await SQLiteStorage.open(tmp_path / "db", clock=lambda: float(next(clock)))
    channels = Channels(store)
    try:
        assert await channels.allowed("discord:1") == []
        assert await channels.allow("discord:1", "20") == ["20"]
        assert await channels.allow("discord:1", "10") == ["20", "10"]
        assert await channels.allow("discord:1", "20") == ["20", "10"]  # once
        assert await channels.allow("discord:2", "30") == ["30"]
        assert await channels.remove("discord:1", "20") == ["10"]
        await channels.clear("discord:1")
        assert await channels.allowed("discord:1") == [] and await channels.allowed("discord:2") == ["30"]
    finally:
        await store.close()

    reopened = await SQLiteStorage.open(tmp_path / "db")
    try:
        assert await Channels(reopened).allowed("discord:2") == ["30"]
    finally:
        await reopened.close()


async def test_stats_can_cover_one_chat(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db") as (core, _sink):
        alice, bob = UserRef("discord", "1"), UserRef("discord", "2")
        await core.submit(alice, ChatRef("discord", "100", True), "a cat --n 2", route={})
        await core.submit(bob, ChatRef("discord", "200", True), "a dog", route={})
        await core.wait_idle()
        day = core.quotas.today()
        one = await core.jobs.stats(day, chat="discord:100")
        every = await core.jobs.stats(day)
        text = await core.commands.stats_report("en", chat_key="discord:200")

    assert (one.jobs, one.images_delivered, one.busiest) == ({"done": 1}, 2, [("discord:1", 2)])
    assert (every.jobs, every.images_delivered) == ({"done": 2}, 3)
    assert "discord:2 1" in text and "discord:1" not in text
