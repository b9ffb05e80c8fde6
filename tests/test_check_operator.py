"""``sdbot check`` and ``sdbot draw`` as operator tools: chat tokens are signed in with (not vouched for
unchecked), and a failure shows its cause (address, status, the provider's own words), with no secret."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from bot.cli.main import cmd_check
from bot.config import Settings
from tests.backend_support import sdbot
from tests.discord_support import TOKEN as DISCORD_TOKEN
from tests.discord_support import fake_discord
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.qianfan import FakeQianfan
from tests.fakes.stability import FakeStability
from tests.telegram_support import fake_telegram

STABILITY_KEY = "sk-operator-stability-123"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_signs_in_with_the_telegram_token(tmp_path: Path) -> None:
    async with fake_telegram() as tg:
        env = {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_URL": tg.url}
        code, out, err = await sdbot("check", env=env, cwd=tmp_path)
        assert code == 0, err
        assert f"Telegram (TELEGRAM_BOT_TOKEN): works: signed in as @{tg.bot_username}" in out
        assert "Discord (DISCORD_BOT_TOKEN): not configured, so not checked" in out
        assert [c.method for c in tg.calls] == ["getMe"]  # nothing sent to any chat
        code, out, _ = await sdbot("check", env={**env, "TELEGRAM_BOT_TOKEN": "111:wrong-token-xyz"}, cwd=tmp_path)
    assert code == 1 and "Telegram (TELEGRAM_BOT_TOKEN): refused by Telegram" in out and "Check failed" in out
    assert "wrong-token-xyz" not in out
    code, out, _ = await sdbot("check", "--lang", "zh", env={**env, "TELEGRAM_API_URL": f"http://127.0.0.1:{closed_port()}"},
                               cwd=tmp_path)  # fmt: skip
    assert code == 1 and "未检查：无法连接 Telegram" in out


@pytest.mark.parametrize(("token", "expected", "ok"), [(DISCORD_TOKEN, "works: signed in as", True),
                                                       ("MTE.wrong.token", "refused by Discord", False)])  # fmt: skip
async def test_check_signs_in_with_the_discord_token(
    token: str, expected: str, ok: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env({"DISCORD_BOT_TOKEN": token, "SDBOT_DB": str(tmp_path / "x.db")}, env_file=None)
    async with fake_discord():
        code = await cmd_check(argparse.Namespace(lang="en"), settings)
    out = capsys.readouterr().out
    assert f"Discord (DISCORD_BOT_TOKEN): {expected}" in out
    assert code == (0 if ok else 1)


async def test_a_failed_probe_shows_the_cause_to_the_operator(tmp_path: Path) -> None:
    async with FakeStability(api_key=STABILITY_KEY) as fake:
        env = {"SDBOT_BACKEND": "stability", "STABILITY_BASE_URL": fake.url, "STABILITY_API_KEY": "sk-wrong-0000000"}
        code, out, _ = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 1 and "refused the bot's credentials" in out  # the chat user's sentence...
    assert "Detail for the operator: stability" in out and "HTTP 401" in out  # ...and what the operator needs
    assert "sk-wrong-0000000" not in out


async def test_draw_shows_where_the_service_could_not_be_reached(tmp_path: Path) -> None:
    port = closed_port()
    env = {"SDBOT_BACKEND": "a1111", "A1111_URL": f"http://op:s3cret-pw@127.0.0.1:{port}", "SDBOT_BACKEND_RETRIES": "0"}
    code, out, err = await sdbot("draw", "cat", env=env, cwd=tmp_path)
    assert code == 1 and "could not be reached" in err
    assert f"Detail for the operator: at http://***@127.0.0.1:{port}/sdapi/v1/" in err
    assert "ConnectError" in err and "s3cret-pw" not in out + err


async def test_a_refused_qianfan_key_shows_where_what_status_and_what_baidu_said(tmp_path: Path) -> None:
    async with FakeQianfan(api_key="ak-good-123456", secret_key="sk-good-123456") as fake:
        env = {"SDBOT_BACKEND": "qianfan", "QIANFAN_BASE_URL": fake.url, "QIANFAN_API_KEY": "ak-wrong-000000",
               "QIANFAN_SECRET_KEY": "sk-wrong-000000"}  # fmt: skip
        code, out, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 1 and "refused the bot's credentials" in out
    detail = out.partition("Detail for the operator: ")[2]
    assert f"at {fake.url}/oauth/2.0/token ·" in detail and "HTTP 401" in detail and "said" in detail
    assert "ak-wrong" not in out + err and "sk-wrong" not in out + err  # the token URL's query holds both


async def test_a_long_provider_message_is_one_bounded_line(tmp_path: Path) -> None:
    async with FakeBedrock() as fake:  # AWS's signature error quotes the whole canonical request, over lines
        env = {"SDBOT_BACKEND": "bedrock", "BEDROCK_ENDPOINT_URL": fake.url, "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wrong-secret-key-0"}  # fmt: skip
        code, out, _ = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 1
    lines = out.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "Detail for the operator" in line]
    line = lines[at]
    assert "HTTP 403" in line and "InvalidSignatureException" in line and "said" in line
    assert lines[at + 1] == "Chat platforms:"  # nothing of the message spilled onto the lines below
    assert len(line.partition("Detail for the operator: ")[2]) < 400
