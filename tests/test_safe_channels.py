"""Safe channels, through the real clients: Discord shows pictures the service's filter flagged only in
age-restricted channels (as SDBOT_NSFW_CHANNELS says) and applies the block list's strict rules everywhere else;
a Telegram chat withholds flagged pictures or sends them under Telegram's spoiler cover, as its /settings say."""

from __future__ import annotations

from pathlib import Path

from tests.discord_support import fake_discord, running_bot
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeGuild
from tests.pipeline_support import GatedBackend
from tests.telegram_support import USER, fake_telegram, running
from tests.telegram_support import tg_settings as settings_for

ADULTS = 900_000_000_000_000_077


def guilds() -> list[FakeGuild]:
    channels = [FakeChannel(FakeDiscord.CHANNEL_ID), FakeChannel(ADULTS, "adults", nsfw=True)]
    return [FakeGuild(FakeDiscord.GUILD_ID, channels=channels)]


async def test_discord_flagged_pictures_and_strict_rules_by_channel(tmp_path: Path) -> None:
    backend = GatedBackend(filtered=1)  # the first picture of each result was flagged (blanked) by the service
    async with fake_discord(guilds=guilds()) as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        await bot.core.storage.moderation.add_rule("word", "gore", "cli", "strict")
        general = await dc.invoke_command("draw", {"prompt": "two owls", "n": 2})
        safe = await bot.delivered(general)
        adults = await dc.invoke_command("draw", {"prompt": "two owls", "n": 2}, channel_id=ADULTS)
        covered = await bot.delivered(adults, 2)
        strict = await bot.replied(await dc.invoke_command("draw", {"prompt": "gore"}))
        allowed = await dc.invoke_command("draw", {"prompt": "gore", "n": 2}, channel_id=ADULTS)
        await bot.delivered(allowed)
        await bot.core.wait_idle()

    assert len(safe.attachments) == 1 and not safe.attachments[0].filename.startswith("SPOILER_")
    names = [a.filename for a in covered.attachments]
    assert names[0].startswith("SPOILER_") and not names[1].startswith("SPOILER_")
    assert "does not allow" in strict.content and strict.ephemeral
    assert [r.prompt for r in backend.started] == ["two owls", "two owls", "gore"]


async def test_discord_age_restricted_channels_may_withhold_too(tmp_path: Path) -> None:
    backend = GatedBackend(filtered=1)
    async with (
        fake_discord(guilds=guilds()) as dc,
        running_bot(dc, tmp_path / "db", backend, nsfw_channels="withhold") as bot,
    ):
        rec = await dc.invoke_command("draw", {"prompt": "two owls", "n": 2}, channel_id=ADULTS)
        message = await bot.delivered(rec)
        await bot.core.wait_idle()
        (job,) = await bot.jobs()
    assert len(message.attachments) == 1 and job.charged == 1  # the withheld picture is refunded


async def test_telegram_chats_withhold_or_cover_flagged_pictures(tmp_path: Path) -> None:
    backend = GatedBackend(filtered=1)
    async with fake_telegram() as tg, running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        tg.send_text(USER, "/draw two owls --n 2")
        withheld = await tg.wait_for("sendPhoto")
        tg.send_text(USER, "/settings flagged spoiler")
        await tg.wait_for("sendMessage", lambda c: "spoiler cover" in c.params.get("text", ""))
        tg.send_text(USER, "/draw two owls --n 2")
        album = await tg.wait_for("sendMediaGroup")
        await bot.core.wait_idle()

    assert "has_media_spoiler" not in withheld.result  # one picture left, shown plainly
    covers = [message.get("has_media_spoiler", False) for message in album.result]
    assert covers == [True, False]
