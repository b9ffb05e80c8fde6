"""/draw through the real python-telegram-bot Application against the fake Bot API: replies, statuses,
photos, albums, captions, buttons."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.telegram.text import photo_caption, utf16_len
from bot.chats.refs import ChatRef, UserRef
from bot.draw.validation import parse_request
from bot.messages.i18n import render_error, t
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import (
    GROUP,
    USER,
    ZH_USER,
    PreparedBackend,
    fake_telegram,
    running,
    size_of,
    tg_settings,
)

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_album_of_two_with_caption_status_and_buttons(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        sent = tg.send_text(USER, "/draw cat --style Anime --size 768x1024 --n 2")
        album = await tg.wait_for("sendMediaGroup")
        actions = await tg.wait_for("sendMessage", lambda c: "reply_markup" in c.params)
        done = await tg.wait_for("editMessageText", lambda c: c.params["text"] == "Done: 2 pictures.")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)

    assert job is not None and job.status == "done" and job.delivered == 2
    [pictures] = tg.albums(USER)
    assert [size_of(data) for data, _ in pictures] == [(768, 1024), (768, 1024)]
    caption = pictures[0][1]
    assert caption == photo_caption(job.seeded_request, "en")
    assert caption is not None and caption.startswith("cat\n")
    assert f"Seed {job.seed}" in caption and "Anime" in caption and "768x1024" in caption
    assert pictures[1][1] is None
    # the album answers the command; the buttons follow it, answering the album
    assert album.params["reply_parameters"]["message_id"] == sent["message"]["message_id"]
    assert actions.params["reply_parameters"]["message_id"] == album.result[0]["message_id"]
    keyboard = actions.params["reply_markup"]["inline_keyboard"]
    assert [b["callback_data"] for b in keyboard[0]] == [f"again:{job.id}", f"edit:{job.id}"]
    assert [b["text"] for b in keyboard[0]] == [t("en", "button.again"), t("en", "button.edit")]
    # one status reply, edited to "done"; "upload_photo" shown before the upload
    [status] = [c for c in tg.calls_to("sendMessage") if c.result["message_id"] == done.params["message_id"]]
    assert status.params["reply_parameters"]["message_id"] == sent["message"]["message_id"]
    methods = [c.method for c in tg.calls]
    assert methods.index("sendChatAction") < methods.index("sendMediaGroup")
    assert tg.calls_to("sendChatAction")[0].params["action"] == "upload_photo"
    assert "parse_mode" not in album.params["media"][0]


async def test_single_photo_carries_the_buttons(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw a <b>bold</b> & *fox* 🦊 --seed 7")
        call = await tg.wait_for("sendPhoto")
        await tg.wait_for("editMessageText", lambda c: c.params["text"] == "Done: 1 picture.")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)

    assert job is not None
    [photo] = tg.photos(USER)
    assert (photo.width, photo.height) == (1024, 1024)
    # plain text: markup in a prompt is shown as typed, never parsed
    assert photo.caption is not None and photo.caption.startswith("a <b>bold</b> & *fox* 🦊\nSeed 7 ")
    assert "parse_mode" not in call.params
    assert [b["callback_data"] for b in call.params["reply_markup"]["inline_keyboard"][0]] == ["again:1", "edit:1"]
    assert tg.calls_to("sendMediaGroup") == []


async def test_long_prompt_caption_fits_1024_utf16_units(tg: FakeTelegram, tmp_path: Path) -> None:
    prompt = "🐱 cat " * 170  # 1020 characters, ~1190 UTF-16 units
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, f"/draw {prompt.strip()} --seed 3")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    [photo] = tg.photos(USER)
    assert job is not None and job.status == "done"
    assert photo.caption is not None and utf16_len(photo.caption) <= 1024
    assert photo.caption.endswith(photo_caption(job.seeded_request, "en").splitlines()[-1])
    assert "…" in photo.caption and "Seed 3" in photo.caption


@pytest.mark.parametrize(
    ("user", "language_code", "lang"), [(USER, "en", "en"), (ZH_USER, "zh-hans", "zh"), (USER, "fr", "en")]
)
async def test_invalid_draw_is_answered_in_the_users_language(
    tg: FakeTelegram, tmp_path: Path, user: int, language_code: str, lang: str
) -> None:
    text = "/draw a cat --style Nope"
    with pytest.raises(Exception) as expected:
        parse_request(text)
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        sent = tg.send_text(user, text, language_code=language_code)
        reply = await tg.wait_for("sendMessage")
        assert await bot.core.get_job(1) is None
    assert reply.params["text"] == render_error(expected.value, lang)  # type: ignore[arg-type]
    assert reply.params["reply_parameters"]["message_id"] == sent["message"]["message_id"]
    assert tg.photos() == [] and tg.albums() == []


async def test_lang_command_overrides_the_platform_language(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()):
        tg.send_text(USER, "/lang zh")
        await tg.wait_for("sendMessage")
        tg.send_text(USER, "/draw")
        reply = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/lang auto")
        await tg.wait_for("sendMessage")
        tg.send_text(USER, "/draw")
        again = await tg.wait_for("sendMessage")
    assert reply.params["text"] == t("zh", "error.empty_prompt")
    assert again.params["text"] == t("en", "error.empty_prompt")


async def test_group_draw_addressed_to_the_bot(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw@OtherBot dog", chat_id=GROUP, chat_type="supergroup")
        sent = tg.send_text(USER, f"/draw@{tg.bot_username} cat", chat_id=GROUP, chat_type="supergroup")
        call = await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
        assert await bot.core.get_job(2) is None  # the other bot's command was not ours

    assert job is not None and job.group_chat and job.chat == f"telegram:{GROUP}"
    assert job.request.prompt == "cat"
    assert call.params["chat_id"] == GROUP
    assert call.params["reply_parameters"]["message_id"] == sent["message"]["message_id"]
    assert len(tg.photos(GROUP)) == 1


async def test_draw_in_reply_uses_the_replied_text_as_prompt(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        idea = tg.send_text(ZH_USER, "a red fox in the snow", chat_id=GROUP, chat_type="group")
        tg.send_text(USER, "/draw --style Anime", chat_id=GROUP, chat_type="group", reply_to=idea["message"])
        await tg.wait_for("sendPhoto")
        command = tg.send_text(ZH_USER, "/draw a blue bird --seed 5", chat_id=GROUP, chat_type="group")
        await tg.wait_for("sendPhoto")
        tg.send_text(USER, "/draw --n 2", chat_id=GROUP, chat_type="group", reply_to=command["message"])
        await tg.wait_for("sendMediaGroup")
        await bot.core.wait_idle()
        first, _, third = [await bot.core.get_job(i) for i in (1, 2, 3)]

    assert first is not None and (first.request.prompt, first.request.style) == ("a red fox in the snow", "Anime")
    assert third is not None and third.request.prompt == "a blue bird"
    assert (third.request.seed, third.request.n) == (5, 2)  # the replied command's options, and the user's own


async def test_text_commands_and_menus(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, admins=frozenset({f"telegram:{ZH_USER}"}))
    async with running(settings, PreparedBackend()) as bot:
        tg.send_text(USER, "/help")
        help_reply = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/quota")
        quota = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/frobnicate")
        unknown = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/admin stats")
        refused = await tg.wait_for("sendMessage")
        expected_help = await bot.core.handle_command(
            UserRef("telegram", str(USER), "en"), ChatRef("telegram", str(USER), False), "help"
        )

    assert help_reply.params["text"] == expected_help
    assert "/draw" in help_reply.params["text"]
    assert quota.params["text"].startswith(t("en", "cmd.quota.title_own", user=f"telegram:{USER}", day="")[:6])
    assert unknown.params["text"] == t("en", "error.command_unknown", command="/frobnicate")
    assert refused.params["text"] == t("en", "error.admin_only")
    en = [c["command"] for c in tg.visible_commands(USER, "en")]
    assert en == ["draw", "quota", "lang", "cancel", "settings", "help", "start"]
    assert tg.visible_commands(USER, "zh-hans")[0] == {"command": "draw", "description": t("zh", "menu.draw")}
    assert tg.visible_commands(USER, "fr")[0]["description"] == t("en", "menu.draw")
    assert "admin" in [c["command"] for c in tg.visible_commands(ZH_USER, "zh-hans")]
    assert "admin" not in [c["command"] for c in tg.visible_commands(GROUP, "zh-hans")]


async def test_many_users_at_once_with_a_slow_backend(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    users = [5000 + i for i in range(20)]
    settings = tg_settings(tmp_path, tg, backend_concurrency=2)
    async with running(settings, backend) as bot:
        for user in users:
            tg.send_text(user, f"/draw picture for {user} --size 768x768")
        # Every command is answered (a queue position) while the first generations are still held.
        statuses = [await tg.wait_for("sendMessage") for _ in users]
        assert len(backend.started) == 2
        backend.release()
        for _ in users:
            await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        jobs = [await bot.core.get_job(i) for i in range(1, 21)]
        shared = bot.core.shared

    assert sorted(c.params["chat_id"] for c in statuses) == users
    texts = {c.params["text"] for c in statuses}
    if shared:
        # The shared queue tells a place at arrival from the database while other admissions commit and
        # other claims run (the next pass, a second later, corrects it): places, not these exact ones.
        assert all(text == "Drawing…" or re.fullmatch(r"#\d+ in the queue", text) for text in texts), texts
    else:
        assert texts >= {"Drawing…", "#1 in the queue", "#18 in the queue"}
    assert all(job is not None and job.status == "done" for job in jobs)
    assert sorted(p.chat_id for p in tg.photos()) == users
    assert all(p.caption is not None and p.caption.startswith(f"picture for {p.chat_id}\n") for p in tg.photos())


async def test_admin_acts_on_the_user_they_reply_to(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, admins=frozenset({f"telegram:{ZH_USER}"}))
    async with running(settings, PreparedBackend()) as bot:
        offender = tg.send_text(USER, "hello all", chat_id=GROUP, chat_type="supergroup")
        tg.send_text(ZH_USER, "/admin ban", chat_id=GROUP, chat_type="supergroup", reply_to=offender["message"])
        banned = await tg.wait_for("sendMessage")
        tg.send_text(USER, "/draw cat", chat_id=GROUP, chat_type="supergroup")
        refused = await tg.wait_for("sendMessage")
        assert await bot.core.get_job(1) is None
    assert banned.params["text"] == t("en", "cmd.admin.ban", user=f"telegram:{USER}")
    assert refused.params["text"] == t("en", "error.banned")


async def test_an_edited_command_does_not_draw_again(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        sent = tg.send_text(USER, "/draw cat")
        await tg.wait_for("sendPhoto")
        edited = {**sent["message"], "text": "/draw dog", "edit_date": sent["message"]["date"] + 5}
        tg.enqueue({"edited_message": edited})
        tg.send_text(USER, "/draw bird")  # its handler starts after the edit was looked at
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        jobs = [await bot.core.get_job(i) for i in (1, 2, 3)]
    assert [job.request.prompt if job else None for job in jobs] == ["cat", "bird", None]
    assert len(tg.photos(USER)) == 2
