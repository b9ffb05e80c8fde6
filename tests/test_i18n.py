"""The zh and en catalogs: complete, with matching placeholders, compiled files fresh, language choice."""

from __future__ import annotations

import gettext
import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.draw.capabilities import SEED
from bot.draw.options import OPTIONS
from bot.errors import BACKEND_ERROR_CODES, BackendError, DrawError
from bot.messages.i18n import LANGUAGES, has, locale_dir, normalize_language, render_error, resolve_language, t
from bot.messages.presentation import describe
from bot.quotas.rules import QuotaError

ROOT = Path(__file__).resolve().parent.parent
PO = {lang: ROOT / "locales" / lang / "LC_MESSAGES" / "sdbot.po" for lang in LANGUAGES}
# The Qianfan codes of reference/backends.md, each with a message for chat users.
QIANFAN_CODES = [1, 2, 3, 4, 6, 13, 14, 15, 17, 18, 19, 100, 110, 111, *range(336000, 336006), 336100, 336101,
                 336104, 336105, 336501, 336502]  # fmt: skip


def load(lang: str):  # type: ignore[no-untyped-def]
    with open(PO[lang], "rb") as fh:
        return read_po(fh, locale=lang)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def forms(message) -> list[str]:  # type: ignore[no-untyped-def]
    """A message's texts: one, or one per plural form."""
    return list(message.string) if message.pluralizable else [message.string]


def test_both_languages_have_every_message_with_the_same_placeholders() -> None:
    catalogs = {
        lang: {(m.id[0] if m.pluralizable else m.id): forms(m) for m in load(lang) if m.id} for lang in LANGUAGES
    }
    assert set(catalogs["en"]) == set(catalogs["zh"])
    for key, en in catalogs["en"].items():
        zh = catalogs["zh"][key]
        assert all(en) and all(zh), f"{key} is empty"
        assert {frozenset(placeholders(text)) for text in en + zh} == {frozenset(placeholders(en[0]))}, key


def test_counts_use_plural_forms() -> None:
    """No "picture(s)": a message about a number of things has the language's plural forms, chosen by {count}."""
    for lang, expected_forms in (("en", 2), ("zh", 1)):
        for m in load(lang):
            if not m.id:
                continue
            assert not any("(s)" in text for text in forms(m)), (lang, m.id)
            if m.pluralizable:
                key, plural = m.id
                assert key == plural, f"{key}: msgid_plural repeats the key"
                assert len(m.string) == expected_forms, (lang, key)
                assert all("{count}" in text for text in m.string), (lang, key)
    assert t("en", "job.done", count=1) == "Done: 1 picture."
    assert t("en", "job.done", count=3) == "Done: 3 pictures."
    assert t("zh", "job.done", count=1) == t("zh", "job.done", count=3).replace("3", "1")


def test_every_plural_message_is_given_its_count() -> None:
    """A plural message rendered without ``count`` would silently take the plural form."""
    plural = {m.id[0] for m in load("en") if m.id and m.pluralizable}
    assert plural
    sources = [
        p.read_text(encoding="utf-8") for p in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]
    ]
    for key in plural:
        calls = [src[max(0, i - 120) : i + 160] for src in sources for i in _find_all(src, f'"{key}"')]
        for call in calls:
            assert "count" in call, f"{key} is used without count: {call!r}"
    error = QuotaError("quota_daily", used=1, limit=1, count=1, requested=1, left=0, reset="tomorrow")
    assert "your 1 image today" in render_error(error, "en")


def _find_all(text: str, needle: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(needle), text)]


def compiled(lang: str) -> dict[object, str]:
    """What the committed ``.mo`` means: msgid (or (msgid, plural index)) -> translation, header left out."""
    with open(ROOT / "locales" / lang / "LC_MESSAGES" / "sdbot.mo", "rb") as fh:
        messages = dict(gettext.GNUTranslations(fh)._catalog)  # type: ignore[attr-defined]
    return {key: text for key, text in messages.items() if key not in ("", ("", 0))}


def source(lang: str) -> dict[object, str]:
    """What the ``.po`` means, keyed the way gettext keys the compiled catalog."""
    out: dict[object, str] = {}
    for m in load(lang):
        if not m.id or m.fuzzy:
            continue
        if m.pluralizable:
            out.update({(m.id[0], i): text for i, text in enumerate(m.string)})
        else:
            out[m.id] = m.string
    return out


def test_compiled_catalogs_are_fresh() -> None:
    """Fails when a .po was edited without running `pybabel compile -d locales -D sdbot`. Compares what the
    catalogs mean, not bytes: another Babel writes other bytes (its version is in the header) for the same
    messages."""
    for lang in LANGUAGES:
        assert compiled(lang) == source(lang), f"locales/{lang}/LC_MESSAGES/sdbot.mo is stale: run pybabel compile"


def test_runtime_reads_the_catalogs_from_the_tree_or_the_wheel() -> None:
    assert (locale_dir() / "zh" / "LC_MESSAGES" / "sdbot.mo").is_file()


def test_every_message_key_used_in_code_exists() -> None:
    keys = {m.id[0] if m.pluralizable else m.id for m in load("en") if m.id}
    used: set[str] = set()
    pattern = re.compile(r"""\b(?:t\(\s*\w+\s*,\s*|Msg\(\s*)["']([a-z0-9_]+(?:\.[a-z0-9_]+)+)["']""")
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]:
        used.update(pattern.findall(path.read_text(encoding="utf-8")))
    assert used, "the scan found no keys: the pattern is broken"
    assert used <= keys, sorted(used - keys)


def test_every_draw_option_is_described_in_both_languages() -> None:
    """An option's one message is its /help line and its description on Discord, which allows 100 characters."""
    for option in OPTIONS:
        for lang in LANGUAGES:
            assert has(lang, f"option.{option.name}"), (lang, option.name)
            text = describe(option, lang, SEED)
            assert text and "{" not in text and len(text) <= 100, (lang, text)


@pytest.mark.parametrize("code", QIANFAN_CODES)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_qianfan_code_has_a_message(code: int, lang: str) -> None:
    error = BackendError("backend_unavailable", provider="qianfan", provider_code=code)
    text = render_error(error, lang)  # type: ignore[arg-type]
    assert str(code) in text
    assert text != t(lang, "error.backend_unavailable")  # type: ignore[arg-type]


def test_qianfan_110_tells_users_what_happened() -> None:
    error = BackendError("backend_auth_failed", provider="qianfan", provider_code=110)
    assert "API key" in render_error(error, "en") and "not charged" in render_error(error, "en")
    assert "API Key" in render_error(error, "zh") and "不扣额度" in render_error(error, "zh")


def test_unknown_provider_code_falls_back_to_the_outcome_message() -> None:
    error = BackendError("backend_unavailable", provider="qianfan", provider_code=999999)
    assert render_error(error, "en") == t("en", "error.backend_unavailable")


@pytest.mark.parametrize("code", sorted(BACKEND_ERROR_CODES))
def test_every_backend_outcome_has_a_message(code: str) -> None:
    for lang in LANGUAGES:
        assert render_error(BackendError(code, seconds=3), lang) == t(lang, f"error.{code}", seconds=3)


def test_other_exceptions_never_leak_their_text() -> None:
    assert render_error(RuntimeError("secret stack detail"), "en") == t("en", "error.internal")


@pytest.mark.parametrize(
    ("explicit", "platform", "default", "expected"),
    [
        ("zh", "en", "en", "zh"),
        (None, "zh-hans", "en", "zh"),
        (None, "zh-CN", "en", "zh"),
        (None, "zh_TW", "en", "zh"),
        (None, "ZH", "en", "zh"),
        (None, "en-US", "zh", "en"),
        (None, "ru", "zh", "zh"),
        (None, None, "zh", "zh"),
        ("auto", "zh", "en", "zh"),
    ],
)
def test_language_choice(explicit: str | None, platform: str | None, default: str, expected: str) -> None:
    assert resolve_language(explicit, platform, default) == expected  # type: ignore[arg-type]


def test_normalize_language() -> None:
    assert normalize_language("") is None and normalize_language("fr") is None


def test_draw_error_message_has_no_raw_placeholders() -> None:
    error = DrawError("out_of_range", option="n", value=9, min=1, max=4)
    assert render_error(error, "en") == "--n must be between 1 and 4; you gave 9."
    assert render_error(error, "zh") == "--n 必须在 1 到 4 之间，您输入的是 9。"
