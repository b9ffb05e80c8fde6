"""The real discord.py client (Client + app_commands.CommandTree) against ``tests.fakes.discord``.

These tests prove the fake is faithful enough for the Discord adapter's tests: login, gateway READY,
command sync with localizations, deferred followups with files, ephemeral replies, rate limits, expired
tokens, persistent buttons, wrong tokens and Discord's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.fakes.discord import EPHEMERAL, MANAGE_GUILD, FakeDiscord, FakeInteraction

TOKEN = "test-bot-token"
ZH = {
    "draw": "画图",
    "Draw an image": "画一张图",
    "prompt": "描述",
    "What to draw": "要画什么",
    "count": "数量",
    "How many images": "几张图",
    "size": "尺寸",
    "Image size": "图片尺寸",
    "Small": "小",
    "Large": "大",
}


def png(color: str, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


class ZhTranslator(app_commands.Translator):
    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContext
    ) -> str | None:
        return ZH.get(string.message) if locale is discord.Locale.chinese else None


class AgainView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="sdbot:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]) -> None:
        assert isinstance(interaction.client, Bot)
        interaction.client.seen.append({"button": button.custom_id, "user": interaction.user.id})
        await interaction.response.edit_message(content="again!", view=self)


class Bot(discord.Client):
    """A minimal sdbot-like client; handlers record what they saw in ``seen`` and exceptions in ``errors``."""

    def __init__(self) -> None:
        # guild_ready_timeout: discord.py waits that long after the last GUILD_CREATE before on_ready (2 s).
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[dict[str, Any]] = []
        self.errors: list[Exception] = []
        self.followup_delay = 0.0

        @self.tree.command(name=app_commands.locale_str("draw"), description=app_commands.locale_str("Draw an image"))
        @app_commands.describe(
            prompt=app_commands.locale_str("What to draw"),
            count=app_commands.locale_str("How many images"),
            size=app_commands.locale_str("Image size"),
        )
        @app_commands.rename(
            prompt=app_commands.locale_str("prompt"),
            count=app_commands.locale_str("count"),
            size=app_commands.locale_str("size"),
        )
        @app_commands.choices(
            size=[
                app_commands.Choice(name=app_commands.locale_str("Small"), value=512),
                app_commands.Choice(name=app_commands.locale_str("Large"), value=1024),
            ]
        )
        async def draw(
            interaction: discord.Interaction,
            prompt: str,
            count: app_commands.Range[int, 1, 4] = 2,
            size: app_commands.Choice[int] | None = None,
        ) -> None:
            self.seen.append(
                {
                    "prompt": prompt,
                    "count": count,
                    "size": size.value if size else None,
                    "locale": interaction.locale,
                    "guild_locale": interaction.guild_locale,
                    "filesize_limit": interaction.filesize_limit,
                    "manage_guild": interaction.permissions.manage_guild,
                }
            )
            await interaction.response.defer(thinking=True)
            if self.followup_delay:
                await asyncio.sleep(self.followup_delay)
            files = [discord.File(io.BytesIO(png(c)), f"{i}.png") for i, c in enumerate(("red", "blue")[:count])]
            try:
                message = await interaction.followup.send(f"{prompt} x{count}", files=files, wait=True)
            except discord.HTTPException as exc:
                self.errors.append(exc)
                return
            self.seen.append({"downloaded": await message.attachments[0].read()})

        @self.tree.command(description="Show the quota")
        async def quota(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("3 left today", ephemeral=True)

        @self.tree.command(description="Show buttons")
        async def menu(interaction: discord.Interaction) -> None:
            preview = discord.File(io.BytesIO(png("green")), "preview.png")
            await interaction.response.send_message("menu", view=AgainView(), file=preview)

        @self.tree.command(description="Upscale with progress")
        async def upscale(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True, ephemeral=True)
            await interaction.edit_original_response(content="50%")
            done = discord.File(io.BytesIO(png("white", 16)), "big.png")
            await interaction.edit_original_response(content="done", attachments=[done])
            original = await interaction.original_response()
            self.seen.append({"original": original.content, "files": [a.filename for a in original.attachments]})

    async def setup_hook(self) -> None:
        await self.tree.set_translator(ZhTranslator())
        self.add_view(AgainView())  # persistent: survives restarts, matched by custom_id only


@contextlib.asynccontextmanager
async def running(bot: discord.Client, token: str = TOKEN) -> AsyncIterator[discord.Client]:
    """Log in, connect in a task, wait for on_ready; close in the end whatever happens."""
    await bot.login(token)
    task = asyncio.create_task(bot.connect())
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # connect() ended before READY: raise its error
        assert ready in done, "bot never became ready"
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(TOKEN) as fake:
        with fake.patch_discord():
            yield fake


@pytest.fixture
async def bot(dc: FakeDiscord) -> AsyncIterator[Bot]:
    client = Bot()
    async with running(client):
        await client.tree.sync()
        yield client


async def test_sync_stores_localized_commands(dc: FakeDiscord) -> None:
    client = Bot()
    async with running(client):
        synced = await client.tree.sync()
        client.tree.copy_global_to(guild=discord.Object(dc.GUILD_ID))
        await client.tree.sync(guild=discord.Object(dc.GUILD_ID))

    draw = dc.command("draw")
    assert {c.name: c.id for c in synced}["draw"] == int(draw["id"])
    assert draw["name_localizations"] == {"zh-CN": "画图"}
    assert draw["description_localizations"] == {"zh-CN": "画一张图"}
    options = {o["name"]: o for o in draw["options"]}
    assert options["prompt"]["required"] and options["prompt"]["name_localizations"] == {"zh-CN": "描述"}
    assert options["count"]["type"] == 4 and options["count"]["min_value"] == 1
    assert options["size"]["choices"][0] == {"name": "Small", "value": 512, "name_localizations": {"zh-CN": "小"}}
    assert dc.command("draw", guild_id=dc.GUILD_ID)["guild_id"] == str(dc.GUILD_ID)
    assert [c.method for c in dc.calls_to("PUT", r"/commands$")] == ["PUT", "PUT"]


async def test_deferred_followup_carries_two_pngs(dc: FakeDiscord, bot: Bot) -> None:
    rec = await dc.invoke_command(
        "draw", {"prompt": "a cat", "count": 2, "size": 1024}, locale="zh-CN", permissions=MANAGE_GUILD
    )
    await dc.wait_for(lambda: len(bot.seen) == 2)

    assert bot.seen[0] == {
        "prompt": "a cat",
        "count": 2,
        "size": 1024,
        "locale": discord.Locale.chinese,
        "guild_locale": discord.Locale.american_english,
        "filesize_limit": 10 * 1024 * 1024,
        "manage_guild": True,
    }
    assert rec.callbacks[0].json == {"type": 5}
    (followup,) = rec.followups
    assert followup is rec.original and not followup.loading and not followup.ephemeral
    assert followup.content == "a cat x2"
    assert [a.filename for a in followup.attachments] == ["0.png", "1.png"]
    assert [a.data for a in followup.attachments] == [png("red"), png("blue")]
    assert followup.attachments[0].width == 8 and followup.attachments[0].content_type == "image/png"
    (call,) = dc.calls_to("POST", r"^/webhooks/")
    assert call.files["files[1]"] == ("1.png", png("blue"))
    assert bot.seen[1] == {"downloaded": png("red")}  # Attachment.read() fetched it back from the fake
    assert dc.channel_messages(dc.CHANNEL_ID) == [followup]


async def test_ephemeral_reply_has_flag_64(dc: FakeDiscord, bot: Bot) -> None:
    rec = await dc.invoke_command("quota")
    await dc.wait_for(lambda: rec.original)

    assert rec.response_type == 4
    assert rec.callbacks[0].json["data"]["flags"] == EPHEMERAL
    assert rec.original.ephemeral and rec.original.content == "3 left today"
    assert dc.channel_messages(dc.CHANNEL_ID) == []


async def test_dm_invocation_has_a_user_and_no_guild(dc: FakeDiscord, bot: Bot) -> None:
    rec = await dc.invoke_command("quota", dm=True, user_id=7)
    await dc.wait_for(lambda: rec.original)

    assert "member" not in rec.payload and rec.payload["user"]["id"] == "7"
    assert rec.guild_id is None and rec.original.guild_id is None and rec.original.ephemeral


async def test_progress_edits_of_the_original_response(dc: FakeDiscord, bot: Bot) -> None:
    rec = await dc.invoke_command("upscale")
    await dc.wait_for(lambda: bot.seen)

    assert rec.callbacks[0].json == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert bot.seen == [{"original": "done", "files": ["big.png"]}]
    message = rec.original
    assert message is not None and message.ephemeral and not message.loading and message.edits == 2
    assert message.attachments[0].data == png("white", 16) and message.attachments[0].width == 16
    patches = dc.calls_to("PATCH", r"/messages/@original$")
    assert [bool(c.files) for c in patches] == [False, True]
    assert rec.followups == []


async def test_rate_limited_followup_is_waited_out_and_retried(dc: FakeDiscord, bot: Bot) -> None:
    fault = dc.fail_next("POST", r"^/webhooks/", status=429, retry_after=0.2)
    started = time.monotonic()
    rec = await dc.invoke_command("draw", {"prompt": "dog", "count": 1})
    await dc.wait_for(lambda: len(bot.seen) == 2)

    assert time.monotonic() - started >= 0.2
    assert fault.hits == 1 and not bot.errors
    assert [c.status for c in dc.calls_to("POST", r"^/webhooks/")] == [429, 200]
    assert len(rec.followups[0].attachments) == 1


async def test_429_without_via_is_taken_for_a_cloudflare_ban(dc: FakeDiscord, bot: Bot) -> None:
    dc.fail_next("POST", r"^/webhooks/", status=429, retry_after=0.05, via=False)
    rec = await dc.invoke_command("draw", {"prompt": "dog"})
    await dc.wait_for(lambda: bot.errors)

    assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].status == 429
    assert rec.followups == []


async def test_expired_token_makes_followup_fail() -> None:
    async with FakeDiscord(TOKEN, interaction_token_lifetime=0.2) as dc:
        with dc.patch_discord():
            client = Bot()
            client.followup_delay = 0.3
            async with running(client):
                await client.tree.sync()
                rec = await dc.invoke_command("draw", {"prompt": "late"})
                await dc.wait_for(lambda: client.errors)

    (error,) = client.errors
    assert isinstance(error, discord.HTTPException)
    assert (error.status, error.code) == (401, 50027)
    assert rec.response_type == 5 and rec.followups == []


async def test_button_click_reaches_persistent_view(dc: FakeDiscord, bot: Bot) -> None:
    rec = await dc.invoke_command("menu")
    message = await dc.wait_for(lambda: rec.original)
    assert message.custom_ids == ["sdbot:again"]
    assert rec.callbacks[0].files["files[0]"] == ("preview.png", png("green"))

    click: FakeInteraction = await dc.click_button("sdbot:again", message, user_id=42)
    await dc.wait_for(lambda: click.callbacks)

    assert bot.seen == [{"button": "sdbot:again", "user": 42}]
    assert click.response_type == 7 and click.original is message
    assert message.content == "again!" and message.edits == 1
    assert [a.filename for a in message.attachments] == ["preview.png"]  # edits keep attachments
    with pytest.raises(LookupError):
        await dc.click_button("nope", message)


async def test_wrong_token_raises_login_failure(dc: FakeDiscord) -> None:
    client = Bot()
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    assert dc.calls[0].path == "/users/@me" and dc.calls[0].status == 401


async def test_rotated_token_closes_the_gateway_with_4004(dc: FakeDiscord) -> None:
    client = Bot()
    await client.login(TOKEN)
    dc.token = "rotated"
    try:
        with pytest.raises(discord.ConnectionClosed) as info:
            await asyncio.wait_for(client.connect(), 5)
    finally:
        await client.close()
    assert info.value.code == 4004


async def test_reconnect_resumes_the_session(dc: FakeDiscord, bot: Bot) -> None:
    await dc.request_reconnect()
    await dc.wait_for(lambda: dc.resumes and dc.is_connected)
    rec = await dc.invoke_command("quota")
    await dc.wait_for(lambda: rec.original)

    assert len(dc.identifies) == 1
    assert dc.resumes[0]["session_id"] == bot.ws.session_id


async def test_discord_limits_and_permissions() -> None:
    async with FakeDiscord(TOKEN, file_size_limit=1000) as dc:
        with dc.patch_discord():
            client = Bot()
            async with running(client):
                channel = client.get_channel(dc.CHANNEL_ID)
                assert isinstance(channel, discord.TextChannel)

                with pytest.raises(discord.HTTPException) as too_long:
                    await channel.send("x" * 2001)
                with pytest.raises(discord.HTTPException) as too_big:
                    await channel.send(file=discord.File(io.BytesIO(b"\0" * 1001), "big.bin"))
                eleven = [discord.File(io.BytesIO(png("red")), f"{i}.png") for i in range(11)]
                with pytest.raises(discord.HTTPException) as too_many:
                    await channel.send(files=eleven)
                ok = await channel.send("hello", file=discord.File(io.BytesIO(png("red")), "a.png"))

                dc.missing_permissions.add(dc.CHANNEL_ID)
                with pytest.raises(discord.Forbidden) as forbidden:
                    await channel.send("hi")

    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert (too_big.value.status, too_big.value.code) == (413, 40005)
    assert (too_many.value.status, too_many.value.code) == (400, 50035)
    assert forbidden.value.code == 50013
    assert [m.id for m in dc.channel_messages(dc.CHANNEL_ID)] == [ok.id]


async def test_raw_wire_details(dc: FakeDiscord, bot: Bot) -> None:
    """Things discord.py cannot show: exact Content-Type, double acknowledgement, bad tokens."""
    rec = await dc.invoke_command("quota")
    await dc.wait_for(lambda: rec.callbacks)
    async with aiohttp.ClientSession() as http:
        url = f"{dc.api_base}/interactions/{rec.id}/{rec.token}/callback"
        async with http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            assert (resp.status, (await resp.json())["code"]) == (400, 40060)
        async with http.get(f"{dc.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
        async with http.get(f"{dc.api_base}/webhooks/{dc.application_id}/bad/messages/@original") as resp:
            assert (resp.status, (await resp.json())["code"]) == (401, 50027)


async def test_invalid_localized_name_fails_the_sync(dc: FakeDiscord) -> None:
    class BadTranslator(app_commands.Translator):
        async def translate(
            self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContext
        ) -> str | None:
            return "画 图" if locale is discord.Locale.chinese and string.message == "draw" else None

    client = Bot()
    async with running(client):
        await client.tree.set_translator(BadTranslator())
        with pytest.raises(app_commands.CommandSyncFailure) as info:
            await client.tree.sync()

    assert info.value.code == 50035
    assert dc.commands == []
