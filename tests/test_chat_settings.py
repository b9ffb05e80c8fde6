"""Per-chat defaults for /draw (/settings): set by the chat's admins (the platform's own, and SDBOT_ADMINS), applied
under each user's own options, shown back in the user's language; on Telegram with inline buttons, on Discord as a
slash command with /draw's choices."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.draw.capabilities import SEED
from tests.discord_support import fake_discord, running_bot
from tests.fakes.discord import MANAGE_GUILD
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend, RecordingSink, make_settings
from tests.telegram_support import GROUP, USER, ZH_USER, PreparedBackend, fake_telegram, running
from tests.telegram_support import tg_settings as settings_for

ANN = UserRef("telegram", "7", "en", "Ann")
GROUP_CHAT = ChatRef("telegram", "-100", True, "Group")


class ShrinkingBackend(GatedBackend):
    """A service whose sizes the test changes, as an operator switching services would."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = SEED.sizes

    async def capabilities(self):  # type: ignore[no-untyped-def]
        return dataclasses.replace(await super().capabilities(), sizes=self.sizes)


async def test_defaults_apply_under_the_users_options_and_only_admins_set_them(tmp_path: Path) -> None:
    backend = ShrinkingBackend()
    core = await Core.open(make_settings(tmp_path / "db", rate_per_minute=0, max_pending=10), backend)
    core.register_sink("telegram", RecordingSink())
    await core.start()
    try:
        refused = await core.chat_settings(ANN, GROUP_CHAT, {"style": "anime"}, manager=False)
        shown = await core.chat_settings(
            ANN, GROUP_CHAT, {"style": "动漫", "size": "768×1024", "negative": "blurry"}, manager=True
        )
        wrong = await core.chat_settings(ANN, GROUP_CHAT, {"steps": "500"}, manager=True)
        plain = await core.submit(ANN, GROUP_CHAT, "/draw a cat", {"chat_id": -100})
        own = await core.submit(ANN, GROUP_CHAT, "/draw a dog --style Cinematic --neg dark", {"chat_id": -100})
        elsewhere = await core.submit(ANN, ChatRef("telegram", "7", False), "/draw a fox", {"chat_id": 7})
        backend.sizes = ("1024x1024",)  # the operator's new service has no 768x1024: the default is left out
        changed = await core.submit(ANN, GROUP_CHAT, "/draw an owl", {"chat_id": -100})
        in_chinese = await core.chat_settings(UserRef("telegram", "8", "zh-hans"), GROUP_CHAT, {}, manager=False)
        reset = await core.chat_settings(ANN, GROUP_CHAT, dict.fromkeys(("style", "size", "negative")), manager=True)
        await core.wait_idle()
    finally:
        await core.close()

    assert refused == "Only this chat's admins can change its defaults."
    assert shown.splitlines() == [
        "This chat's defaults for /draw (your own options win):",
        "style: Anime",
        "size: 768x1024",
        "steps: not set",
        "negative: blurry",
        "moderation: standard",
        "flagged pictures: withheld",
    ]
    assert wrong == "--steps must be between 10 and 50; you gave 500."
    assert (plain.request.style, plain.request.size, plain.request.negative_prompt) == ("Anime", "768x1024", "blurry")
    assert (own.request.style, own.request.negative_prompt) == ("Cinematic", "dark")
    assert (elsewhere.request.style, elsewhere.request.size) == ("Base", "1024x1024")
    assert (changed.request.style, changed.request.size) == ("Anime", "1024x1024")
    assert "风格：Anime（动漫）" in in_chinese and "步数：未设置" in in_chinese
    assert "style: not set" in reset


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_telegram_group_admins_set_defaults_with_buttons(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend()
    tg.chat_admins[GROUP] = {USER}
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        tg.send_text(ZH_USER, "/settings 风格 动漫", chat_id=GROUP, chat_type="group", language_code="zh-hans")
        denied = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/settings", chat_id=GROUP, chat_type="group")
        menu = await tg.wait_for("sendMessage", lambda c: c is not denied)
        tg.press_button(USER, menu.result, "set:style")
        await tg.wait_for("editMessageReplyMarkup")
        styles = tg.message(GROUP, menu.result["message_id"])["reply_markup"]["inline_keyboard"]
        anime = next(b for row in styles for b in row if b["text"] == "Anime")
        tg.press_button(USER, menu.result, anime["callback_data"])
        edited = await tg.wait_for("editMessageText")
        tg.send_text(ZH_USER, "/draw 一只猫", chat_id=GROUP, chat_type="group", language_code="zh-hans")
        photo = await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()

    assert denied.params["text"] == "只有本聊天的管理员可以修改默认设置。"
    assert [b["callback_data"] for b in menu.params["reply_markup"]["inline_keyboard"][0]] == ["set:style", "set:size"]
    assert "style: Anime" in edited.params["text"]
    assert backend.requests[0].style == "Anime" and "动漫" in photo.params["caption"]


async def test_discord_managers_set_defaults_with_the_slash_command(tmp_path: Path) -> None:
    backend = GatedBackend()
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        command = dc.command("settings")
        member = await dc.invoke_command("settings", {"style": "Anime"}, locale="zh-CN")
        denied = await bot.replied(member)
        rec = await dc.invoke_command("settings", {"style": "Anime", "steps": 30}, permissions=MANAGE_GUILD)
        shown = await bot.replied(rec)
        drawn = await dc.invoke_command("draw", {"prompt": "a cat"})
        await bot.delivered(drawn)
        cleared = await bot.replied(await dc.invoke_command("settings", {"reset": "all"}, permissions=MANAGE_GUILD))
        await bot.core.wait_idle()

    names = {o["name"] for o in command["options"]}
    assert names == {"style", "size", "steps", "negative", "moderation", "reset"}
    assert denied.content == "只有本聊天的管理员可以修改默认设置。" and denied.ephemeral
    assert "style: Anime" in shown.content and "steps: 30" in shown.content
    assert (backend.started[0].style, backend.started[0].steps) == ("Anime", 30)
    assert "style: not set" in cleared.content and "steps: not set" in cleared.content
