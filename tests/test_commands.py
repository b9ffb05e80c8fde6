"""Text commands in zh and en, the ``sdbot quota``/``sdbot stats`` terminal twins, and their catalog entries."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.chats.refs import ChatRef, UserRef
from bot.cli import main as cli
from bot.core import Core
from bot.draw.capabilities import SEED
from bot.draw.validation import parse_request
from bot.errors import BackendError
from bot.messages import i18n
from bot.process import redact
from bot.quotas.rules import QuotaError
from tests.pipeline_support import GatedBackend, make_settings, open_core

ANN = UserRef("telegram", "1", "en", "Ann")
MEI = UserRef("telegram", "2", "zh-CN", "Mei")
ADMIN = UserRef("telegram", "99", "en", "Root")
DM = ChatRef("telegram", "1", False)
GROUP = ChatRef("telegram", "-100", True)
ADMINS = frozenset({ADMIN.key})
ROOT = Path(__file__).resolve().parent.parent


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


@pytest.mark.parametrize("user", [ANN, MEI])
async def test_help_explains_draw_with_examples_that_really_parse(tmp_path: Path, user: UserRef) -> None:
    async with open_core(tmp_path / "db", admins=ADMINS) as (core, _):
        text = await core.handle_command(user, DM, "/help", "")
        assert await core.handle_command(user, DM, "start", "") == text
        for option in ("--style", "--size", "--n", "--steps", "--seed", "--cfg", "--sampler", "--negative", "—"):
            assert option in text
        examples = [line for line in text.splitlines() if line.startswith("/draw ")]
        assert len(examples) >= 3
        for example in examples:
            parse_request(example, SEED)  # raises if the help teaches something invalid
        assert "{" not in text and "/admin" not in text
        assert ("画图" in text) is (user is MEI)
        assert "/admin stats" in await core.handle_command(ADMIN, DM, "help", "")


async def test_help_follows_the_backend(tmp_path: Path) -> None:
    """Each option's line shows this backend's range, default and first choices; one it does not take is left out."""
    caps = dataclasses.replace(SEED, seed=False, max_n=2, samplers=("DDIM",))
    async with open_core(tmp_path / "db") as (core, _):
        en, zh = core.help_text("en", caps, admin=False), core.help_text("zh", caps, admin=False)
    assert "--seed" not in en and "--seed" not in zh
    assert "Number of pictures (1-2)" in en and "图片数量（1-2）" in zh
    assert "--sampler   Sampling method: DDIM (default DDIM)" in en
    assert "--style   图片风格：基础风格、3D模型、模拟胶片…（默认 基础风格）" in zh


async def test_quota_shows_usage_limits_and_reset(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", daily_images=10, chat_daily_images=30, admins=ADMINS) as (core, _):
        await core.submit(ANN, GROUP, "/draw a cat --n 3 --size 768x768", {})
        await core.wait_idle()
        text = await core.handle_command(ANN, GROUP, "quota", "")
        assert "Images: 3 of 10 used, 7 left" in text
        assert "at most 3 per minute" in text and "0 of at most 2" in text
        assert "This chat: 3 of 30 images used" in text
        assert "reset at 00:00 UTC (in " in text
        private = await core.handle_command(ANN, DM, "quota", "")
        assert "This chat" not in private
        zh = await core.handle_command(MEI, GROUP, "quota", "")
        assert "已用 0 / 10，剩余 10" in zh and "本群：已用 3 / 30 张" in zh
        admin = await core.handle_command(ADMIN, DM, "quota", "")
        assert "Administrator: no limits apply." in admin


async def test_quota_says_when_there_is_no_limit(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", daily_images=0, rate_per_minute=0) as (core, _):
        text = await core.handle_command(ANN, GROUP, "quota", "")
        assert "no daily limit" in text and "no per-minute limit" in text and "no daily cap" in text


async def test_lang_switches_and_returns_to_the_platform_language(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db") as (core, _):
        assert await core.handle_command(MEI, DM, "lang", "") == (  # a zh-CN user is answered in Chinese
            "我用中文回复你。可用 /lang zh、/lang en 或 /lang auto 切换。"
        )
        assert await core.handle_command(ANN, DM, "lang", "中文") == "之后我会用中文回复你。"
        assert core.language_for(ANN) == "zh"
        assert "English" in await core.handle_command(ANN, DM, "lang", "auto")
        assert core.language_for(ANN) == "en"
        assert await core.handle_command(ANN, DM, "lang", "zh-TW") == "之后我会用中文回复你。"
        assert "/lang zh|en|auto" in await core.handle_command(ANN, DM, "lang", "klingon")


async def test_cancel_command(tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with open_core(tmp_path / "db", backend, backend_concurrency=1, rate_per_minute=0) as (core, _):
        assert "no pictures waiting" in await core.handle_command(ANN, DM, "cancel", "")
        await core.submit(MEI, DM, "/draw first --size 768x768", {})
        job = await core.submit(ANN, DM, "/draw second --n 2 --size 768x768", {})
        await backend.wait_started(1)
        text = await core.handle_command(ANN, DM, "cancel", f"#{job.id}")
        assert text == f"Cancelled #{job.id}; 2 images were returned to your quota."
        assert f"#{job.id}" in await core.handle_command(ANN, DM, "cancel", str(job.id))  # already cancelled
        assert "Usage: /cancel" in await core.handle_command(ANN, DM, "cancel", "everything")
        backend.release()


async def test_admin_commands_change_limits_for_admins_only(tmp_path: Path) -> None:
    async with open_core(tmp_path / "db", admins=ADMINS, daily_images=20) as (core, _):
        assert "Only the bot's administrators" in await core.handle_command(ANN, DM, "admin", "stats")
        assert "只有机器人管理员" in await core.handle_command(MEI, DM, "admin", "quota 1 100")

        assert await core.handle_command(ADMIN, DM, "admin", "quota 1 5") == "Daily images for telegram:1: 5 images."
        assert (await core.quotas.state(ANN.key)).daily_images == 5
        text = await core.handle_command(ADMIN, DM, "admin", "quota telegram:1 default")
        assert text == "Daily images for telegram:1: the default, 20 images."
        assert "unlimited" in await core.handle_command(ADMIN, DM, "admin", "quota discord:7 0")
        assert (await core.quotas.state("discord:7")).daily_images == 0

        assert "banned" in await core.handle_command(ADMIN, DM, "admin", "ban 1")
        assert "Banned: cannot draw." in await core.handle_command(ANN, DM, "quota", "")
        with pytest.raises(QuotaError) as caught:
            await core.submit(ANN, DM, "/draw a cat", {})
        assert caught.value.code == "banned"
        assert "no longer banned" in await core.handle_command(ADMIN, DM, "admin", "unban telegram:1")
        await core.submit(ANN, DM, "/draw a cat --size 768x768", {})
        await core.wait_idle()
        assert "cannot be banned" in await core.handle_command(ADMIN, DM, "admin", "ban 99")
        assert "is not a user" in await core.handle_command(ADMIN, DM, "admin", "ban @someone")

        assert "back the 1 image used" in await core.handle_command(ADMIN, DM, "admin", "reset 1")
        assert (await core.quotas.state(ANN.key)).used == 0
        text = await core.handle_command(ADMIN, GROUP, "admin", "chatquota 12")
        assert text == "Daily images for telegram:-100: 12 images."
        assert (await core.quotas.state(ANN.key, GROUP.key)).chat_daily_images == 12

        stats = await core.handle_command(ADMIN, DM, "admin", "stats")
        assert "Jobs: 1 (queued 0, running 0, done 1, failed 0, cancelled 0)" in stats
        assert "Images: 1 delivered, 1 counted against quotas" in stats
        # Stats count what jobs charged; a reset forgives the user's day without rewriting history.
        assert "Failures: none" in stats and "Busiest users: Ann (telegram:1) 1" in stats
        assert "Usage:" in await core.handle_command(ADMIN, DM, "admin", "frobnicate")
        assert "Usage:" in await core.handle_command(ADMIN, DM, "admin", "quota 1 lots")


async def test_stats_count_failures_by_code_and_name_the_busiest(tmp_path: Path) -> None:
    backend = GatedBackend()
    backend.failures["doomed"] = BackendError("backend_timeout")
    async with open_core(tmp_path / "db", backend, admins=ADMINS, rate_per_minute=0) as (core, _):
        await core.submit(ANN, DM, "/draw fine --n 3 --size 768x768", {})
        await core.submit(MEI, DM, "/draw doomed --size 768x768", {})
        await core.wait_idle()
        stats = await core.handle_command(ADMIN, DM, "admin", "stats")
        assert "Failures: backend_timeout ×1" in stats
        assert "Busiest users: Ann (telegram:1) 3" in stats


async def test_unknown_commands_and_failures_are_answered_not_raised(tmp_path: Path) -> None:
    class Broken(GatedBackend):
        async def capabilities(self):  # type: ignore[no-untyped-def]
            raise BackendError("backend_unavailable")

    core = await Core.open(make_settings(tmp_path / "db"), Broken())
    try:
        assert "Unknown command /fly" in await core.handle_command(ANN, DM, "/fly@SdBot", "")
        assert "could not be reached" in await core.handle_command(ANN, DM, "help", "")
    finally:
        await core.close()


# Terminal ---------------------------------------------------------------------------------------------


def sdbot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_quota_and_stats_from_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setattr(redact, "configure_logging", lambda *args: None)  # process-wide; not this test's subject
    monkeypatch.setenv("SDBOT_DB", str(db))
    monkeypatch.setenv("SDBOT_LANG", "en")
    monkeypatch.setenv("SDBOT_DAILY_IMAGES", "20")

    async def draw() -> None:
        async with open_core(db, daily_images=20) as (core, _):
            await core.submit(ANN, GROUP, "/draw a cat --n 2 --size 768x768", {})
            await core.wait_idle()

    asyncio.run(draw())
    code, out, _ = sdbot(capsys, "quota", "set", "telegram:1", "7", "--rate", "10", "--pending", "3")
    assert code == 0
    assert "Daily images for telegram:1: 7 images." in out
    assert "Images: 2 of 7 used, 5 left" in out and "at most 10 per minute" in out and "0 of at most 3" in out

    code, out, _ = sdbot(capsys, "quota", "show", "telegram:1", "--lang", "zh")
    assert code == 0 and "telegram:1 今天" in out and "已用 2 / 7" in out

    code, out, _ = sdbot(capsys, "quota", "reset", "telegram:1")
    assert (code, out.strip()) == (0, "Gave telegram:1 back the 2 images used today.")

    code, out, _ = sdbot(capsys, "quota", "set", "--chat", "telegram:-100", "5")
    assert code == 0 and "This chat: 2 of 5 images used" in out
    code, out, _ = sdbot(capsys, "quota", "show", "--chat", "telegram:-100")
    assert code == 0 and "telegram:-100" in out

    code, out, _ = sdbot(capsys, "stats")
    assert code == 0 and "Jobs: 1 (queued 0, running 0, done 1" in out and "Images: 2 delivered" in out

    code, _, err = sdbot(capsys, "quota", "show", "somebody")
    assert code == 2 and "is not a user" in err
    code, _, err = sdbot(capsys, "quota", "set", "telegram:1", "default", "--pending", "0")
    assert code == 2 and "--pending must be a whole number from 1" in err
    monkeypatch.setenv("SDBOT_DB", str(tmp_path))  # a directory: not a database
    code, _, err = sdbot(capsys, "stats")
    assert code == 3 and "SDBOT_DB" in err


# Catalog entries --------------------------------------------------------------------------------------

_DYNAMIC = [
    *(f"job.status.{s}" for s in ("queued", "running", "done", "failed", "cancelled")),
    *(f"lang.name.{lang}" for lang in i18n.LANGUAGES),
    "cmd.admin.ban",
    "cmd.admin.unban",
    *(f"error.{code}" for code in ("quota_daily", "quota_rate", "quota_pending", "quota_chat", "banned")),
]


def used_keys() -> set[str]:
    keys = set(_DYNAMIC)
    for path in sorted((ROOT / "bot").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r'"((?:error|cmd|job|quota|duration|value|lang)\.[a-z_.]+[a-z_])"', source))
        keys |= {f"error.{c}" for c in re.findall(r'(?:SdbotError|QuotaError|ConfigError)\(\s*"(\w+)"', source)}
    return keys


def test_every_message_of_the_pipeline_is_in_both_languages_with_the_same_placeholders() -> None:
    keys = used_keys()
    assert len(keys) > 60
    catalogs = {}
    for lang in i18n.LANGUAGES:
        with open(ROOT / "locales" / lang / "LC_MESSAGES" / "sdbot.po", "rb") as fh:
            # A plural message is checked through its last form (the one gettext falls back to).
            catalogs[lang] = {
                (m.id[0] if m.pluralizable else m.id): (m.string[-1] if m.pluralizable else m.string)
                for m in read_po(fh)
                if m.id
            }
    for key in sorted(keys):
        en, zh = catalogs["en"].get(key), catalogs["zh"].get(key)
        assert en and zh, f"{key} missing"
        assert placeholders(en) == placeholders(zh), key
        for lang, text in (("en", en), ("zh", zh)):
            compiled = (
                i18n.catalog(lang).ngettext(key, key, 2)
                if i18n.is_plural(lang, key)
                else i18n.catalog(lang).gettext(key)
            )
            assert compiled == text, f"{lang}/{key}: the compiled .mo is stale"


async def test_admin_numbers_are_read_like_the_command_lines(tmp_path: Path) -> None:
    """'²' is a digit int() cannot read: the chat /admin answered 'internal' for it; now its usage, like sdbot
    quota set. A full-width id is the same user."""
    async with open_core(tmp_path / "db", admins=ADMINS, daily_images=20) as (core, _):
        usage = await core.handle_command(ADMIN, DM, "admin", "quota telegram:1 ²")
        assert usage.startswith("Usage:") and usage != i18n.t("en", "error.internal")
        assert "is not a user" in await core.handle_command(ADMIN, DM, "admin", "quota telegram:² 5")
        assert "telegram:12" in await core.handle_command(ADMIN, DM, "admin", "quota telegram:１２ 5")
        assert (await core.quotas.state("telegram:12")).daily_images == 5
