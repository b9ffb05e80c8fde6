"""Abuse through the real Discord adapter (discord.py against the fake gateway and REST API): dispatches it
cannot read, prompts that try to ping everyone, forged button ids, members using /sdadmin, and an image
service answering with garbage. The bot keeps serving, pings nobody it should not, and charges nobody for
what failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.backends.a1111 import A1111Backend
from bot.backends.http import RetryPolicy
from bot.errors import SdbotError
from bot.messages.i18n import render_error, t
from tests.discord_support import fake_discord, running_bot
from tests.fakes.a1111 import FakeA1111
from tests.fakes.discord import DEFAULT_PERMISSIONS, MANAGE_GUILD, FakeDiscord, FakeInteraction, FakeMessage
from tests.pipeline_support import GatedBackend

FORGER = 777_000_000_000_000_001
OPERATOR = 31337
MENTIONS = "@everyone @here <@&900000000000000009> <@123456789012345678>"


async def answer(dc: FakeDiscord, rec: FakeInteraction) -> str:
    """The ephemeral (private) immediate answer to ``rec``."""
    message = await dc.wait_for(lambda: rec.original if rec.response_type == 4 else None)
    assert message.ephemeral
    return message.content


async def forge(dc: FakeDiscord, message: FakeMessage, real: str, forged: str, user_id: int) -> FakeInteraction:
    """A modified client: click a real button of ``message`` but send ``forged`` as its custom id."""
    message.find_component(real)["custom_id"] = forged
    try:
        return await dc.click_button(forged, message, user_id=user_id)
    finally:
        message.find_component(forged)["custom_id"] = real


async def test_dispatches_the_client_cannot_read_never_end_the_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        for event, data in (
            ("INTERACTION_CREATE", {"id": "1"}),  # no type, no token: discord.py raises reading it
            ("INTERACTION_CREATE", {"id": "2", "type": 99, "application_id": "1", "token": "t", "version": 1}),
            ("INTERACTION_CREATE", {"id": "x", "type": 2, "data": "not an object", "token": "t", "version": 1}),
            ("MESSAGE_CREATE", {"id": "5", "content": "\ud800" * 10 + "x" * 100_000}),
            ("GUILD_MEMBER_UPDATE", {"guild_id": "nope"}),
            ("SOME_FUTURE_EVENT", {"anything": [1, 2, 3]}),
        ):
            await dc.dispatch(event, data)
        quota = await answer(dc, await dc.invoke_command("quota"))
        drawn = await bot.delivered(await dc.invoke_command("draw", {"prompt": "still here \x00\u202e"}))
        (job,) = await bot.jobs()

    assert quota.startswith("Your quota today")
    assert job.status == "done" and job.request.prompt == "still here" and drawn.attachments
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]  # the gateway never went down
    assert "could not be read" in caplog.text


async def test_a_prompt_cannot_ping_anyone_even_when_posted_to_the_channel(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        prompt = f"{MENTIONS} a cat"
        live = await dc.invoke_command("draw", {"prompt": prompt})
        late = await dc.invoke_command("draw", {"prompt": f"{prompt} two"}, user_id=FORGER)
        await backend.wait_started(2)
        late.expire()  # its token dies: the result is posted to the channel, mentioning its owner
        backend.release()
        await bot.delivered(live)
        (posted,) = await dc.wait_for(lambda: [m for m in dc.channel_messages(dc.CHANNEL_ID) if m.attachments][1:])
        refusal = await answer(dc, await dc.invoke_command("draw", {"prompt": "x", "style": MENTIONS}))

    assert "@everyone" in live.original.content and "@everyone" in posted.content and "@everyone" in refusal
    carrying = [
        c
        for c in dc.calls
        if isinstance(c.json, dict) and "@everyone" in str(c.json.get("content") or c.json.get("data"))
    ]
    assert len(carrying) >= 3
    for call in carrying:  # every request that carried the prompt's mentions told Discord to ping nobody...
        payload: dict[str, Any] = call.json.get("data") or call.json  # interaction callbacks nest it
        allowed = payload["allowed_mentions"]
        assert allowed["parse"] == [], call.path
        assert allowed.get("users", []) in ([], [FORGER]), call.path  # ...but the late result's owner
        assert not allowed.get("roles") and not allowed.get("replied_user")


async def test_forged_custom_ids_reach_no_one_elses_job(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", rate_per_minute=0) as bot:
        private = await bot.delivered(await dc.invoke_command("draw", {"prompt": "secret garden"}, dm=True))
        mine = await bot.delivered(await dc.invoke_command("draw", {"prompt": "mine"}, user_id=FORGER))
        again = await forge(dc, mine, "sdbot:again:2", "sdbot:again:1", FORGER)
        edit = await forge(dc, mine, "sdbot:edit:2", "sdbot:edit:1", FORGER)
        huge = await forge(dc, mine, "sdbot:again:2", "sdbot:again:" + "9" * 30, FORGER)
        refusals = [await answer(dc, rec) for rec in (again, edit, huge)]
        unknown = await forge(dc, mine, "sdbot:again:2", "sdbot:cancel:1", FORGER)
        served = await answer(dc, await dc.invoke_command("quota", user_id=FORGER))  # still answering
        jobs = await bot.jobs()
        owner, forger = [await bot.core.quotas.state(f"discord:{u}") for u in (dc.USER_ID, FORGER)]

    assert refusals == [
        render_error(SdbotError("job_not_found", job=1), "en"),
        render_error(SdbotError("job_not_found", job=1), "en"),
        render_error(SdbotError("job_not_found", job=int("9" * 30)), "en"),
    ]
    assert edit.modal is None  # the form with the DM's prompt was never opened
    assert not any("secret" in m.content for rec in (again, edit, huge) for m in [rec.original, *rec.followups] if m)
    assert unknown.response_type is None  # an id the bot does not know is left alone
    assert served.startswith("Your quota today")
    assert [(j.id, j.status) for j in jobs] == [(1, "done"), (2, "done")]
    assert (owner.used, forger.used) == (1, 1)
    assert "sdbot:again:1" in private.custom_ids


async def test_the_same_server_may_still_edit_a_picture_posted_there(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        posted = await bot.delivered(await dc.invoke_command("draw", {"prompt": "a public cat"}))
        rec = await dc.click_button("sdbot:edit:1", posted, user_id=FORGER)
        await dc.wait_for(lambda: rec.modal)
    assert rec.modal is not None and "a public cat" in str(rec.modal)


@pytest.mark.parametrize(
    ("permissions", "locale", "key"),
    [(DEFAULT_PERMISSIONS, "zh-CN", "discord.admin_only"), (DEFAULT_PERMISSIONS | MANAGE_GUILD, "en-US", None)],
)
async def test_members_cannot_use_what_sdadmin_keeps_for_others(
    tmp_path: Path, permissions: int, locale: str, key: str | None
) -> None:
    lang = "zh" if locale == "zh-CN" else "en"
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", admins=frozenset({f"discord:{OPERATOR}"})) as bot:
        target = {"member": 99}
        texts = [
            await answer(dc, await dc.invoke_command(name, options, permissions=permissions, locale=locale))
            for name, options in (("sdadmin ban", target), ("sdadmin quota", {**target, "images": 0}))
        ]
        state = await bot.core.quotas.state("discord:99")
    # A plain member may use none of it; a server manager is no bot operator for member limits and bans.
    assert texts == [t(lang, key or "discord.operator_only")] * 2
    assert not state.banned and state.daily_images == 20


async def test_garbage_from_the_image_service_is_refused_and_refunded(tmp_path: Path) -> None:
    async with FakeA1111() as fake, fake_discord() as dc:
        backend = A1111Backend(fake.url, timeout=10.0, connect_timeout=2.0, retry=RetryPolicy(retries=0))
        for push in (fake.push_bomb, fake.push_not_an_image, fake.push_wrong_size):
            push()
        async with backend, running_bot(dc, tmp_path / "db", backend, rate_per_minute=0, max_pending=5) as bot:
            records = [
                await dc.invoke_command("draw", {"prompt": what, "size": "768x768"}, locale="zh-CN")
                for what in ("bomb", "page", "small")
            ]
            failed = t("zh", "error.backend_bad_image")
            for rec in records:
                await dc.wait_for(lambda rec=rec: rec.original and rec.original.content == failed)
            ok = await bot.delivered(await dc.invoke_command("draw", {"prompt": "fine", "size": "768x768"}))
            state = await bot.core.quotas.state(f"discord:{dc.USER_ID}")
            jobs = await bot.jobs()

    assert [(j.status, j.error, j.charged) for j in jobs] == [("failed", "backend_bad_image", 0)] * 3 + [
        ("done", None, 1)
    ]
    assert state.used == 1 and len(ok.attachments) == 1
    assert all(not rec.original.attachments for rec in records if rec.original)
