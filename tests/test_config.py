"""Configuration: defaults, .env files, and failures that name the variable, in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, variables
from bot.errors import ConfigError
from bot.messages.i18n import render_error

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.from_env({}, env_file=None)
    assert (s.backend, s.lang, s.log_level, s.db) == ("placeholder", "en", "INFO", Path("data/sdbot.db"))
    assert (s.daily_images, s.rate_per_minute, s.max_pending, s.chat_daily_images) == (20, 3, 2, 0)
    assert str(s.quota_tz) == "UTC" and s.admins == frozenset()
    assert s.explicit == frozenset()


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SDBOT_LANG=zh\nSDBOT_BACKEND=qianfan\n# comment\nQIANFAN_API_KEY='abc def'\n")
    s = Settings.from_env({"SDBOT_BACKEND": "stability"}, env_file=env)
    assert (s.lang, s.backend, s.qianfan_api_key) == ("zh", "stability", "abc def")
    assert {"SDBOT_LANG", "SDBOT_BACKEND", "QIANFAN_API_KEY"} <= s.explicit


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SDBOT_BACKEND", "midjourney"),
        ("SDBOT_LANG", "fr"),
        ("SDBOT_LOG_LEVEL", "loud"),
        ("SDBOT_DAILY_IMAGES", "-1"),
        ("SDBOT_DAILY_IMAGES", "many"),
        ("SDBOT_BACKEND_TIMEOUT", "0"),
        ("SDBOT_BACKEND_TIMEOUT", "nan"),
        ("SDBOT_QUOTA_TZ", "Mars/Olympus"),
        ("SDBOT_ADMINS", "telegram:abc"),
        ("SDBOT_ADMINS", "irc:1"),
        ("QIANFAN_BASE_URL", "ftp://x"),
        ("TELEGRAM_SEND_ORIGINALS", "maybe"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value}, env_file=None)
    assert info.value.variable == name
    for lang in ("en", "zh"):
        message = render_error(info.value, lang)  # type: ignore[arg-type]
        assert name in message and "{" not in message


def test_parsed_values() -> None:
    s = Settings.from_env(
        {"SDBOT_ADMINS": "telegram:1, Discord:22", "SDBOT_QUOTA_TZ": "Asia/Shanghai", "SDBOT_LOG_LEVEL": "debug",
         "A1111_URL": "http://127.0.0.1:7860/", "TELEGRAM_SEND_ORIGINALS": "yes"},
        env_file=None,
    )  # fmt: skip
    assert s.admins == frozenset({"telegram:1", "discord:22"})
    assert str(s.quota_tz) == "Asia/Shanghai" and s.log_level == "DEBUG"
    assert s.a1111_url == "http://127.0.0.1:7860" and s.telegram_send_originals is True


def test_secrets_are_listed() -> None:
    s = Settings.from_env({"QIANFAN_API_KEY": "ak-123456", "TELEGRAM_BOT_TOKEN": "1:tok-abcdef"}, env_file=None)
    assert set(s.secrets()) == {"ak-123456", "1:tok-abcdef"}


def test_every_variable_is_documented_in_readme_and_env_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for var in variables():
        assert f"`{var['name']}`" in readme, f"{var['name']} missing from README.md"
        assert f"{var['name']}=" in example, f"{var['name']} missing from .env.example"
        # each variable in .env.example has a comment line right above it
        lines = example.splitlines()
        index = next(i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{var['name']}="))
        assert lines[index - 1].startswith("#"), f"{var['name']} has no comment in .env.example"


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"SDBOT_BACKEND": "qianfan"}, ["QIANFAN_API_KEY", "QIANFAN_SECRET_KEY"]),
        ({"SDBOT_BACKEND": "bedrock", "AWS_SECRET_ACCESS_KEY": "x"}, ["AWS_REGION", "AWS_ACCESS_KEY_ID"]),
    ],
)
async def test_every_missing_variable_is_named_at_once(env: dict[str, str], missing: list[str], tmp_path: Path) -> None:
    """An operator fixes the configuration in one go, not one restart per missing key."""
    from tests.backend_support import sdbot

    code, _, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 3 and ", ".join(missing) in err and "Traceback" not in err
    code, _, err = await sdbot("check", "--lang", "zh", env=env, cwd=tmp_path)
    assert code == 3 and "、".join(missing) in err and "配置错误" in err
