"""Drawing from a picture on Telegram, through the real python-telegram-bot against the fake Bot API: "/draw" as a
photo's caption, as a reply to a photo or to an image sent as a file; the picture is fetched by its file_id (again
for Again), checked before anything else, fitted to the size drawn, and the caption says so. Refusals come in the
user's language and charge nothing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.draw.request import DrawRequest
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import USER, ZH_USER, PreparedBackend, fake_telegram, noise_png, running, size_of
from tests.telegram_support import tg_settings as settings_for


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


def photo(width: int, height: int) -> bytes:
    """Left half red, right half blue: a crop or a flip shows in the fitted picture's colours."""
    img = Image.new("RGB", (width, height), (220, 20, 20))
    img.paste((20, 20, 220), (width // 2, 0, width, height))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def colours(data: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        return rgb.getpixel((5, rgb.height // 2)), rgb.getpixel((rgb.width - 5, rgb.height // 2))  # type: ignore[return-value]


def near(colour: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(colour, expected, strict=True))


async def test_a_photo_captioned_draw_is_drawn_from_the_photo(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend(pictures=True)
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        update = tg.send_picture(USER, photo(1280, 720), "/draw the same scene at night --strength 0.45")
        sent = await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
        kept = await bot.core.jobs.picture(1)

    request: DrawRequest = backend.requests[0]
    largest = update["message"]["photo"][-1]
    assert request.source is not None and request.source.ref == largest["file_id"]
    assert request.size == "1024x576" and request.strength == 0.45  # the photo's shape, no --size typed
    assert size_of(request.source.data) == (1024, 576) and request.source.original == "1280x720"
    left, right = colours(request.source.data)
    assert near(left, (220, 20, 20)) and near(right, (20, 20, 220))
    caption = sent.params["caption"]
    assert "from a picture (1280x720 fitted to 1024x576), strength 0.45" in caption
    assert job is not None and job.status == "done" and job.request.source is not None
    assert kept is None  # Telegram keeps the photo: the job keeps its file_id only
    assert "data" not in job.request.to_json()


async def test_a_reply_to_a_photo_or_an_image_file_draws_from_it(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend(pictures=True)
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        posted = tg.send_picture(USER, photo(600, 800), "my dog")
        tg.send_text(USER, "/draw --size 768x1024", reply_to=posted["message"])
        await tg.wait_for("sendPhoto")
        document = tg.send_picture(USER, photo(1000, 1000), file_name="sketch.png")
        tg.send_text(USER, "/draw a castle", reply_to=document["message"])
        await tg.wait_for("sendPhoto", lambda c: len(tg.calls_to("sendPhoto")) == 2)
        await bot.core.wait_idle()

    by_reply, by_file = backend.requests
    assert by_reply.prompt == "my dog" and by_reply.strength == 0.6  # the caption is the prompt; the default strength
    assert by_reply.source is not None and size_of(by_reply.source.data) == (768, 1024)
    assert by_file.source is not None and by_file.source.ref == document["message"]["document"]["file_id"]
    assert by_file.size == "1024x1024" and size_of(by_file.source.data) == (1024, 1024)


async def test_again_fetches_the_same_picture_again(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend(pictures=True)
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        tg.send_picture(USER, photo(800, 800), "/draw a watercolour --strength 0.3")
        first = await tg.wait_for("sendPhoto")
        tg.press_button(USER, first.result, "again:1")
        await tg.wait_for("sendPhoto", lambda c: c is not first)
        await bot.core.wait_idle()

    one, two = backend.requests
    assert one.source is not None and two.source is not None
    assert two.source.ref == one.source.ref and two.strength == 0.3 and two.seed != one.seed
    assert colours(two.source.data) == colours(one.source.data)
    # Each job fetched it by its file_id when admitted (to check it) and when drawn: nothing of it was stored.
    assert {c.params["file_id"] for c in tg.calls_to("getFile")} == {one.source.ref}
    assert len(tg.calls_to("getFile")) == 4


@pytest.mark.parametrize("lang_user", [USER, ZH_USER])
async def test_bad_pictures_are_refused_in_the_users_language(tg: FakeTelegram, tmp_path: Path, lang_user: int) -> None:
    backend = PreparedBackend(pictures=True)
    settings = settings_for(tmp_path, tg, rate_per_minute=0, picture_max_bytes=4 * 2**20)
    lang = "zh" if lang_user == ZH_USER else "en"
    async with running(settings, backend) as bot:
        tg.send_picture(lang_user, b"\x89PNG not really", "/draw a cat", file_name="cat.png", language_code=lang)
        garbage = await tg.wait_for("sendMessage")
        tg.send_picture(lang_user, noise_png(1400, 1400), "/draw a cat", file_name="big.png", language_code=lang)
        big = await tg.wait_for("sendMessage", lambda c: c is not garbage)
        tg.send_text(lang_user, "/draw a cat --strength 0.5", language_code=lang)
        strength = await tg.wait_for("sendMessage", lambda c: c not in (garbage, big))
        jobs = [await bot.core.get_job(i) for i in (1, 2, 3)]

    texts = [garbage.params["text"], big.params["text"], strength.params["text"]]
    if lang == "en":
        assert "not a picture the bot can read" in texts[0] and "Nothing was charged" in texts[0]
        assert "up to 4 MB" in texts[1]
        assert "--strength is for drawing from a picture" in texts[2]
    else:
        assert "不是机器人能读取的图片" in texts[0] and "本次不扣额度" in texts[0]
        assert "最多接受 4 MB" in texts[1]
        assert "仅用于以图生图" in texts[2]
    assert jobs == [None, None, None] and backend.requests == []
    assert len(tg.calls_to("getFile")) == 1  # the big file was refused by its size, before downloading it


async def test_a_service_that_cannot_draw_from_pictures_says_so(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend()
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend):
        tg.send_picture(USER, photo(640, 640), "/draw a cat")
        answer = await tg.wait_for("sendMessage")
    assert "cannot draw from a picture" in answer.params["text"] and not tg.calls_to("getFile")


def rows(message: dict) -> list[list[str]]:  # type: ignore[type-arg]
    return [[b["callback_data"] for b in row] for row in message.get("reply_markup", {}).get("inline_keyboard", [])]


async def test_upscale_and_variations_of_a_photo(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend(pictures=True)
    settings = settings_for(tmp_path, tg, rate_per_minute=0, upscale_cost=2, variation_strength=0.3)
    async with running(settings, backend) as bot:
        tg.send_text(USER, "/draw a lighthouse --size 768x1024 --seed 5")
        first = await tg.wait_for("sendPhoto")
        tg.press_button(ZH_USER, first.result, "up:1:0")  # not theirs: the job does not exist for them
        refused = await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text"))
        tg.press_button(USER, first.result, "up:1:0")
        upscaled = await tg.wait_for("sendPhoto", lambda c: c is not first)
        tg.press_button(USER, first.result, "vary:1:0")
        varied = await tg.wait_for("sendPhoto", lambda c: c not in (first, upscaled))
        await bot.core.wait_idle()
        jobs = [await bot.core.get_job(i) for i in (1, 2, 3)]

    assert rows(first.result) == [["again:1", "edit:1"], ["up:1:0"], ["vary:1:0"]]
    assert refused.params["text"] == "There is no picture request #1 of yours."
    photo_id = first.result["photo"][-1]["file_id"]
    _, up, vary = backend.requests
    assert up.task == "upscale" and up.size == "1536x2048" and up.n == 1
    assert up.source is not None and up.source.ref == photo_id and size_of(up.source.data) == (768, 1024)
    assert size_of(tg.photos(USER)[1].data) == (1536, 2048) and "Upscaled 2x to 1536x2048" in upscaled.params["caption"]
    assert rows(upscaled.result) == []  # an upscaled picture is an end
    assert vary.task == "draw" and vary.strength == 0.3 and vary.seed != 5 and vary.size == "768x1024"
    assert vary.source is not None and vary.source.ref == photo_id and vary.prompt == "a lighthouse"
    assert "from a picture, strength 0.3" in varied.params["caption"]
    one, two, three = jobs
    assert one is not None and two is not None and three is not None
    assert (two.parent_id, two.charged, two.status) == (1, 2, "done") and three.charged == 1


async def test_an_albums_buttons_name_each_picture(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = PreparedBackend(pictures=True)
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
        tg.send_text(USER, "/draw two cats --n 2 --size 768x768")
        album = await tg.wait_for("sendMediaGroup")
        actions = await tg.wait_for("sendMessage", lambda c: "reply_markup" in c.params)
        tg.press_button(USER, actions.result, "up:1:1")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()

    assert rows(actions.result)[1:] == [["up:1:0", "up:1:1"], ["vary:1:0", "vary:1:1"]]
    second = album.result[1]["photo"][-1]["file_id"]
    assert backend.requests[1].source is not None and backend.requests[1].source.ref == second


async def test_no_upscale_or_variations_where_the_service_cannot(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), PreparedBackend()):
        tg.send_text(USER, "/draw a cat")
        sent = await tg.wait_for("sendPhoto")
        tg.press_button(USER, sent.result, "again:1")
        await tg.wait_for("sendPhoto", lambda c: c is not sent)
    assert rows(sent.result) == [["again:1", "edit:1"]]


async def test_a_job_drawn_from_a_photo_survives_a_restart(tg: FakeTelegram, tmp_path: Path) -> None:
    """Telegram keeps the photo: the job keeps only its file_id, and the next start fetches it again."""
    settings = settings_for(tmp_path, tg, rate_per_minute=0)
    held = GatedBackend(hold=True, pictures=True)
    async with running(settings, held) as bot:
        tg.send_picture(USER, photo(900, 900), "/draw a mosaic --strength 0.8")
        await held.wait_started(1)
    drawing = GatedBackend(pictures=True)
    async with running(settings, drawing) as bot:
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    (request,) = drawing.started
    assert job is not None and job.status == "done" and job.attempts == 2
    assert request.source is not None and request.strength == 0.8 and size_of(request.source.data) == (1024, 1024)
    assert colours(request.source.data) == colours(held.started[0].source.data)  # type: ignore[union-attr]


async def test_a_picture_that_is_gone_when_the_job_runs_fails_it_refunded(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, tg, rate_per_minute=0)
    held = GatedBackend(hold=True, pictures=True)
    async with running(settings, held) as bot:
        tg.send_picture(USER, photo(640, 640), "/draw a cat")
        await held.wait_started(1)
    tg.fail_next("getFile", 400, "Bad Request: wrong file_id or the file is temporarily unavailable")
    async with running(settings, GatedBackend(pictures=True)) as bot:
        notice = await tg.wait_for("sendMessage", lambda c: "no longer available" in c.params.get("text", ""))
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert job is not None and (job.status, job.error, job.charged) == ("failed", "picture_gone", 0)
    assert "Nothing was charged" in notice.params["text"] or "refunded" in notice.params["text"].casefold()


async def test_help_says_how_to_draw_from_a_picture_where_the_service_can(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, tg, rate_per_minute=0), PreparedBackend(pictures=True)):
        tg.send_text(ZH_USER, "/help", language_code="zh-hans")
        answer = await tg.wait_for("sendMessage")
    text = answer.params["text"]
    assert "以图生图" in text and "--strength" in text and "默认 0.6" in text
