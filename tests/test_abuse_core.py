"""Hostile input at the core: invisible and control characters, injection-shaped prompts, forged and absurd job
ids. Whatever comes in is refused with a documented error or stored and replayed exactly; nobody is charged
for anything refused and nobody can reach another user's job."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.draw.sanitize import clean
from bot.errors import DrawError, SdbotError
from bot.messages.i18n import render_error, t
from tests.pipeline_support import open_core, usage_matches_jobs

ANN = UserRef("telegram", "1", "en", "Ann")
BO = UserRef("telegram", "2", "en", "Bo")
DM = ChatRef("telegram", "1", False)
SMALL = "--size 768x768"
RLO, PDF = "\u202e", "\u202c"
HUGE_ID = 2**70  # beyond SQLite's integers


async def jobs(core: Core) -> int:
    row = await core.storage.fetchone("SELECT count(*) FROM jobs")
    assert row is not None
    return int(row[0])


async def test_control_characters_and_bidi_overrides_never_reach_storage_or_replies(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", rate_per_minute=0, max_pending=5) as (core, sink):
        job = await core.submit(ANN, DM, f'/draw "a\x00b\x07c\r\nd" {RLO}exe.gnp{PDF} cat\x1b[31m {SMALL}', {})
        # Discord's typed options skip the grammar: cleaned by validation all the same.
        typed = await core.submit(ANN, DM, "dog\x00\u2066x\u2069", {}, typed={"style": "Anime\x1b", "n": 1})
        await core.wait_idle()
        refusals = []
        for text in (f"/draw cat --style {RLO}emina", f'/draw "cat {RLO}tac', f"/draw cat --stl{RLO}ye x"):
            with pytest.raises(DrawError) as caught:
                await core.submit(ANN, DM, text, {})
            refusals.append(caught.value)
    assert job.request.prompt == "abc\nd exe.gnp cat[31m"
    assert (typed.request.prompt, typed.request.style) == ("dogx", "Anime")
    assert sink.generations[job.id].request.prompt == job.request.prompt  # what the backend was sent
    assert [error.code for error in refusals] == ["unknown_style", "unclosed_quote", "unknown_option"]
    for error in refusals:  # echoed values lose the override: the rest of the line is not reversed
        for lang in ("en", "zh"):
            text = render_error(error, lang)  # type: ignore[arg-type]
            assert RLO not in text and ("emina" in text or "tac" in text or "stlye" in text)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("/draw " + "\u200b" * 5000 + "cat", "prompt_too_long"),  # a flood of invisible characters counts
        ("/draw \u200b\u200d\ufeff \u200c", "empty_prompt"),  # nothing visible is no prompt
        (f"/draw {RLO}{PDF}\x00\x01", "empty_prompt"),
        ("/draw cat --negative \u200b\u200b", "missing_value"),
    ],
)
async def test_invisible_prompts_are_refused_with_a_documented_error(tmp_path: Path, text: str, code: str) -> None:
    async with open_core(tmp_path / "db") as (core, _sink):
        with pytest.raises(DrawError) as caught:
            await core.submit(ANN, DM, text, {})
        assert caught.value.code == code and await jobs(core) == 0
        assert (await core.quotas.state(ANN.key)).used == 0


async def test_injection_shaped_prompts_and_names_are_stored_and_replayed_exactly(tmp_path: Path) -> None:
    prompt = "Robert'); DROP TABLE jobs;-- %_ \\ OR 1=1 <script>alert(1)</script> *_`~|| @everyone"
    name = "'; DELETE FROM users; -- \ud800\u202e"  # a lone surrogate could not even be encoded for SQLite
    evil = UserRef("telegram", "3", "en", name)
    async with open_core(tmp_path / "db", rate_per_minute=0) as (core, sink):
        original = await core.submit(evil, DM, f"/draw {prompt} {SMALL}", {"note": "'); DROP TABLE jobs;--"})
        await core.wait_idle()
        rerun = await core.again(original.id, evil, {"note": "again"})
        await core.wait_idle()
        stored = await core.get_job(original.id)
        stats = await core.handle_command(UserRef("telegram", "9"), DM, "admin", "stats")
        names = await core.directory.display_names([evil.key])
        tables = await core.storage.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert stored is not None and stored.request.prompt == prompt and stored.route == {"note": "'); DROP TABLE jobs;--"}
    assert rerun.request.prompt == prompt and sink.generations[rerun.id].request.prompt == prompt
    assert names == {evil.key: "'; DELETE FROM users; -- "}
    assert {"jobs", "users"} <= {row["name"] for row in tables}
    assert stats == t("en", "error.admin_only")  # and a stranger cannot read the statistics


async def test_forged_and_absurd_job_ids_reach_nobody_and_charge_nothing(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", rate_per_minute=0, admins=frozenset({"telegram:9"})) as (core, _sink):
        anns = await core.submit(ANN, DM, f"/draw mine {SMALL}", {})
        await core.wait_idle()
        for job_id in (anns.id, HUGE_ID, -1, 0):
            with pytest.raises(SdbotError) as caught:
                await core.again(job_id, BO, {})
            assert caught.value.code == "job_not_found"
            with pytest.raises(SdbotError) as caught:
                await core.cancel(BO, job_id)
            assert caught.value.code == "job_not_found"
        with pytest.raises(SdbotError) as caught:
            await core.cancel(UserRef("telegram", "9"), HUGE_ID)  # admins may cancel anyone's, but not nothing
        assert caught.value.code == "job_not_found"
        assert await core.get_job(HUGE_ID) is None and await core.update_route(HUGE_ID, {}) is False
        reply = await core.handle_command(BO, DM, "cancel", "#" + "9" * 30)
        assert reply == render_error(SdbotError("job_not_found", job=int("9" * 30)), "en")
        assert await jobs(core) == 1
        assert (await core.quotas.state(BO.key)).used == 0 and (await core.quotas.state(ANN.key)).used == 1
        assert await usage_matches_jobs(core.storage) == []


def test_cleaning_is_idempotent_and_keeps_what_scripts_and_emoji_need() -> None:
    kept = "家族👨\u200d👩\u200d👧 می\u200cخواهم\ttab\nline \u200e\u200f"
    assert clean(kept) == kept
    dirty = "a\r\nb\rc\x0bd\x1ce\x85f\x00g\x7f\x9fh\ud83di" + RLO + "j\u2067k"
    assert clean(dirty) == "a\nb\nc d e fghijk"
    assert clean(clean(dirty)) == clean(dirty)
