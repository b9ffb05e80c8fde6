"""No API key, secret, access token or AWS signature in any log line, exception or message.

Full generations with DEBUG logging on every logger (httpx logs each URL, and Qianfan's URLs carry the access
token), through successes, token refreshes and error paths of the three keyed backends.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bot.backends.base import Backend
from bot.backends.bedrock import BedrockBackend
from bot.backends.qianfan import QianfanBackend
from bot.backends.stability import StabilityBackend
from bot.draw.request import DrawRequest
from bot.errors import BackendError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from bot.process import redact
from tests.backend_support import fast_retry
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.qianfan import FakeQianfan
from tests.fakes.stability import FakeStability

QIANFAN_AK, QIANFAN_SK = "qf-ak-0123456789abcdef", "qf-sk-fedcba9876543210"
STABILITY_KEY = "sk-stability-abcdefghijklmnop"
AWS_AKID, AWS_SECRET, AWS_TOKEN = "AKIDSECRETSTEST42", "aws-secret-key/ABCDEFGHIJ0123", "aws-session-token-QWERTY987"
USER = user_key("telegram", 99)
CAT = DrawRequest("cat", size="768x768", seed=5)
SDXL_CAT = DrawRequest("cat", n=2, seed=5)


@pytest.fixture(autouse=True)
def _scrubbing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    redact.install()  # what `sdbot` does at start
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def run(backend: Backend, request: DrawRequest, errors: list[BaseException]) -> None:
    try:
        await generate(backend, request, user=USER)
    except BackendError as exc:
        errors.append(exc)


async def qianfan_session(errors: list[BaseException]) -> list[str]:
    retry, _ = fast_retry(retries=1)
    async with FakeQianfan(api_key=QIANFAN_AK, secret_key=QIANFAN_SK) as fake:
        async with QianfanBackend(QIANFAN_AK, QIANFAN_SK, base_url=fake.url, retry=retry) as backend:
            await run(backend, CAT, errors)
            fake.expire_tokens()  # 111 -> refresh
            await run(backend, CAT, errors)
            fake.push_error(110)
            fake.push_error(110)  # refused twice: auth failure
            await run(backend, CAT, errors)
            for code in (336003, 17, 336501):
                fake.push_error(code)
                await run(backend, CAT, errors)
            fake.push_malformed_json()
            await run(backend, CAT, errors)
            fake.push_not_an_image()
            await run(backend, CAT, errors)
            report = await backend.check()
            errors.extend(v for _, v in report.findings if isinstance(v, BaseException))
        async with QianfanBackend(QIANFAN_AK, QIANFAN_SK, base_url=fake.url, timeout=0.2, retry=retry) as slow:
            fake.push_delay(1.0)
            await run(slow, CAT, errors)
        async with QianfanBackend(QIANFAN_AK, "wrong-secret-value", base_url=fake.url, retry=retry) as wrong:
            await run(wrong, CAT, errors)
        assert len(fake.issued_tokens) >= 3
        return list(fake.issued_tokens)


async def stability_session(errors: list[BaseException]) -> None:
    retry, _ = fast_retry(retries=1)
    async with FakeStability(api_key=STABILITY_KEY) as fake:
        async with StabilityBackend(STABILITY_KEY, base_url=fake.url, retry=retry) as backend:
            await run(backend, SDXL_CAT, errors)
            for status in (400, 403, 429, 500):
                fake.push_status(status)
                await run(backend, SDXL_CAT, errors)
            fake.push_content_filtered()
            await run(backend, SDXL_CAT, errors)
            fake.push_malformed_json()
            await run(backend, SDXL_CAT, errors)
            await backend.check()
        async with StabilityBackend("sk-wrong-key-value", base_url=fake.url, retry=retry) as wrong:
            await run(wrong, SDXL_CAT, errors)


async def bedrock_session(errors: list[BaseException]) -> list[str]:
    retry, _ = fast_retry(retries=1)
    fake = FakeBedrock(access_key_id=AWS_AKID, secret_access_key=AWS_SECRET, session_token=AWS_TOKEN)
    options = {"region": "us-east-1", "access_key_id": AWS_AKID, "session_token": AWS_TOKEN, "retry": retry}
    options["model_id"] = "stability.stable-diffusion-xl-v1"
    async with fake:
        async with BedrockBackend(endpoint_url=fake.url, secret_access_key=AWS_SECRET, **options) as backend:  # type: ignore[arg-type]
            await run(backend, SDXL_CAT, errors)
            for error_type in ("ThrottlingException", "ValidationException", "ModelTimeoutException"):
                fake.push_error(error_type)
                await run(backend, DrawRequest("cat", seed=1), errors)
            fake.push_content_filtered()
            await run(backend, DrawRequest("cat", seed=2), errors)
            await backend.check()
        # A wrong secret: AWS's InvalidSignatureException message quotes the canonical request, which holds
        # the session token; the backend logs that message.
        async with BedrockBackend(endpoint_url=fake.url, secret_access_key="wrong-secret-000", **options) as wrong:  # type: ignore[arg-type]
            await run(wrong, DrawRequest("cat", seed=3), errors)
        assert fake.auth_errors, "the wrong-secret path was exercised"
        signatures = []
        for call in fake.generate_calls:
            match = re.search(r"Signature=([0-9a-f]{64})", call.headers.get("Authorization", ""))
            if match:
                signatures.append(match.group(1))
        assert len(signatures) >= 6
        return signatures


async def test_no_secret_token_or_signature_in_logs_errors_or_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # `sdbot` quiets httpx below DEBUG; here it must speak
    caplog.set_level(logging.DEBUG, logger="httpcore")
    errors: list[BaseException] = []
    tokens = await qianfan_session(errors)
    await stability_session(errors)
    signatures = await bedrock_session(errors)

    text = caplog.text
    # The check can fail: httpx really logged request URLs, with the token parameter scrubbed.
    assert "HTTP Request: POST" in text and "access_token=***" in text
    assert "client_secret=***" in text
    assert "bedrock answered HTTP 403 InvalidSignatureException" in text
    assert len(errors) >= 12
    forbidden = [QIANFAN_AK, QIANFAN_SK, STABILITY_KEY, AWS_AKID, AWS_SECRET, AWS_TOKEN, *tokens, *signatures]
    for secret in forbidden:
        assert secret not in text, f"{secret[:6]}... leaked into a log line"
    for error in errors:
        shown = [str(error), repr(error), *(render_error(error, lang) for lang in ("en", "zh"))]
        assert isinstance(error, BackendError)
        shown.append(repr(error.as_dict()))
        for secret in forbidden:
            assert all(secret not in s for s in shown), f"{secret[:6]}... leaked into {error!r}"


def test_sigv4_shapes_are_scrubbed_wherever_they_appear() -> None:
    signature = "0f" * 32
    header = (
        f"Authorization: AWS4-HMAC-SHA256 Credential={AWS_AKID}/20260101/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )
    for text in (header, f"Signature:\n{signature}", f"https://h/x?X-Amz-Signature={signature}&X-Amz-Credential=AK"):
        scrubbed = redact.scrub(text)
        assert signature not in scrubbed and AWS_AKID not in scrubbed, scrubbed
    assert redact.scrub("SignedHeaders=host;x-amz-date") == "SignedHeaders=host;x-amz-date"
