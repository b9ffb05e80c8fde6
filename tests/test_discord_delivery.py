"""Delivery beyond the happy path: restarts (buttons and recovered jobs), jobs outliving the interaction
token, Discord's 429s, failures and missing permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.discord.route import Route
from bot.commands import describe_failure
from bot.errors import BackendError, SdbotError
from bot.messages.i18n import Lang, render_error, t
from tests.discord_support import QuietBackend, fake_discord, running_bot, stored_jobs
from tests.fakes.discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.pipeline_support import GatedBackend

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


async def running(dc: FakeDiscord, rec: FakeInteraction, lang: Lang = "en") -> FakeMessage:
    """Wait until the job's answer says it is being drawn."""
    text = t(lang, "job.running")
    return await dc.wait_for(lambda: rec.original if rec.original and rec.original.content == text else None)


async def test_the_again_button_works_after_a_restart(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        async with running_bot(dc, tmp_path / "db") as bot:
            rec = await dc.invoke_command("draw", {"prompt": "a cat", "style": "Anime", "n": 2})
            message = await bot.delivered(rec, 2)
            (first,) = await bot.jobs()
        assert not dc.is_connected
        edits = message.edits

        async with running_bot(dc, tmp_path / "db") as bot:
            again = await dc.click_button(f"sdbot:again:{first.id}", message)
            result = await bot.delivered(again, 2)
            stranger = await dc.click_button(f"sdbot:again:{first.id}", message, user_id=4242, locale="zh-CN")
            refusal = await bot.replied(stranger)
            jobs = await bot.jobs()

    second = jobs[1]
    assert len(jobs) == 2 and second.parent_id == first.id and second.status == "done"
    assert second.request.with_seed(None) == first.request.with_seed(None)
    assert again.callbacks[0].json == {"type": 5}  # a new public answer, the old message untouched
    assert result is not message and message.edits == edits and len(message.attachments) == 2
    assert result.custom_ids == [f"sdbot:again:{second.id}", f"sdbot:edit:{second.id}"]
    assert refusal.ephemeral and refusal.content == render_error(SdbotError("job_not_found", job=first.id), "zh")


async def test_edit_opens_a_form_with_the_command_and_sending_it_draws_even_after_a_restart(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        async with running_bot(dc, tmp_path / "db") as bot:
            rec = await dc.invoke_command("draw", {"prompt": "a cat", "negative": "dogs", "seed": 9})
            message = await bot.delivered(rec)
            await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
            (job,) = await bot.jobs()
            click = await dc.click_button(f"sdbot:edit:{job.id}", message, user_id=555)
            modal = await dc.wait_for(lambda: click.modal)

        async with running_bot(dc, tmp_path / "db") as bot:  # the user took their time
            (text_input,) = [c for row in modal["components"] for c in row["components"]]
            submit = await dc.submit_modal(click, {text_input["custom_id"]: "a dog --style Cinematic --seed 5"})
            await bot.delivered(submit)
            jobs = await bot.jobs()

    assert click.response_type == 9 and modal["title"] == t("en", "button.edit")
    assert text_input["value"] == (
        'a cat --negative dogs --style Base --size 1024x1024 --n 1 --steps 20 --sampler "Euler a" --seed 9 --cfg 5'
    )
    edited = jobs[1]
    assert edited.user == "discord:555" and edited.parent_id is None
    assert (edited.request.prompt, edited.request.style, edited.request.seed) == ("a dog", "Cinematic", 5)


async def test_a_job_outliving_its_token_is_posted_to_the_channel_mentioning_its_owner(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a slow cat", "n": 2}, locale="zh-CN")
        await running(dc, rec, "zh")
        rec.expire()  # 15 minutes pass: Discord now answers 401 50027 to the token
        backend.release()
        posted = await dc.wait_for(lambda: [m for m in dc.channel_messages(dc.CHANNEL_ID) if m.attachments])
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    (message,) = posted
    assert message.content.startswith(t("zh", "job.delivered_late", mention=f"<@{dc.USER_ID}>", job=job.id))
    assert len(message.attachments) == 2 and message.custom_ids == [f"sdbot:again:{job.id}", f"sdbot:edit:{job.id}"]
    (post,) = dc.calls_to("POST", rf"^/channels/{dc.CHANNEL_ID}/messages$")
    assert post.json["allowed_mentions"] == {"parse": [], "users": [dc.USER_ID]}
    assert [c.status for c in dc.calls_to("PATCH", r"@original$")][-1] == 401
    assert job.status == "done" and job.charged == 2


async def test_past_the_known_token_life_the_channel_is_used_and_its_429_waited_out(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        fault = dc.fail_next("POST", r"^/channels/\d+/messages$", status=429, retry_after=0.2)
        # A token life of 0: the adapter knows the token is dead as soon as the job is admitted.
        async with running_bot(dc, tmp_path / "db", adapter_options={"token_lifetime": 0}) as bot:
            rec = await dc.invoke_command("draw", {"prompt": "a cat"})
            posted = await dc.wait_for(lambda: [m for m in dc.channel_messages(dc.CHANNEL_ID) if m.attachments])
            await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
            (job,) = await bot.jobs()

    assert rec.deferred and rec.original is not None and rec.original.loading  # never edited with a dead token
    assert dc.calls_to("PATCH", r"^/webhooks/") == [] and fault.hits == 1
    assert [c.status for c in dc.calls_to("POST", r"^/channels/")] == [429, 200]
    assert posted[0].content.startswith(f"<@{dc.USER_ID}>") and job.status == "done"


async def test_a_job_left_running_by_a_dead_process_is_delivered_by_the_next(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        async with running_bot(dc, tmp_path / "db", GatedBackend(hold=True)) as bot:
            rec = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
            await running(dc, rec)
        (job,) = await stored_jobs(tmp_path / "db")
        assert job.status == "running" and Route.from_json(job.route).token == rec.token

        async with running_bot(dc, tmp_path / "db") as bot:
            message = await bot.delivered(rec, 2)
            await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
            (job,) = await bot.jobs()

    assert job.status == "done" and job.attempts == 2 and message.custom_ids[0] == f"sdbot:again:{job.id}"


async def test_a_rate_limited_image_upload_is_waited_out_and_retried(tmp_path: Path) -> None:
    backend = QuietBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
        await running(dc, rec)
        fault = dc.fail_next("PATCH", r"/messages/@original$", status=429, retry_after=0.2)
        backend.release()
        message = await bot.delivered(rec, 2)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    uploads = [c for c in dc.calls_to("PATCH", r"@original$") if c.files]
    assert fault.hits == 1 and [c.status for c in uploads] == [429, 200]
    assert len(uploads[1].files) == 2 and len(message.attachments) == 2 and job.status == "done"


async def test_a_failed_generation_replaces_the_answer_and_is_refunded(tmp_path: Path) -> None:
    backend = GatedBackend()
    backend.failures["a cat"] = BackendError("backend_unavailable")
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat"}, locale="zh-CN")
        text = describe_failure(BackendError("backend_unavailable"), True, "zh")
        message = await dc.wait_for(lambda: rec.original if rec.original and rec.original.content == text else None)
        await bot.core.wait_idle()  # outcomes are recorded after the chat shows them
        (job,) = await bot.jobs()

    assert message.attachments == [] and message.components == []
    assert job.status == "failed" and job.charged == 0


async def test_refused_permissions_at_delivery_tell_the_user_and_refund(tmp_path: Path) -> None:
    backend = QuietBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat"})
        await running(dc, rec)
        body = {"message": "Missing Permissions", "code": 50013}
        dc.fail_next("PATCH", r"/messages/@original$", status=403, body=body)
        backend.release()
        await dc.wait_for(lambda: rec.original.content == t("en", "error.platform_forbidden"))
        await bot.core.wait_idle()
        (job,) = await bot.jobs()

    assert job.status == "failed" and job.error == "delivery_gone" and job.charged == 0


async def test_a_channel_closed_to_the_bot_after_admission_fails_the_job_without_charge(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    dead_token = {"token_lifetime": 0}
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend, adapter_options=dead_token) as bot:
        await dc.invoke_command("draw", {"prompt": "a cat"})
        await backend.wait_started(1)
        dc.missing_permissions.add(dc.CHANNEL_ID)
        backend.release()
        await dc.wait_for(lambda: dc.calls_to("POST", r"^/channels/"))
        await bot.core.wait_idle()
        (job,) = await bot.jobs()

    assert [c.status for c in dc.calls_to("POST", r"^/channels/")] == [403]
    assert job.status == "failed" and job.error == "delivery_gone" and job.charged == 0


@pytest.mark.parametrize(("interval", "moves_shown"), [(60.0, False), (0.0, True)])
async def test_queue_positions_are_shown_sparingly_but_every_change_of_state_is(
    tmp_path: Path, interval: float, moves_shown: bool
) -> None:
    """With a long queue every start moves every waiting job: repeats of "#n in the queue" are throttled."""
    backend = GatedBackend(hold=True)
    options = {"progress_interval": interval}
    async with (
        fake_discord() as dc,
        running_bot(dc, tmp_path / "db", backend, adapter_options=options, backend_concurrency=1) as bot,
    ):
        first = await dc.invoke_command("draw", {"prompt": "first"})
        await backend.wait_started(1)
        second = await dc.invoke_command("draw", {"prompt": "second"}, user_id=2)
        # Queued before the third is sent: two commands in flight at once may be admitted in either order.
        await dc.wait_for(lambda: second.original and second.original.content == t("en", "job.queued", position=1))
        third = await dc.invoke_command("draw", {"prompt": "third"}, user_id=3)
        await dc.wait_for(lambda: third.original and third.original.content == t("en", "job.queued", position=2))
        backend.release(0)
        await backend.wait_started(2)
        if moves_shown:
            await dc.wait_for(lambda: third.original.content == t("en", "job.queued", position=1))
        backend.release()
        for rec in (first, second, third):
            await bot.delivered(rec)
        shown = [c.json.get("content") for c in dc.calls_to("PATCH", rf"/{third.token}/messages/@original$")]

    assert (t("en", "job.queued", position=1) in shown) is moves_shown
    assert t("en", "job.running") in shown and shown[-1].startswith("third\n")  # then the images


async def test_pictures_whose_answer_was_lost_are_checked_and_kept(tmp_path: Path) -> None:
    """Discord put the pictures in the answer, but the connection closed before it said so: the bot looks at
    the answer, finds them there, and the job is delivered (and charged), not refunded with 'could not be
    sent' written over the pictures."""
    backend = QuietBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat", "n": 2})
        await running(dc, rec)
        drop = dc.drop_answer("PATCH", r"/messages/@original$")
        backend.release()
        await dc.wait_for(lambda: drop.hits)
        await bot.core.wait_idle()
        (job,) = await bot.jobs()
    assert rec.original is not None and len(rec.original.attachments) == 2
    assert rec.original.custom_ids == [f"sdbot:again:{job.id}", f"sdbot:edit:{job.id}"]
    assert (job.status, job.error, job.charged) == ("done", None, 2)
    assert dc.calls_to("GET", r"/messages/@original$")  # looked, rather than guessed


async def test_an_answer_lost_before_discord_carried_it_out_is_a_failure_told_and_refunded(tmp_path: Path) -> None:
    backend = QuietBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat"})
        await running(dc, rec)
        drop = dc.drop_answer("PATCH", r"/messages/@original$", carry_out=False)
        backend.release()
        await dc.wait_for(lambda: drop.hits)
        await bot.core.wait_idle()
        (job,) = await bot.jobs()
    assert (job.status, job.error, job.charged) == ("failed", "delivery_failed", 0)
    failure = describe_failure(SdbotError("delivery_failed", job=job.id), True, "en")
    assert rec.original is not None and rec.original.content == failure and rec.original.attachments == []


async def test_a_channel_post_whose_answer_was_lost_is_not_called_a_failure(tmp_path: Path) -> None:
    """Past the token's life the pictures go to the channel, where the bot cannot look them up: an answer lost
    after Discord had the whole post counts as delivered; no 'could not be sent' under pictures that arrived."""
    async with fake_discord() as dc:
        drop = dc.drop_answer("POST", r"^/channels/\d+/messages$")
        async with running_bot(dc, tmp_path / "db", adapter_options={"token_lifetime": 0}) as bot:
            await dc.invoke_command("draw", {"prompt": "a cat"})
            await dc.wait_for(lambda: drop.hits)
            await bot.core.wait_idle()
            (job,) = await bot.jobs()
        posted = dc.channel_messages(dc.CHANNEL_ID)
    assert [len(m.attachments) for m in posted] == [1]  # the pictures, and no failure notice after them
    assert (job.status, job.error, job.charged) == ("done", None, 1)
