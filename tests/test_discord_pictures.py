"""Drawing from a picture on Discord, through the real discord.py client against the fake Discord: /draw's
``image`` attachment option (its signed link runs out, so the job keeps the picture until it ends, and a restart
draws from the kept bytes), and "Draw from this image" on a message, whose short form asks for the text (the
message's picture is fetched again, with a fresh link, whenever needed)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from adapters.discord.views import EDIT_TEXT_ID
from tests.discord_support import fake_discord, image_size, running_bot
from tests.pipeline_support import GatedBackend


def picture(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def colour_of(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").getpixel((img.width // 2, img.height // 2))  # type: ignore[return-value]


async def test_the_image_option_draws_from_the_attachment_and_survives_a_restart(tmp_path: Path) -> None:
    held = GatedBackend(hold=True, pictures=True)
    db = tmp_path / "db"
    async with fake_discord() as dc:
        async with running_bot(dc, db, held) as bot:
            options = {o["name"]: o for o in dc.command("draw")["options"]}
            rec = await dc.invoke_command(
                "draw", {"prompt": "the same at night", "image": ("photo.png", picture(900, 1200)), "strength": 0.4}
            )
            await held.wait_started(1)
            kept = await bot.core.jobs.picture(1)
        (attachment,) = rec.payload["data"]["resolved"]["attachments"].values()
        dc.expire_attachment(dc._blobs[attachment["id"]])  # a day later: the link is dead
        drawing = GatedBackend(pictures=True)
        async with running_bot(dc, db, drawing) as bot:
            await bot.delivered(rec)
            await bot.core.wait_idle()
            (job,) = await bot.jobs()
            after = await bot.core.jobs.picture(1)

    assert options["image"]["type"] == 11 and options["image"]["name_localizations"]["zh-CN"] == "图片"
    request = drawing.started[0]
    assert request.source is not None and request.source.kept and request.strength == 0.4
    assert request.size == "768x1024" and image_size(request.source.data) == (768, 1024)
    assert kept is not None and image_size(kept) == (768, 1024) and colour_of(request.source.data) == (200, 30, 30)
    assert job.status == "done" and after is None  # the kept picture went with the job's end
    assert "from a picture (900x1200 fitted to 768x1024), strength 0.4" in rec.original.content  # type: ignore[union-attr]


async def test_draw_from_this_image_on_a_message(tmp_path: Path) -> None:
    backend = GatedBackend(pictures=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        menu = dc.command("Draw from this image", type=3)
        posted = dc.post_as_user("look at my cat", [("cat.jpg", picture(1000, 1000, (30, 30, 200)))])
        opened = await dc.invoke_message_command("Draw from this image", posted)
        await dc.wait_for(lambda: opened.modal)
        dc.expire_attachment(posted.attachments[0])  # the link in the message the menu saw is dead now
        rec = await dc.submit_modal(opened, {EDIT_TEXT_ID: "a cat astronaut --strength 0.7"})
        await bot.delivered(rec)
        await bot.core.wait_idle()
        (job,) = await bot.jobs()
        kept = await bot.core.jobs.picture(job.id)
        bare = dc.post_as_user("no picture here")
        refused = await dc.invoke_message_command("Draw from this image", bare, locale="zh-CN")
        answer = await bot.replied(refused)

    assert menu["name_localizations"]["zh-CN"] == "以此图作画"
    assert opened.modal is not None and opened.modal["title"] == "Draw from this image"
    request = backend.started[0]
    assert request.prompt == "a cat astronaut" and request.strength == 0.7
    assert request.source is not None and request.source.ref.startswith(f"msg:{posted.channel_id}:{posted.id}:")
    assert colour_of(request.source.data) == (30, 30, 200) and not request.source.kept
    assert job.status == "done" and kept is None  # the message keeps the picture: the job did not
    assert "没有可用的图片" in answer.content and answer.ephemeral


async def test_again_after_the_link_ran_out_says_the_picture_is_gone(tmp_path: Path) -> None:
    backend = GatedBackend(pictures=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a boat", "image": ("boat.png", picture(640, 640))})
        message = await bot.delivered(rec)
        await bot.core.wait_idle()
        (attachment,) = rec.payload["data"]["resolved"]["attachments"].values()
        dc.expire_attachment(dc._blobs[attachment["id"]])
        again = await dc.click_button("sdbot:again:1", message)
        answer = await bot.replied(again)
        jobs = await bot.jobs()

    assert "no longer available" in answer.content and "Nothing was charged" in answer.content
    assert [job.id for job in jobs] == [1]


async def test_no_image_option_or_menu_on_a_service_that_cannot_draw_from_pictures(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", GatedBackend()):
        options = {o["name"] for o in dc.command("draw")["options"]}
        menus = [c["name"] for c in dc.commands if c.get("type") == 3]
    assert "image" not in options and "strength" not in options and menus == []


async def test_upscale_and_variations_buttons_under_the_pictures(tmp_path: Path) -> None:
    backend = GatedBackend(pictures=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend, upscale_cost=3) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "two owls", "n": 2, "size": "768x768"})
        message = await bot.delivered(rec, 2)
        up = await dc.click_button("sdbot:up:1:1", message)
        upscaled = await bot.delivered(up)
        stranger = await dc.click_button("sdbot:vary:1:0", message, user_id=dc.USER_ID + 1)
        refused = await bot.replied(stranger)
        vary = await dc.click_button("sdbot:vary:1:0", message)
        await bot.delivered(vary, 2)
        await bot.core.wait_idle()
        jobs = await bot.jobs()

    assert [c for c in message.custom_ids if ":up:" in c or ":vary:" in c] == [
        "sdbot:up:1:0",
        "sdbot:up:1:1",
        "sdbot:vary:1:0",
        "sdbot:vary:1:1",
    ]
    _, upscale, variation = backend.started
    second = message.attachments[1]
    assert upscale.task == "upscale" and upscale.size == "1536x1536" and upscale.source is not None
    assert upscale.source.ref == f"msg:{message.channel_id}:{message.id}:{second.id}"
    assert upscale.source.data and image_size(upscale.source.data) == (768, 768)
    assert image_size(upscaled.attachments[0].data) == (1536, 1536) and upscaled.custom_ids == []
    assert "There is no picture request #1 of yours." in refused.content and refused.ephemeral
    assert variation.strength == 0.35 and variation.n == 2 and variation.source is not None
    assert [(j.id, j.parent_id, j.charged, j.status) for j in jobs] == [
        (1, None, 2, "done"),
        (2, 1, 3, "done"),
        (3, 1, 2, "done"),
    ]


async def test_a_forged_form_reads_no_other_channel_and_a_missing_permission_is_named(tmp_path: Path) -> None:
    backend = GatedBackend(pictures=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        posted = dc.post_as_user("my cat", [("cat.png", picture(700, 700))])
        opened = await dc.invoke_message_command("Draw from this image", posted)
        await dc.wait_for(lambda: opened.modal)
        # A modified client changes the form's id: another channel's message, or any link, to draw from.
        for forged in (f"msg:{posted.channel_id + 1}:{posted.id}:1", "url:http://127.0.0.1:1/secret.png"):
            opened.modal["custom_id"] = "sdbot:picture-form:" + forged  # type: ignore[index]
            rec = await dc.submit_modal(opened, {EDIT_TEXT_ID: "a cat"})
            answer = await bot.replied(rec)
            assert "no longer available" in answer.content and answer.ephemeral
        reads = len(dc.calls_to("GET", r"/channels/\d+/messages/\d+$"))
        dc.fail_next(
            "GET", r"/channels/\d+/messages/\d+$", status=403, body={"message": "Missing Access", "code": 50001}
        )
        opened = await dc.invoke_message_command("Draw from this image", posted)
        await dc.wait_for(lambda: opened.modal)
        rec = await dc.submit_modal(opened, {EDIT_TEXT_ID: "a cat"})
        answer = await bot.replied(rec)
        jobs = await bot.jobs()

    assert reads == 0 and backend.started == [] and jobs == []
    assert "Read Message History" in answer.content and "Nothing was charged" in answer.content
