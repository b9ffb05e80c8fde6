"""The block list on both platforms, through the real clients: a blocked prompt refused in the user's language
without echoing the term and without a charge; the operators' commands, kept out of group chats on Telegram and
answered only to the operator on Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.discord_support import fake_discord, running_bot
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import GROUP, USER, ZH_USER, PreparedBackend, fake_telegram, running
from tests.telegram_support import tg_settings as settings_for

OPERATOR_ID = 31337


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_telegram_operators_keep_the_list_and_users_are_refused(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend()
    settings = settings_for(tmp_path, tg, rate_per_minute=0, admins=frozenset({f"telegram:{USER}"}))
    async with running(settings, backend) as bot:
        tg.send_text(USER, "/admin block add blood bath")
        added = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/admin block list", chat_id=GROUP, chat_type="group")
        in_group = await tg.wait_for("sendMessage", lambda c: c is not added)
        tg.send_text(ZH_USER, "/draw 一幅 B.L.O.O.D BATH 的画", language_code="zh-hans")
        refused = await tg.wait_for("sendMessage", lambda c: c not in (added, in_group))
        tg.send_text(USER, "/draw bloodbath at dawn")  # the operator is screened too, in English
        in_english = await tg.wait_for("sendMessage", lambda c: c not in (added, in_group, refused))
        tg.send_text(ZH_USER, "/draw a blood orange", language_code="zh-hans")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        used = (await bot.core.quotas.state(f"telegram:{ZH_USER}", None)).used

    assert added.params["text"] == "Blocked (rule #1, word): blood bath"
    assert in_group.params["text"] == "The block list is only shown and changed in a private chat with the bot."
    text = refused.params["text"]
    assert text == "无法绘制：描述中含有本机器人不允许的内容。本次不扣额度。" and "BLOOD" not in text
    english = "This request cannot be drawn: it contains words this bot does not allow. Nothing was charged."
    assert in_english.params["text"] == english
    assert [r.prompt for r in backend.requests] == ["a blood orange"] and used == 1


async def test_discord_operators_keep_the_list_and_users_are_refused(tmp_path: Path) -> None:
    backend = GatedBackend()
    admins = frozenset({f"discord:{OPERATOR_ID}"})
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend, admins=admins) as bot:
        member = await dc.invoke_command("sdadmin block", {"action": "add", "value": "gore"})
        denied = await bot.replied(member)
        rec = await dc.invoke_command("sdadmin block", {"action": "add", "value": "gore"}, user_id=OPERATOR_ID)
        added = await bot.replied(rec)
        draw = await dc.invoke_command("draw", {"prompt": "a scene of G O R E"}, locale="zh-CN")
        refused = await bot.replied(draw)
        in_english = await bot.replied(await dc.invoke_command("draw", {"prompt": "gore-fest"}))
        listed = await bot.replied(
            await dc.invoke_command("sdadmin block", {"action": "refusals"}, user_id=OPERATOR_ID)
        )
        jobs = await bot.jobs()

    assert "gore" not in denied.content and denied.ephemeral
    assert added.content == "Blocked (rule #1, word): gore" and added.ephemeral
    assert refused.content == "无法绘制：描述中含有本机器人不允许的内容。本次不扣额度。" and refused.ephemeral
    assert in_english.content.startswith("This request cannot be drawn") and in_english.ephemeral
    assert listed.ephemeral and "rule #1 gore (prompt)" in listed.content and jobs == []
    assert backend.started == []
