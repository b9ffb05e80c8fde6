"""/draw through the real discord.py client against the fake Discord: typed options and the text grammar,
deferred public answers edited as the job moves, images as multipart attachments, private refusals."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bot.draw.capabilities import SEED
from bot.draw.grammar import DrawArgs
from bot.draw.validation import validate
from bot.errors import DrawError
from bot.messages.i18n import render_error, t
from tests.discord_support import fake_discord, image_size, running_bot
from tests.fakes.discord import EPHEMERAL, FakeDiscord, FakeInteraction
from tests.pipeline_support import GatedBackend

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")

GATED_CAPS = dataclasses.replace(SEED, backend="gated")


def refusal_for(options: dict[str, object], lang: str = "en") -> str:
    """What the core says about these raw options (the prompt is fine)."""
    with pytest.raises(DrawError) as caught:
        validate(DrawArgs("a cat", dict(options)), GATED_CAPS)  # type: ignore[arg-type]
    return render_error(caught.value, lang)  # type: ignore[arg-type]


async def refused(dc: FakeDiscord, rec: FakeInteraction) -> str:
    message = await dc.wait_for(lambda: rec.original)
    assert rec.response_type == 4 and message.ephemeral and rec.callbacks[0].json["data"]["flags"] == EPHEMERAL
    assert message not in dc.channel_messages(dc.CHANNEL_ID)
    return message.content


async def test_typed_options_deliver_n_images_as_attachments_after_a_deferred_answer(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        options = {"prompt": "a red fox", "style": "Anime", "size": "768x1024", "n": 3, "steps": 12, "seed": 7,
                   "cfg": 6.5, "negative": "blurry"}  # fmt: skip
        rec = await dc.invoke_command("draw", options)
        await dc.wait_for(lambda: rec.original and rec.original.content == t("en", "job.running"))
        assert rec.callbacks[0].json == {"type": 5}  # deferred, public
        backend.release()
        message = await bot.delivered(rec, 3)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    assert job.status == "done" and (job.images, job.charged, job.delivered) == (3, 3, 3)
    request = job.request
    assert (request.style, request.size, request.n, request.steps, request.seed, request.cfg_scale) == (
        "Anime", "768x1024", 3, 12, 7, 6.5,
    )  # fmt: skip
    assert request.prompt == "a red fox" and request.negative_prompt == "blurry"
    assert not message.ephemeral and not message.loading and dc.channel_messages(dc.CHANNEL_ID) == [message]
    assert [a.filename for a in message.attachments] == [f"sdbot-{job.id}-{i}.png" for i in (1, 2, 3)]
    assert all(image_size(a.data) == (768, 1024) and a.content_type == "image/png" for a in message.attachments)
    lines = message.content.splitlines()
    assert lines[0] == "a red fox" and "Negative: blurry" in lines[1]
    assert "Seed 7 · Anime · 768x1024 · 12 steps · Euler a · CFG 6.5" in lines[-1]
    assert message.custom_ids == [f"sdbot:again:{job.id}", f"sdbot:edit:{job.id}"]
    assert message.find_component(f"sdbot:again:{job.id}")["label"] == t("en", "button.again")
    final = dc.calls_to("PATCH", r"/messages/@original$")[-1]
    assert sorted(final.files) == ["files[0]", "files[1]", "files[2]"]  # one multipart request
    assert final.json["allowed_mentions"] == {"parse": []}
    contents = [c.json.get("content") for c in dc.calls_to("PATCH", r"/messages/@original$")]
    assert contents[0] in (t("en", "job.queued", position=1), t("en", "job.running"))


async def test_the_prompt_takes_the_text_grammar_of_a_pasted_telegram_command(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        text = "/draw a lighthouse at dawn —style Pixel Art --n 2 --negative text, blurry"
        rec = await dc.invoke_command("draw", {"prompt": text, "seed": 42}, locale="zh-CN")
        message = await bot.delivered(rec, 2)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    request = job.request
    assert (request.prompt, request.style, request.n, request.seed) == ("a lighthouse at dawn", "Pixel Art", 2, 42)
    assert request.negative_prompt == "text, blurry" and job.lang == "zh"
    assert "Pixel Art（像素艺术）" in message.content  # the caption speaks the user's language
    assert message.find_component(f"sdbot:again:{job.id}")["label"] == t("zh", "button.again")


async def test_a_typed_option_repeating_an_inline_flag_is_a_private_duplicate_option(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat --n 2", "n": 3}, locale="zh-TW")
        text = await refused(dc, rec)
        assert await bot.jobs() == []

    assert text == render_error(DrawError("duplicate_option", option="n"), "zh")


@pytest.mark.parametrize(
    "options",
    [
        {"style": "Vaporwave"},
        {"size": "999x999"},
        {"sampler": "Turbo"},
        {"n": 9},
        {"steps": 1000},
        {"cfg": 99.5},
        {"seed": -1},
        {"n": "two"},
    ],
)
async def test_values_outside_discords_choices_and_ranges_are_refused_by_the_core(
    tmp_path: Path, options: dict[str, object]
) -> None:
    """A modified client can send anything: discord.py passes it on, the core checks it."""
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat", **options})
        text = await refused(dc, rec)
        assert await bot.jobs() == []

    assert text == refusal_for(options)


async def test_quota_refusals_are_private_and_in_the_users_language(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", daily_images=2) as bot:
        first = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
        await bot.delivered(first, 2)
        zh = await dc.invoke_command("draw", {"prompt": "a dog"}, locale="zh-CN")
        zh_text = await refused(dc, zh)
        en = await dc.invoke_command("draw", {"prompt": "a dog"}, locale="en-GB")
        en_text = await refused(dc, en)
        # A language Discord offers but we do not speak: the server's language decides.
        fr = await dc.invoke_command("draw", {"prompt": "a dog"}, locale="fr", guild_locale="zh-CN")
        fr_text = await refused(dc, fr)
        jobs = await bot.jobs()

    assert len(jobs) == 1 and jobs[0].charged == 2
    assert zh_text.startswith("你今天已用 2 张图（每日上限 2 张），本次需要 1 张")
    assert en_text.startswith("You") and "2" in en_text and "你" not in en_text
    assert fr_text.startswith("你今天已用 2 张图")


async def test_a_channel_where_the_bot_may_not_post_pictures_is_refused_clearly(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        dc.missing_permissions.add(dc.CHANNEL_ID)
        rec = await dc.invoke_command("draw", {"prompt": "a cat"}, locale="zh-CN")
        text = await refused(dc, rec)
        assert await bot.jobs() == []

    assert text == t("zh", "error.platform_forbidden")


async def test_images_over_the_file_size_limit_are_re_encoded_to_fit(tmp_path: Path) -> None:
    limit = 10_000
    async with fake_discord(file_size_limit=limit) as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
        message = await bot.delivered(rec, 2)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()
        originals = await bot.backend.generate(job.seeded_request, user="x")

    assert all(len(image.data) > limit for image in originals)  # the PNGs alone would have been refused
    assert [a.filename for a in message.attachments] == [f"sdbot-{job.id}-1.jpg", f"sdbot-{job.id}-2.jpg"]
    assert all(a.size <= limit and a.content_type == "image/jpeg" for a in message.attachments)
    assert job.status == "done"


async def test_mentions_in_a_prompt_never_ping(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "@everyone look at <@123> *now*"})
        message = await bot.delivered(rec)

    assert all(c.json.get("allowed_mentions") == {"parse": []} for c in dc.calls_to("PATCH", r"@original$"))
    assert message.content.startswith("@everyone look at <@123> \\*now\\*")


async def test_draw_in_a_direct_message(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat"}, dm=True, user_id=77)
        message = await bot.delivered(rec)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    assert message.guild_id is None and not job.group_chat and job.user == "discord:77"


async def test_a_burst_of_commands_is_every_one_served(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", daily_images=100) as bot:
        users = range(500, 512)
        recs = await asyncio.gather(*(dc.invoke_command("draw", {"prompt": "a cat"}, user_id=u) for u in users))
        await asyncio.gather(*(bot.delivered(rec) for rec in recs))
        jobs = await bot.jobs()

    assert sorted(job.user for job in jobs) == [f"discord:{u}" for u in users]
    assert all(job.status == "done" and job.delivered == 1 for job in jobs)
