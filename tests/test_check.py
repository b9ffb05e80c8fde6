"""`sdbot check`, run as a subprocess against the fakes: exit 0 probes passed, 1 a probe failed, 3 bad config."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.backends.placeholder import PlaceholderBackend
from tests.backend_support import sdbot
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.qianfan import FakeQianfan
from tests.fakes.stability import FakeStability

AK, SK = "check-qianfan-ak-123", "check-qianfan-sk-456"
STABILITY_KEY = "sk-check-stability-789"
AKID, SECRET = "AKIDCHECKTEST0001", "check-aws-secret/abcdef"


def qianfan_env(url: str, secret: str = SK) -> dict[str, str]:
    return {"SDBOT_BACKEND": "qianfan", "QIANFAN_BASE_URL": url, "QIANFAN_API_KEY": AK, "QIANFAN_SECRET_KEY": secret}


def bedrock_env(url: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "SDBOT_BACKEND": "bedrock",
        "BEDROCK_ENDPOINT_URL": url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": AKID,
        "AWS_SECRET_ACCESS_KEY": secret,
        "BEDROCK_MODEL_ID": "stability.stable-diffusion-xl-v1",
    }


async def test_placeholder_checks_ok_in_both_languages(tmp_path: Path) -> None:
    code, out, _ = await sdbot("check", env={}, cwd=tmp_path)
    assert code == 0
    assert out.splitlines() == [
        "Image service: placeholder",
        "  Images: drawn offline; no image service is called",
        "Chat platforms:",
        "  Telegram (TELEGRAM_BOT_TOKEN): not configured, so not checked",
        "  Discord (DISCORD_BOT_TOKEN): not configured, so not checked",
        "Check passed: the configuration is valid and every credential checked above works. No image was generated.",
    ]
    code, out, _ = await sdbot("check", env={"SDBOT_LANG": "zh"}, cwd=tmp_path)
    assert code == 0 and "图像服务：placeholder" in out and "检查通过" in out


async def test_placeholder_report() -> None:
    report = await PlaceholderBackend().check()
    assert report.ok and report.backend == "placeholder"


async def test_qianfan_ok_fetches_a_token_and_generates_nothing(tmp_path: Path) -> None:
    async with FakeQianfan(api_key=AK, secret_key=SK) as fake:
        code, out, err = await sdbot("check", env=qianfan_env(fake.url), cwd=tmp_path)
    assert code == 0, err
    assert fake.token_requests == 1
    assert [call.body for call in fake.generate_calls] == [{}]  # the empty probe, refused with 336003
    assert f"Endpoint: {fake.url}" in out and "valid for 30 days" in out and "336003" in out
    assert "Check passed" in out
    for secret in (AK, SK, *fake.issued_tokens):
        assert secret not in out + err


@pytest.mark.parametrize(("lang", "fragment"), [("en", "API key"), ("zh", "API Key")])
async def test_qianfan_wrong_secret_fails_the_probe(tmp_path: Path, lang: str, fragment: str) -> None:
    async with FakeQianfan(api_key=AK, secret_key=SK) as fake:
        env = {**qianfan_env(fake.url, secret="wrong-secret-key"), "SDBOT_LANG": lang}
        code, out, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 1
    assert fragment in out and fake.generate_calls == []
    assert "wrong-secret-key" not in out + err and "Traceback" not in err


async def test_qianfan_missing_variable_is_a_config_error(tmp_path: Path) -> None:
    code, _, err = await sdbot("check", env={"SDBOT_BACKEND": "qianfan", "QIANFAN_API_KEY": AK}, cwd=tmp_path)
    assert code == 3 and "QIANFAN_SECRET_KEY" in err


async def test_an_unparsable_setting_is_a_config_error(tmp_path: Path) -> None:
    code, _, err = await sdbot("check", "--lang", "zh", env={"SDBOT_BACKEND": "midjourney"}, cwd=tmp_path)
    assert code == 3 and "SDBOT_BACKEND" in err and "配置错误" in err


async def test_an_unreachable_service_fails_the_probe(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**qianfan_env(f"http://127.0.0.1:{port}"), "SDBOT_BACKEND_RETRIES": "0"}
    code, out, _ = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 1 and "could not be reached" in out


async def test_stability_ok_and_wrong_key(tmp_path: Path) -> None:
    async with FakeStability(api_key=STABILITY_KEY, credits=12.5) as fake:
        env = {"SDBOT_BACKEND": "stability", "STABILITY_BASE_URL": fake.url, "STABILITY_API_KEY": STABILITY_KEY}
        env["STABILITY_ENGINE"] = "stable-diffusion-xl-1024-v1-0"
        code, out, err = await sdbot("check", env=env, cwd=tmp_path)
        assert code == 0, err
        assert "Balance: 12.5 credits" in out and "stable-diffusion-xl-1024-v1-0 is available" in out
        code, out, err = await sdbot("check", env={**env, "STABILITY_API_KEY": "sk-wrong-000000"}, cwd=tmp_path)
        assert code == 1 and "refused the bot's credentials" in out
        code, out, err = await sdbot("check", env={**env, "STABILITY_ENGINE": "sdxl-typo"}, cwd=tmp_path)
        assert code == 1 and "sdxl-typo is not available to this key" in out
    assert fake.generate_calls == []
    assert STABILITY_KEY not in out + err


async def test_bedrock_ok_wrong_secret_and_missing_region(tmp_path: Path) -> None:
    async with FakeBedrock(access_key_id=AKID, secret_access_key=SECRET) as fake:
        code, out, err = await sdbot("check", env=bedrock_env(fake.url), cwd=tmp_path)
        assert code == 0, err
        assert "Region: us-east-1" in out and "Credentials: found (source: config)" in out
        assert "ValidationException" in out and "Check passed" in out
        assert [call.raw_body for call in fake.generate_calls] == [b"{}"] and fake.auth_errors == []
        code, out, err = await sdbot("check", env=bedrock_env(fake.url, secret="wrong-aws-secret"), cwd=tmp_path)
        assert code == 1 and "refused the bot's credentials" in out
    env = bedrock_env(fake.url)
    del env["AWS_REGION"]
    code, _, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 3 and "AWS_REGION" in err
    env = bedrock_env(fake.url)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    code, _, err = await sdbot("check", env=env, cwd=tmp_path)  # nothing in the standard chain either
    assert code == 3 and "AWS_ACCESS_KEY_ID" in err
    assert SECRET not in out + err
