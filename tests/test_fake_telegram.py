"""The Telegram fake against the real python-telegram-bot: no mocks, only 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllPrivateChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Update,
)
from telegram.error import BadRequest, ChatMigrated, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from tests.fakes.telegram import FakeTelegram

USER = 4242
GROUP = -100555


def png(width: int, height: int, color: str = "purple") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def builder(tg: FakeTelegram, token: str | None = None) -> ApplicationBuilder:
    return ApplicationBuilder().token(token or tg.token).base_url(f"{tg.url}/bot").base_file_url(f"{tg.url}/file/bot")


@asynccontextmanager
async def polling(app: Application) -> AsyncIterator[Application]:
    """Run ``app`` with long polling, stopping everything in reverse order however the test ends."""
    async with app:
        await app.start()
        try:
            await app.updater.start_polling(poll_interval=0, timeout=1)
            try:
                yield app
            finally:
                await app.updater.stop()
        finally:
            await app.stop()


@asynccontextmanager
async def bot(tg: FakeTelegram, **kwargs: object) -> AsyncIterator[Bot]:
    """A bare PTB ``Bot`` bound to the fake, for calls outside any handler."""
    async with Bot(tg.token, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot", **kwargs) as b:
        yield b


async def test_draw_command_replies_with_a_photo(tg: FakeTelegram) -> None:
    image = png(640, 384)
    seen: list[list[str]] = []

    async def draw(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(list(context.args or []))
        assert update.effective_message is not None
        await update.effective_message.reply_photo(image, caption=" ".join(context.args or []))

    app = builder(tg).build()
    app.add_handler(CommandHandler("draw", draw))
    async with polling(app):
        sent = tg.send_text(USER, "/draw cat", language_code="zh-hans")
        call = await tg.wait_for("sendPhoto")

    assert sent["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 5}]
    assert seen == [["cat"]]
    assert call.files["photo"] == image
    [photo] = tg.photos(USER)
    assert (photo.width, photo.height, photo.caption, photo.data) == (640, 384, "cat", image)
    sizes = call.result["photo"]
    assert (sizes[-1]["width"], sizes[-1]["height"]) == (640, 384)
    assert sizes[0]["width"] == 90 and all(s["file_id"] for s in sizes)
    assert "reply_parameters" not in call.params  # PTB's reply_* quotes only outside private chats by default
    # start-up order, and the offset confirmation PTB sends when the updater stops
    methods = [c.method for c in tg.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    assert tg.calls_to("getUpdates")[-1].params["offset"] == sent["update_id"] + 1


async def test_commands_addressed_to_the_bot_in_groups(tg: FakeTelegram) -> None:
    got: list[str] = []

    async def draw(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        got.append(" ".join(context.args or []))
        assert update.effective_chat is not None
        assert update.effective_message is not None
        await update.effective_message.reply_text("ok")

    app = builder(tg).build()
    app.add_handler(CommandHandler("draw", draw))
    async with polling(app):
        tg.send_text(USER, "/draw@OtherBot dog", chat_id=GROUP, chat_type="supergroup")
        update = tg.send_text(USER, f"/draw@{tg.bot_username} cat", chat_id=GROUP, chat_type="supergroup")
        call = await tg.wait_for("sendMessage")

    assert call.result["reply_to_message"]["message_id"] == update["message"]["message_id"]
    assert update["message"]["entities"][0]["length"] == len(f"/draw@{tg.bot_username}")
    assert update["message"]["chat"] == {"id": GROUP, "type": "supergroup", "title": f"Group {-GROUP}"}
    assert got == ["cat"]
    assert tg.texts(GROUP) == ["ok"]


async def test_media_group_resolves_attach_parts(tg: FakeTelegram) -> None:
    first, second = png(512, 512, "red"), png(768, 512, "blue")
    tg.add_chat(USER)
    async with bot(tg) as b:
        messages = await b.send_media_group(
            USER, [InputMediaPhoto(first, caption="a red one"), InputMediaPhoto(second)]
        )
        with pytest.raises(BadRequest, match="Too many messages"):
            await b.send_media_group(USER, [InputMediaPhoto(first)] * 11)

    assert [m.photo[-1].width for m in messages] == [512, 768]
    assert messages[0].media_group_id == messages[1].media_group_id is not None
    assert tg.albums(USER) == [[(first, "a red one"), (second, None)]]
    call = tg.calls_to("sendMediaGroup")[0]
    names = [item["media"].removeprefix("attach://") for item in call.params["media"]]
    assert all(item["media"].startswith("attach://") for item in call.params["media"])
    assert [call.files[n] for n in names] == [first, second]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB-internal
async def test_429_is_retried_by_aioratelimiter(tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", retry_after=1)
    app = builder(tg).rate_limiter(AIORateLimiter(max_retries=2)).build()
    tg.add_chat(USER)
    async with app:
        message = await app.bot.send_message(USER, "hello")

    attempts = tg.calls_to("sendMessage")
    assert [c.ok for c in attempts] == [False, True]
    assert attempts[0].error_code == 429
    assert message.text == "hello" and tg.texts(USER) == ["hello"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB-internal
async def test_429_without_rate_limiter_raises_retry_after(tg: FakeTelegram) -> None:
    tg.add_chat(USER)
    tg.fail_next("sendMessage", retry_after=7)
    async with bot(tg) as b:
        with pytest.raises(RetryAfter) as caught:
            await b.send_message(USER, "hello")
    assert caught.value._retry_after.total_seconds() == 7  # public attribute's type depends on PTB_TIMEDELTA


async def test_invalid_token_fails_at_initialize(tg: FakeTelegram) -> None:
    # PTB leaves its HTTP clients open when initialize() fails (shutdown() is then a no-op), so own them.
    requests = HTTPXRequest(), HTTPXRequest()
    app = builder(tg, token="987654:not-the-token").request(requests[0]).get_updates_request(requests[1]).build()
    try:
        with pytest.raises(InvalidToken):
            await app.initialize()
    finally:
        for request in requests:
            await request.shutdown()
    assert tg.requests[-1] == ("POST", "/bot987654:not-the-token/getMe")


async def test_long_poll_does_not_spin(tg: FakeTelegram) -> None:
    app = builder(tg).build()
    async with polling(app):
        await asyncio.sleep(1.0)
        polls = len(tg.calls_to("getUpdates"))
    assert 1 <= polls <= 3


async def test_long_poll_returns_as_soon_as_an_update_arrives(tg: FakeTelegram) -> None:
    async def poll() -> float:
        start = asyncio.get_running_loop().time()
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{tg.url}/bot{tg.token}/getUpdates", data={"timeout": "5"})
        assert answer.json()["result"][0]["message"]["text"] == "hi"
        return asyncio.get_running_loop().time() - start

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.2)
    tg.send_text(USER, "hi")
    assert await task < 1.0


async def test_webhook_delivery_with_secret_token(tg: FakeTelegram) -> None:
    port = free_port()
    replies: list[str] = []

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text is not None
        replies.append(update.effective_message.text)
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    app = builder(tg).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.start()
        try:
            await app.updater.start_webhook(
                listen="127.0.0.1",
                port=port,
                url_path="tg-hook",
                webhook_url=f"http://127.0.0.1:{port}/tg-hook",
                secret_token="s3cret-token",
            )
            try:
                tg.send_text(USER, "over the hook")
                call = await tg.wait_for("sendMessage")
                async with bot(tg) as b:
                    info = await b.get_webhook_info()
                    with pytest.raises(Exception, match="webhook is active"):
                        await b.get_updates()
            finally:
                await app.updater.stop()
        finally:
            await app.stop()

    assert tg.webhook is not None and tg.webhook["secret_token"] == "s3cret-token"
    assert replies == ["over the hook"]
    assert call.params["text"] == "echo: over the hook"
    assert info.url == f"http://127.0.0.1:{port}/tg-hook" and info.pending_update_count == 0
    assert [status for _, status in tg.webhook_deliveries] == [200]


async def test_buttons_callbacks_and_edits(tg: FakeTelegram) -> None:
    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again:1")]])
        assert update.effective_message is not None
        await update.effective_message.reply_text("Pick one", reply_markup=keyboard)

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("working")
        await query.edit_message_text(f"chose {query.data}")

    app = builder(tg).build()
    app.add_handler(CommandHandler("menu", menu))
    app.add_handler(CallbackQueryHandler(pressed))
    async with polling(app):
        tg.send_text(USER, "/menu")
        sent = (await tg.wait_for("sendMessage")).result
        with pytest.raises(ValueError, match="no button"):
            tg.press_button(USER, sent, "nope")
        tg.press_button(USER, sent, "again:1")
        await tg.wait_for("editMessageText")

    [answer] = tg.callback_answers
    assert answer["text"] == "working"
    current = tg.message(USER, sent["message_id"])
    assert current is not None and current["text"] == "chose again:1"
    assert "reply_markup" not in current  # editing without reply_markup drops the keyboard, as on Telegram
    assert "edit_date" in current


async def test_documented_limits_and_errors(tg: FakeTelegram) -> None:
    # PTB drops the "Bad Request: " prefix and str.capitalize()s the rest: "PHOTO_INVALID_DIMENSIONS"
    # surfaces as "Photo_invalid_dimensions", so adapters should compare case-insensitively.
    tg.add_chat(USER)
    async with bot(tg) as b:
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await b.send_photo(USER, png(64, 64), caption="x" * 1025)
        with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
            await b.send_photo(USER, png(2100, 100))
        with pytest.raises(BadRequest, match="File is too big"):
            await b.send_photo(USER, b"\0" * (10 * 1024 * 1024 + 1))
        with pytest.raises(BadRequest, match="Message is too long"):
            await b.send_message(USER, "x" * 4097)
        long_data = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
        with pytest.raises(BadRequest, match="Button_data_invalid"):
            await b.send_message(USER, "hi", reply_markup=long_data)
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await b.send_message(USER, "1 < 2 <br>", parse_mode="HTML")
        with pytest.raises(BadRequest, match="reserved"):
            await b.send_message(USER, "Done.", parse_mode="MarkdownV2")

        message = await b.send_message(USER, "<b>same</b> &amp; more", parse_mode="HTML")
        assert message.text == "same & more" and message.entities[0].type == "bold"
        with pytest.raises(BadRequest, match="Message is not modified"):
            await b.edit_message_text("<b>same</b> &amp; more", USER, message.message_id, parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await b.edit_message_text("new", USER, 9999)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await b.delete_message(USER, 9999)
        assert await b.delete_message(USER, message.message_id)
        assert tg.message(USER, message.message_id) is None

        tg.block(USER)
        with pytest.raises(Forbidden, match="blocked"):
            await b.send_message(USER, "still there?")
        new_id = tg.migrate_group(GROUP)
        with pytest.raises(ChatMigrated) as migrated:
            await b.send_message(GROUP, "hi")
        assert migrated.value.new_chat_id == new_id
        tg.fail_next("sendChatAction", 400, migrate_to_chat_id=-100777)
        with pytest.raises(ChatMigrated):
            await b.send_chat_action(new_id, "upload_photo")
        # a 404 (unknown method) is InvalidToken inside PTB; an initialized Bot re-raises it as this
        with pytest.raises(EndPointNotFound):
            await b.do_api_request("sendTelepathy")


async def test_commands_per_language_and_scope(tg: FakeTelegram) -> None:
    async with bot(tg) as b:
        await b.set_my_commands([BotCommand("draw", "Draw a picture")])
        await b.set_my_commands([BotCommand("draw", "画一张图")], language_code="zh")
        await b.set_my_commands([BotCommand("quota", "剩余额度")], BotCommandScopeAllPrivateChats(), "zh")
        with pytest.raises(BadRequest, match="Invalid language code specified"):
            await b.set_my_commands([BotCommand("draw", "x")], language_code="zh-hans")
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await b.set_my_commands([BotCommand("Draw", "x")])
        zh = await b.get_my_commands(language_code="zh")

    assert [(c.command, c.description) for c in zh] == [("draw", "画一张图")]
    assert tg.commands() == [{"command": "draw", "description": "Draw a picture"}]
    assert tg.visible_commands(USER, "zh-hans") == [{"command": "quota", "description": "剩余额度"}]
    assert tg.visible_commands(GROUP, "zh-hans") == [{"command": "draw", "description": "画一张图"}]
    assert tg.visible_commands(GROUP, "fr") == [{"command": "draw", "description": "Draw a picture"}]


async def test_get_file_downloads_the_sent_photo(tg: FakeTelegram) -> None:
    image = png(300, 200)
    tg.add_chat(USER)
    async with bot(tg) as b:
        message = await b.send_photo(USER, image)
        largest = await message.photo[-1].get_file()
        data = await largest.download_as_bytearray()
        thumb = await (await message.photo[0].get_file()).download_as_bytearray()
        again = await b.send_photo(USER, message.photo[-1].file_id, caption="again")

    assert bytes(data) == image
    assert Image.open(io.BytesIO(bytes(thumb))).size == (90, 60)
    assert again.caption == "again" and len(tg.photos(USER)) == 2


async def test_raw_wire_formats(tg: FakeTelegram) -> None:
    """JSON bodies, GET queries and form strings all decode; bad tokens and methods answer like Telegram."""
    api = f"{tg.url}/bot{tg.token}"
    tg.add_chat(USER)
    async with httpx.AsyncClient() as client:
        by_json = await client.post(f"{api}/sendMessage", json={"chat_id": str(USER), "text": "123"})
        by_get = await client.get(f"{api}/SENDMESSAGE", params={"chat_id": USER, "text": "true"})
        wrong_token = await client.post(f"{tg.url}/bot1:nope/getMe")
        unknown = await client.post(f"{api}/sendTelepathy")
    assert by_json.json()["result"]["text"] == "123" and by_get.json()["result"]["text"] == "true"
    assert [c.method for c in tg.calls_to("sendMessage")] == ["sendMessage", "sendMessage"]
    assert wrong_token.status_code == 401
    assert wrong_token.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found"


async def test_webhook_failures_are_retried_and_reported(tg: FakeTelegram) -> None:
    port = free_port()  # nothing listens here
    async with bot(tg) as b:
        await b.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="abc")
        with pytest.raises(BadRequest, match="Secret token contains unallowed characters"):
            await b.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="not base64=")
        tg.send_text(USER, "hello?")
        for _ in range(200):
            if tg.webhook_deliveries:
                break
            await asyncio.sleep(0.01)
        info = await b.get_webhook_info()
        assert info.pending_update_count == 1 and "Connection failed" in (info.last_error_message or "")

        await b.delete_webhook()
        [update] = await b.get_updates(timeout=1)
    assert update.message is not None and update.message.text == "hello?"
    assert tg.webhook_deliveries[0] == (update.update_id, None)


@pytest.mark.parametrize(
    ("parse_mode", "text", "error"),
    [
        ("HTML", "a < b", "Unclosed start tag"),
        ("HTML", "x<br>y", 'Unsupported start tag "br"'),
        ("HTML", "<b><i>x</b></i>", "Unmatched end tag"),
        ("HTML", "<b>x", "Can't find end tag"),
        ("MarkdownV2", "1.5", "Character '.' is reserved"),
        ("MarkdownV2", "*bold", "Can't find end of Bold entity"),
        ("Markdown", "*bold", "Can't find end of the entity"),
    ],
)
async def test_parse_errors(tg: FakeTelegram, parse_mode: str, text: str, error: str) -> None:
    tg.add_chat(USER)
    async with bot(tg) as b:
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await b.send_message(USER, text, parse_mode=parse_mode)
    assert error in (tg.calls[-1].description or "")


async def test_html_link_attributes_are_unescaped(tg: FakeTelegram) -> None:
    tg.add_chat(USER)
    async with bot(tg) as b:
        message = await b.send_message(USER, '<a href="https://x.test/?a=1&amp;b=2">go</a> 🎨 <i>it</i>', "HTML")
    assert message.text == "go 🎨 it"
    assert message.entities[0].url == "https://x.test/?a=1&b=2"
    assert (message.entities[1].offset, message.entities[1].length) == (6, 2)  # UTF-16 offsets
