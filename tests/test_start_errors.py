"""Start-up faults an operator meets, through the real executable or the real client libraries: an answer that
is not the platform's API, an address that cannot be a URL, and passwords in URL settings kept secret."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from aiohttp import web

from adapters import probe
from bot.config import Settings
from bot.errors import ConfigError
from bot.messages.i18n import render_error
from tests.discord_support import TOKEN, fake_discord, running_bot
from tests.fakes.server import FakeServer

SDBOT = Path(sys.executable).parent / "sdbot"


async def sdbot(*args: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """The installed ``sdbot``, without blocking the loop the fake servers answer on."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_"))}
    environment.update(SDBOT_DB=str(cwd / "sdbot.db"), **env)
    process = await asyncio.create_subprocess_exec(
        str(SDBOT), *args, cwd=cwd, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotABotApi(FakeServer):
    """A server at TELEGRAM_API_URL that answers every call the same way: by default, getMe's answer with a
    user lacking the fields the Bot API always sends."""

    def __init__(self, status: int = 200, body: str = '{"ok": true, "result": {"id": 1}}', ctype: str = "") -> None:
        super().__init__()
        self.status, self.body = status, body
        self.ctype = ctype or ("application/json" if body.startswith("{") else "text/html")
        self.app.router.add_route("*", "/bot{token}/{method}", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, text=self.body, content_type=self.ctype)


async def test_a_getme_answer_without_the_required_fields_is_a_clean_start_error(tmp_path: Path) -> None:
    async with NotABotApi() as server:
        code, _, err = await sdbot(
            "run", cwd=tmp_path, TELEGRAM_BOT_TOKEN="123456:abcdefghij", TELEGRAM_API_URL=server.url
        )
        assert server.requests and server.requests[0][1].endswith("/getMe")
    assert code == 3, err
    assert "Traceback" not in err and "first_name" in err  # the cause, for the operator, in the log line
    assert f"Telegram at {server.url} (TELEGRAM_API_URL) answered the sign-in with something" in err


REFUSED = '{"ok": false, "error_code": 401, "description": "Unauthorized"}'
FLOOD = '{"ok": false, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 7}}'


NOT_API = ("answered the sign-in with something", "not checked: the answer was not Telegram's API")
DOWN = ("Could not reach Telegram", "not checked: Telegram could not be reached")


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        # A web server's own page at a wrong address: not "the token was refused" (PTB's reading of any 404).
        (404, "<html>404 Not Found</html>", NOT_API),
        (200, "<html>a captive portal</html>", NOT_API),
        (502, "<html>502 Bad Gateway</html>", DOWN),
        (401, REFUSED, ("Telegram refused the bot token in TELEGRAM_BOT_TOKEN", "refused by Telegram")),
    ],
)
async def test_a_sign_in_answer_is_read_for_what_it_is(
    status: int, body: str, says: tuple[str, str], tmp_path: Path
) -> None:
    run_says, check_says = says
    async with NotABotApi(status, body) as server:
        env = {"TELEGRAM_BOT_TOKEN": "123456:abcdefghij", "TELEGRAM_API_URL": server.url}
        code, out, err = await sdbot("run", cwd=tmp_path, **env)
        assert code == 3 and run_says in err and "Traceback" not in out + err, err
        code, out, err = await sdbot("check", cwd=tmp_path, **env)
        assert code == 1 and f"Telegram (TELEGRAM_BOT_TOKEN): {check_says}" in out and "Traceback" not in out + err
        assert "abcdefghij" not in out + err


async def test_flood_control_at_sign_in_is_not_a_strange_answer(tmp_path: Path) -> None:
    async with NotABotApi(429, FLOOD) as server:
        code, out, _ = await sdbot("check", cwd=tmp_path, TELEGRAM_BOT_TOKEN="1:x", TELEGRAM_API_URL=server.url)
    assert code == 1 and "Telegram could not be reached" in out and "HTTP 429, asked to wait 7 s" in out


async def test_a_discord_login_answer_without_the_required_fields_is_a_clean_start_error(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        dc.bot_user = {"username": "sdbot"}  # no id, discriminator...
        with pytest.raises(ConfigError) as caught:
            async with running_bot(dc, tmp_path / "sdbot.db"):
                pass
    assert caught.value.code == "platform_bad_answer"
    assert "DISCORD_BOT_TOKEN" in render_error(caught.value, "en") and "Discord" in render_error(caught.value, "zh")


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_url_setting_that_httpx_cannot_read_is_a_configuration_error(command: str, tmp_path: Path) -> None:
    env = {"SDBOT_BACKEND": "qianfan", "QIANFAN_API_KEY": "ak-123456", "QIANFAN_SECRET_KEY": "sk-123456",
           "QIANFAN_BASE_URL": "http://127.0.0.1:notaport", "TELEGRAM_BOT_TOKEN": "123456:abcdefghij"}  # fmt: skip
    code, _, err = await sdbot(command, cwd=tmp_path, **env)
    assert code == 3 and "QIANFAN_BASE_URL" in err and "Traceback" not in err and "InvalidURL" not in err
    for bad in ("http://:80", "http://h:0", "http://h:70000", "ftp://h", "http://h/x?a=1", "http://xn--"):
        code, _, err = await sdbot(command, cwd=tmp_path, **{**env, "QIANFAN_BASE_URL": bad})
        assert code == 3 and "QIANFAN_BASE_URL" in err and "Traceback" not in err, (bad, err)


@pytest.mark.parametrize(
    "variable", ["TELEGRAM_API_URL", "TELEGRAM_WEBHOOK_URL", "A1111_URL", "MODELSLAB_BASE_URL", "BEDROCK_ENDPOINT_URL"]
)
async def test_every_url_setting_is_checked_and_a_password_in_a_bad_one_is_not_shown(
    variable: str, tmp_path: Path
) -> None:
    # A '/' in the password ends the URL's authority early: the value cannot be read, and its error must not
    # print what looks like a path but is the rest of the password.
    code, out, err = await sdbot(
        "check", cwd=tmp_path, TELEGRAM_BOT_TOKEN="123456:abcdefghij", **{variable: "http://op:pa/ss-word@h:notaport"}
    )
    assert code == 3 and variable in err and "http://***@h:notaport" in err and "Traceback" not in err, err
    assert "pa/ss" not in out + err and "ss-word" not in out + err


async def test_a_password_in_a_url_setting_is_a_secret(tmp_path: Path) -> None:
    port = closed_port()
    code, out, err = await sdbot(
        "run", cwd=tmp_path, SDBOT_LOG_LEVEL="DEBUG", TELEGRAM_BOT_TOKEN="123456:abcdefghij",
        TELEGRAM_API_URL=f"http://proxyuser:s3cretpw@127.0.0.1:{port}",
    )  # fmt: skip
    assert code == 3 and f"Could not reach Telegram at http://***@127.0.0.1:{port}" in err
    assert "s3cretpw" not in out + err and "proxyuser" not in out + err
    # A short one too (too short to register as a secret: the URL's shape gives it away).
    code, out, err = await sdbot(
        "check", cwd=tmp_path, SDBOT_BACKEND="a1111", A1111_URL=f"http://u:pw@127.0.0.1:{port}"
    )
    assert code == 1 and "127.0.0.1" in out + err
    assert ":pw@" not in out + err


async def test_a_user_name_alone_in_a_url_setting_is_a_secret(tmp_path: Path) -> None:
    # https://<token>@host: some proxies take their key as the URL's user name, with no password.
    port = closed_port()
    for env in ({"TELEGRAM_API_URL": f"http://tok3n-as-user@127.0.0.1:{port}"},
                {"SDBOT_BACKEND": "stability", "STABILITY_API_KEY": "sk-000000000",
                 "STABILITY_BASE_URL": f"http://tok3n-as-user@127.0.0.1:{port}"}):  # fmt: skip
        code, out, err = await sdbot("check", cwd=tmp_path, SDBOT_LOG_LEVEL="DEBUG", TELEGRAM_BOT_TOKEN="1:x", **env)
        assert code == 1 and f"http://***@127.0.0.1:{port}" in out + err
        assert "tok3n" not in out + err


async def test_discord_failing_with_5xx_at_login_is_unreachable_not_a_strange_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleep = asyncio.sleep

    async def quick(delay: float, result: object = None) -> object:  # discord.py's 1+3+5+7 s between retries
        return await sleep(min(delay, 0.01), result)

    monkeypatch.setattr(asyncio, "sleep", quick)
    async with fake_discord() as dc:
        dc.fail_next("GET", r"^/users/@me$", status=503, count=10)
        with pytest.raises(ConfigError) as caught:
            async with running_bot(dc, tmp_path / "sdbot.db"):
                pass
        settings = Settings.from_env({"DISCORD_BOT_TOKEN": TOKEN}, env_file=None)
        (_, discord_check) = await probe.check_tokens(settings)
    assert caught.value.code == "platform_unreachable"
    assert discord_check.outcome == "unreachable" and "HTTP 503" in discord_check.detail
