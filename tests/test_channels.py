"""Core support for server administration: allowed channels per chat and one chat's statistics."""

from __future__ import annotations

from pathlib import Path

from bot.chats.refs import ChatRef, UserRef
from tests.pipeline_support import open_core


async def test_allowed_channels_are_kept_per_chat_in_order_and_admins_draw_anywhere(tmp_path: Path) -> None:
    server, other = ChatRef("discord", "1", True), ChatRef("discord", "2", True)
    member, admin = UserRef("discord", "7"), UserRef("discord", "99")
    async with open_core(tmp_path / "db", admins=frozenset({admin.key})) as (core, _sink):
        assert await core.edit_channels(server, "list", "") == []
        assert await core.channels_elsewhere(member, server, {"30"}) == []  # none chosen: every channel
        assert await core.edit_channels(server, "allow", "20") == ["20"]
        assert await core.edit_channels(server, "allow", "10") == ["20", "10"]
        assert await core.edit_channels(server, "allow", "20") == ["20", "10"]  # once
        assert await core.edit_channels(other, "allow", "30") == ["30"]
        assert await core.channels_elsewhere(member, server, {"30"}) == ["20", "10"]
        assert await core.channels_elsewhere(member, server, {"31", "10"}) == []  # a thread of an allowed channel
        assert await core.channels_elsewhere(admin, server, {"30"}) == []
        assert await core.edit_channels(server, "remove", "20") == ["10"]
        assert await core.edit_channels(server, "clear", "") == []
        assert await core.edit_channels(other, "list", "") == ["30"]
    async with open_core(tmp_path / "db") as (core, _sink):  # kept in the database
        assert await core.edit_channels(other, "list", "") == ["30"]


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
