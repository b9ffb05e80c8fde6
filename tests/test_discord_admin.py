"""/quota, /lang, /help, /cancel and /sdadmin through the real client: private answers in the user's
language; server managers administer their own server only, SDBOT_ADMINS everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chats.refs import UserRef
from bot.errors import SdbotError
from bot.messages.i18n import Msg, render_error, t
from tests.discord_support import fake_discord, running_bot
from tests.fakes.discord import DEFAULT_PERMISSIONS, MANAGE_GUILD, FakeChannel, FakeDiscord, FakeGuild, FakeInteraction
from tests.pipeline_support import GatedBackend

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")

MANAGER = DEFAULT_PERMISSIONS | MANAGE_GUILD
OPERATOR_ID = 31337
ART = 900_000_000_000_000_010


async def answer(dc: FakeDiscord, rec: FakeInteraction) -> str:
    message = await dc.wait_for(lambda: rec.original if rec.response_type == 4 else None)
    assert message.ephemeral
    return message.content


async def test_quota_and_lang_answer_privately_in_the_chosen_language(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        quota_en = await answer(dc, await dc.invoke_command("quota"))
        chosen = await answer(dc, await dc.invoke_command("lang", {"language": "zh"}))
        quota_zh = await answer(dc, await dc.invoke_command("quota", locale="en-US"))
        auto = await answer(dc, await dc.invoke_command("lang", {"language": "auto"}))
        current = await answer(dc, await dc.invoke_command("lang"))
        assert bot.core.directory.language_for(UserRef("discord", str(dc.USER_ID))) == "en"

    assert quota_en.startswith("Your quota today") and t("en", "cmd.quota.chat", used=0, count=0)[:10] in quota_en
    assert chosen == t("zh", "cmd.lang.set", language=Msg("lang.name.zh"))
    assert quota_zh.startswith(t("zh", "cmd.quota.title_own", day="")[:4])
    assert auto == t("en", "cmd.lang.auto", language=Msg("lang.name.en"))
    assert current == t("en", "cmd.lang.current", language=Msg("lang.name.en"))


async def test_help_shows_the_admin_commands_to_managers_and_operators_only(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", admins=frozenset({f"discord:{OPERATOR_ID}"})):
        member = await answer(dc, await dc.invoke_command("help", locale="zh-CN"))
        manager = await answer(dc, await dc.invoke_command("help", permissions=MANAGER))
        operator = await answer(dc, await dc.invoke_command("help", user_id=OPERATOR_ID))

    assert member.startswith(t("zh", "cmd.help", n_max=4)[:10]) and "/sdadmin" not in member
    assert manager.endswith(t("en", "discord.help.admin")) and operator.endswith(t("en", "discord.help.admin"))
    assert "/admin " not in manager  # Telegram's admin command means nothing here


async def test_cancel_cancels_queued_and_running_jobs_and_says_so_in_their_messages(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend, backend_concurrency=1) as bot:
        first = await dc.invoke_command("draw", {"prompt": "first"})
        await backend.wait_started(1)
        second = await dc.invoke_command("draw", {"prompt": "second", "n": 2})
        queued = t("en", "job.queued", position=1)
        await dc.wait_for(lambda: second.original and second.original.content == queued)
        reply = await answer(dc, await dc.invoke_command("cancel"))
        await dc.wait_for(lambda: second.original.content != queued)
        drawing = first.original.content if first.original else None
        again = await answer(dc, await dc.invoke_command("cancel", {"job": 1}))  # being drawn: stopped
        await dc.wait_for(lambda: first.original.content != drawing)
        backend.release()
        jobs = await bot.jobs()

    assert reply == t("en", "cmd.cancel.done", jobs=["#2"], count=2)
    assert second.original.content == t("en", "cmd.cancel.done", jobs=["#2"], count=2)
    assert again == t("en", "cmd.cancel.done", jobs=["#1"], count=1)
    assert first.original.content == again and first.original.attachments == []
    assert [(j.status, j.charged) for j in jobs] == [("cancelled", 0), ("cancelled", 0)]


async def test_sdadmin_is_refused_to_members_who_do_not_manage_the_server(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        text = await answer(dc, await dc.invoke_command("sdadmin servercap", {"images": 0}, locale="zh-CN"))
        state = await bot.core.quotas.state(f"discord:{dc.USER_ID}", f"discord:{dc.GUILD_ID}")

    assert text == t("zh", "discord.admin_only") and not state.chat_override


async def test_managers_may_lower_the_server_cap_but_not_raise_it(tmp_path: Path) -> None:
    admins = frozenset({f"discord:{OPERATOR_ID}"})
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", chat_daily_images=10, admins=admins) as bot:
        raised = await answer(dc, await dc.invoke_command("sdadmin servercap", {"images": 20}, permissions=MANAGER))
        lifted = await answer(dc, await dc.invoke_command("sdadmin servercap", {"images": 0}, permissions=MANAGER))
        lowered = await answer(dc, await dc.invoke_command("sdadmin servercap", {"images": 3}, permissions=MANAGER))
        first = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
        await bot.delivered(first, 2)
        over = await answer(dc, await dc.invoke_command("draw", {"prompt": "a dog", "n": 2}, user_id=99))
        by_operator = await answer(dc, await dc.invoke_command("sdadmin servercap", {"images": 0}, user_id=OPERATOR_ID))
        state = await bot.core.quotas.state("discord:99", f"discord:{dc.GUILD_ID}")

    assert raised == lifted == t("en", "discord.cap_too_high", limit=10)
    assert lowered == t(
        "en",
        "cmd.admin.limit_set",
        target=f"Fake Guild (discord:{dc.GUILD_ID})",
        limit=Msg("value.images", {"count": 3}),
    )
    assert over.startswith(t("en", "error.quota_chat", used=2, limit=3)[:20])
    assert by_operator == t(
        "en", "cmd.admin.limit_set", target=f"Fake Guild (discord:{dc.GUILD_ID})", limit=Msg("value.unlimited")
    )
    assert state.chat_daily_images == 0 and state.chat_used == 2


async def test_allowed_channels_limit_where_draw_works(tmp_path: Path) -> None:
    guild = FakeGuild(FakeDiscord.GUILD_ID, channels=[FakeChannel(FakeDiscord.CHANNEL_ID), FakeChannel(ART, "art")])
    async with fake_discord(guilds=[guild]) as dc, running_bot(dc, tmp_path / "db") as bot:
        allowed = await answer(
            dc, await dc.invoke_command("sdadmin channels", {"action": "allow", "channel": ART}, permissions=MANAGER)
        )
        elsewhere = await answer(dc, await dc.invoke_command("draw", {"prompt": "a cat"}, locale="zh-CN"))
        there = await dc.invoke_command("draw", {"prompt": "a cat"}, channel_id=ART)
        await bot.delivered(there)
        listed = await answer(dc, await dc.invoke_command("sdadmin channels", {"action": "list"}, permissions=MANAGER))
        cleared = await answer(
            dc, await dc.invoke_command("sdadmin channels", {"action": "clear"}, permissions=MANAGER)
        )
        back = await dc.invoke_command("draw", {"prompt": "a dog"})
        await bot.delivered(back)

    assert allowed == listed == t("en", "discord.channels.list", channels=[f"<#{ART}>"])
    assert elsewhere == t("zh", "discord.channel_not_allowed", channels=[f"<#{ART}>"])
    assert cleared == t("en", "discord.channels.all")
    assert there.original.channel_id == ART


async def test_stats_cover_this_server_only(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        await bot.delivered(await dc.invoke_command("draw", {"prompt": "here", "n": 2}))
        await bot.delivered(await dc.invoke_command("draw", {"prompt": "in a dm"}, dm=True))
        text = await answer(dc, await dc.invoke_command("sdadmin stats", permissions=MANAGER))

    counts = {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert t("en", "cmd.stats.jobs", total=1, **counts) in text
    assert t("en", "cmd.stats.images", delivered=2, charged=2) in text


async def test_member_limits_and_bans_are_for_the_bots_administrators(tmp_path: Path) -> None:
    admins = frozenset({f"discord:{OPERATOR_ID}"})
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", admins=admins) as bot:
        target = {"member": 99}
        manager = await answer(
            dc, await dc.invoke_command("sdadmin quota", {**target, "images": 50}, permissions=MANAGER)
        )
        set_ = await answer(dc, await dc.invoke_command("sdadmin quota", {**target, "images": 50}, user_id=OPERATOR_ID))
        banned = await answer(dc, await dc.invoke_command("sdadmin ban", target, user_id=OPERATOR_ID))
        refused = await answer(dc, await dc.invoke_command("draw", {"prompt": "a cat"}, user_id=99))
        state = await bot.core.quotas.state("discord:99")

    assert manager == t("en", "discord.operator_only")
    assert set_ == t("en", "cmd.admin.limit_set", target="discord:99", limit=Msg("value.images", {"count": 50}))
    assert banned == t("en", "cmd.admin.ban", user="discord:99")
    assert refused == render_error(SdbotError("banned"), "en")
    assert state.daily_images == 50 and state.banned
