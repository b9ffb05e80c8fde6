"""The Qianfan backend with the real httpx client against the local fake Qianfan on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from PIL import Image

from bot.backends.http import RetryPolicy, retry_after_header, sniff_format, wait_seconds
from bot.backends.qianfan import QianfanBackend, token_margin
from bot.config import Settings
from bot.draw import params
from bot.draw.request import DrawRequest
from bot.errors import BackendError, ConfigError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error, t
from tests.backend_support import Clock, assert_image, fast_retry, sdbot
from tests.fakes.qianfan import FakeQianfan

AK, SK = "qianfan-test-api-key-1", "qianfan-test-secret-key-1"
USER = user_key("telegram", 123456789)
CAT = DrawRequest("cat", size="768x768", seed=7)
# Rate-limit headers saying the window still has room, so only the backoff decides the wait.
ROOM = {"X-Ratelimit-Remaining-Requests": "5", "X-Ratelimit-Remaining-Tokens": "1000"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQianfan]:
    async with FakeQianfan(api_key=AK, secret_key=SK) as server:
        yield server


def make(fake: FakeQianfan, retry: RetryPolicy | None = None, **kwargs: object) -> QianfanBackend:
    return QianfanBackend(
        AK,
        SK,
        base_url=fake.url,
        timeout=kwargs.pop("timeout", 5.0),  # type: ignore[arg-type]
        connect_timeout=1.0,
        retry=retry or fast_retry()[0],
        **kwargs,  # type: ignore[arg-type]
    )


async def test_success_sends_the_seed_document_body_and_returns_real_images(fake: FakeQianfan) -> None:
    request = DrawRequest(
        "a cat on a mat",
        negative_prompt="dogs",
        size="768x1024",
        n=2,
        steps=25,
        sampler_index="DPM++ SDE Karras",
        seed=4294967295,
        cfg_scale=7.5,
        style="Craft Clay",
    )
    async with make(fake) as backend:
        images = await backend.generate(request, user=USER)
        await backend.generate(CAT, user=USER)
    assert len(images) == 2
    for image in images:
        assert_image(image, 768, 1024)
    assert [image.seed for image in images] == [4294967295, 0]  # seed + i, wrapped into the seed range
    call = fake.generate_calls[0]
    assert call.body == {
        "prompt": "a cat on a mat",
        "negative_prompt": "dogs",
        "size": "768x1024",
        "n": 2,
        "steps": 25,
        "sampler_index": "DPM++ SDE Karras",
        "seed": 4294967295,
        "cfg_scale": 7.5,
        "style": "Craft Clay",
        "user_id": USER,
    }
    assert "123456789" not in call.raw_body.decode()
    assert call.query["access_token"] == fake.issued_tokens[0]
    assert fake.token_requests == 1  # the second generation reused the cached token
    token_call = fake.token_calls[0]
    assert token_call.query == {"grant_type": "client_credentials", "client_id": AK, "client_secret": SK}
    assert "negative_prompt" not in fake.generate_calls[1].body  # none given: not sent as null


async def test_generation_draws_and_sends_a_seed_when_the_user_gave_none(fake: FakeQianfan) -> None:
    async with make(fake) as backend:
        result = await generate(backend, DrawRequest("cat", size="576x1024"), user=USER)
    assert result.request.seed is not None
    assert fake.generate_calls[0].body["seed"] == result.request.seed == result.images[0].seed
    assert_image(result.images[0], 576, 1024)


async def test_capabilities_are_the_seed_documents() -> None:
    backend = QianfanBackend(AK, SK)
    caps = await backend.capabilities()
    await backend.aclose()
    assert caps.sizes == params.SIZES and caps.samplers == params.SAMPLERS
    assert caps.styles == tuple(params.STYLES) and caps.max_n == 4
    assert (caps.steps, caps.cfg, caps.negative_prompt, caps.seed) == ((10, 50), (0.0, 30.0), True, True)


@pytest.mark.parametrize(
    ("code", "outcome", "user_fault"),
    [
        (3, "backend_config", False),
        (6, "backend_config", False),
        (14, "backend_auth_failed", False),
        (17, "backend_quota_exhausted", False),
        (19, "backend_quota_exhausted", False),
        (336001, "backend_invalid_request", True),
        (336002, "backend_invalid_request", False),
        (336003, "backend_invalid_request", True),
        (336004, "backend_config", False),
        (336005, "backend_config", False),
        (336101, "backend_config", False),
        (336104, "backend_invalid_request", True),
        (336105, "backend_invalid_request", True),
    ],
)
async def test_fatal_codes_fail_at_once_with_their_own_message(
    fake: FakeQianfan, code: int, outcome: str, user_fault: bool
) -> None:
    retry, sleeps = fast_retry()
    fake.push_error(code)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.provider, error.provider_code, error.user_fault) == (outcome, "qianfan", code, user_fault)
    assert len(fake.generate_calls) == 1 and sleeps.delays == []  # no retry, no token refresh
    assert fake.token_requests == 1
    for lang in ("en", "zh"):
        text = render_error(error, lang)
        assert str(code) in text and text != t(lang, f"error.{outcome}")


async def test_an_unknown_code_is_unavailable_with_the_generic_message(fake: FakeQianfan) -> None:
    fake.push_error(424242, "something new")
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_unavailable", 424242)
    assert render_error(caught.value, "en") == t("en", "error.backend_unavailable")
    assert len(fake.generate_calls) == 1


@pytest.mark.parametrize("code", [1, 2, 4, 15, 18, 336000, 336100, 336501, 336502])
async def test_transient_codes_are_retried_with_backoff(fake: FakeQianfan, code: int) -> None:
    retry, sleeps = fast_retry()
    fake.push_error(code, headers=ROOM)
    async with make(fake, retry) as backend:
        images = await backend.generate(CAT, user=USER)
    assert len(images) == 1 and len(fake.generate_calls) == 2
    assert sleeps.delays == [0.01]


async def test_retries_are_bounded_and_back_off_exponentially(fake: FakeQianfan) -> None:
    retry, sleeps = fast_retry(retries=3)
    for _ in range(4):
        fake.push_error(336100)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_unavailable", 336100)
    assert len(fake.generate_calls) == 4
    assert sleeps.delays == [0.01, 0.02, 0.04]


async def test_backoff_has_jitter_in_production() -> None:
    delays = set()
    for _ in range(20):
        _, sleeps = fast_retry()
        policy = RetryPolicy(retries=1, factor=0.01, jitter=0.05, sleep=sleeps)
        calls = 0

        async def flaky() -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise BackendError("backend_unavailable", provider="qianfan", provider_code=2)
            return 1

        await policy.run(flaky, lambda e: True)
        assert 0.01 <= sleeps.delays[0] <= 0.06
        delays.add(sleeps.delays[0])
    assert len(delays) > 1


async def test_a_spent_per_minute_window_waits_for_the_window(fake: FakeQianfan) -> None:
    retry, sleeps = fast_retry(max_wait=120)
    fake.push_error(336501)  # the fake says X-Ratelimit-Remaining-Requests: 0
    async with make(fake, retry) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert sleeps.delays == [60.0]


async def test_a_wait_longer_than_allowed_is_reported_not_retried_early(fake: FakeQianfan) -> None:
    retry, sleeps = fast_retry(max_wait=30)
    fake.push_error(336502)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.provider_code, error.retry_after, error.params["seconds"]) == (
        "backend_rate_limited",
        336502,
        60.0,
        60,
    )
    assert sleeps.delays == [] and len(fake.generate_calls) == 1


async def test_retry_after_header_and_qps_window_are_honoured(fake: FakeQianfan) -> None:
    retry, sleeps = fast_retry()
    fake.push_error(18, headers={"Retry-After": "3"})
    fake.push_error(18)  # remaining 0, no Retry-After: the one-second QPS window
    async with make(fake, retry) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert sleeps.delays == [3.0, 1.0]


async def test_exhausted_rate_limit_tells_users_how_long_to_wait(fake: FakeQianfan) -> None:
    retry, _ = fast_retry(retries=1)
    fake.push_response(429, {"error": "too many"}, headers={"Retry-After": "7"})
    fake.push_response(429, {"error": "too many"}, headers={"Retry-After": "7"})
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.retry_after, error.params["seconds"]) == ("backend_rate_limited", 7.0, 7)
    assert "7" in render_error(error, "en") and "7" in render_error(error, "zh")


@pytest.mark.parametrize("code", [13, 100, 110, 111])
async def test_token_codes_refresh_the_token_and_retry_once(fake: FakeQianfan, code: int) -> None:
    fake.push_error(code)
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert fake.token_requests == 2 and len(fake.generate_calls) == 2
    assert fake.generate_calls[1].query["access_token"] == fake.issued_tokens[1] != fake.issued_tokens[0]


@pytest.mark.parametrize(("code", "outcome"), [(110, "backend_auth_failed"), (13, "backend_unavailable")])
async def test_a_token_refused_twice_is_not_retried_again(fake: FakeQianfan, code: int, outcome: str) -> None:
    fake.push_error(code)
    fake.push_error(code)
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == (outcome, code)
    assert fake.token_requests == 2 and len(fake.generate_calls) == 2


async def test_token_expiry_mid_session(fake: FakeQianfan) -> None:
    async with make(fake) as backend:
        await backend.generate(CAT, user=USER)
        fake.expire_tokens()  # Baidu expired it early: the next call answers 111
        await backend.generate(CAT, user=USER)
        fake.forget_tokens()  # and now it does not know it at all: 110
        await backend.generate(CAT, user=USER)
    assert fake.token_requests == 3
    assert [c.query["access_token"] for c in fake.generate_calls] == [
        fake.issued_tokens[0],
        fake.issued_tokens[0],
        fake.issued_tokens[1],
        fake.issued_tokens[1],
        fake.issued_tokens[2],
    ]


async def test_the_cached_token_is_replaced_shortly_before_it_expires() -> None:
    clock = Clock()
    async with FakeQianfan(api_key=AK, secret_key=SK, expires_in=600) as fake, make(fake, clock=clock) as backend:
        await backend.generate(CAT, user=USER)
        clock.now += 600 - token_margin(600) - 1
        await backend.generate(CAT, user=USER)
        assert fake.token_requests == 1
        clock.now += 2  # inside the margin: replaced before use, so Baidu never answers 111
        await backend.generate(CAT, user=USER)
    assert fake.token_requests == 2 and len(fake.generate_calls) == 3
    assert token_margin(2592000) == 300 and token_margin(60) == 6


async def test_fifty_concurrent_requests_with_an_expired_token_refresh_it_once(fake: FakeQianfan) -> None:
    async with make(fake) as backend:
        await backend.generate(CAT, user=USER)
        fake.expire_tokens()
        results = await asyncio.gather(*(backend.generate(CAT, user=USER) for _ in range(50)))
    assert len(results) == 50 and all(len(images) == 1 for images in results)
    assert fake.token_requests == 2  # the first token, then exactly one refresh
    assert len(fake.generate_calls) == 1 + 50 + 50  # each was refused once, then succeeded with the new token


async def test_fifty_concurrent_requests_at_start_fetch_one_token(fake: FakeQianfan) -> None:
    fake.push_token_delay(0.1)  # the fetch is slow, so every request finds it in flight
    async with make(fake) as backend:
        await asyncio.gather(*(backend.generate(CAT, user=USER) for _ in range(50)))
    assert fake.token_requests == 1 and len(fake.generate_calls) == 50


async def test_a_failed_token_fetch_fails_every_waiter_once_then_recovers(fake: FakeQianfan) -> None:
    retry, _ = fast_retry(retries=0)
    fake.push_token_response(500, {"error": "internal"})
    async with make(fake, retry) as backend:
        outcomes = await asyncio.gather(*(backend.generate(CAT, user=USER) for _ in range(10)), return_exceptions=True)
        assert all(isinstance(o, BackendError) and o.code == "backend_unavailable" for o in outcomes)
        assert fake.token_requests == 1
        assert len(await backend.generate(CAT, user=USER)) == 1  # not cached: the next request tries again
    assert fake.token_requests == 2


async def test_token_server_errors_are_retried(fake: FakeQianfan) -> None:
    fake.push_token_response(503, "<html>busy</html>")
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert fake.token_requests == 2


@pytest.mark.parametrize(("api_key", "secret_key"), [("wrong-api-key", SK), (AK, "wrong-secret-key")])
async def test_wrong_credentials_are_an_auth_failure(fake: FakeQianfan, api_key: str, secret_key: str) -> None:
    async with QianfanBackend(api_key, secret_key, base_url=fake.url, retry=fast_retry()[0]) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.provider_code) == ("backend_auth_failed", "invalid_client")
    assert fake.generate_calls == [] and fake.token_requests == 1
    assert render_error(error, "en") == t("en", "error.backend_auth_failed")


async def test_slow_answer_past_the_timeout_is_a_timeout_and_not_retried(fake: FakeQianfan) -> None:
    retry, sleeps = fast_retry()
    fake.push_delay(2.0)
    async with make(fake, retry, timeout=0.2) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_timeout" and caught.value.params["reason"] == "timeout"
    assert len(fake.generate_calls) == 1 and sleeps.delays == []


async def test_a_dropped_connection_is_retried(fake: FakeQianfan) -> None:
    fake.push_disconnect()
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2


async def test_a_gateway_error_is_retried(fake: FakeQianfan) -> None:
    fake.push_response(502, "<html>Bad Gateway</html>")
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2


async def test_malformed_json_is_unavailable_and_not_retried(fake: FakeQianfan) -> None:
    fake.push_malformed_json()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_unavailable", "malformed")
    assert len(fake.generate_calls) == 1


async def test_a_success_without_images_is_unavailable(fake: FakeQianfan) -> None:
    fake.push_response(200, {"id": "as-1", "object": "image", "data": []})
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_unavailable"


async def test_invalid_base64_is_a_bad_image(fake: FakeQianfan) -> None:
    fake.push_response(200, {"data": [{"object": "image", "b64_image": "not base64!!", "index": 1}]})
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_bad_image"


@pytest.mark.parametrize("fault", ["push_not_an_image", "push_wrong_size", "push_bomb"])
async def test_answers_that_are_not_the_image_asked_for_are_bad_images(fake: FakeQianfan, fault: str) -> None:
    getattr(fake, fault)()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, CAT, user=USER)
    assert caught.value.code == "backend_bad_image"


async def test_an_unreachable_service_is_unavailable_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retry, sleeps = fast_retry(retries=2)
    async with QianfanBackend(AK, SK, base_url=f"http://127.0.0.1:{port}", retry=retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_unavailable", "connect")
    assert len(sleeps.delays) == 2


async def test_check_fetches_a_token_and_proves_access_without_generating(fake: FakeQianfan) -> None:
    async with make(fake) as backend:
        report = await backend.check()
    assert report.ok and report.backend == "qianfan"
    assert fake.token_requests == 1
    assert len(fake.generate_calls) == 1 and fake.generate_calls[0].body == {}  # refused: no prompt
    rendered = [value.render("en") for _, value in report.findings[1:]]  # type: ignore[union-attr]
    assert "30 days" in rendered[0] and "336003" in rendered[1]


async def test_check_reports_refused_credentials(fake: FakeQianfan) -> None:
    async with QianfanBackend(AK, "wrong-secret-key", base_url=fake.url) as backend:
        report = await backend.check()
    assert not report.ok and fake.generate_calls == []
    _, error = report.findings[-1]
    assert isinstance(error, BackendError) and error.code == "backend_auth_failed"


def test_from_settings_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        QianfanBackend.from_settings(Settings.from_env({"SDBOT_BACKEND": "qianfan"}, env_file=None))
    assert caught.value.variables == ("QIANFAN_API_KEY", "QIANFAN_SECRET_KEY")
    env = {"SDBOT_BACKEND": "qianfan", "QIANFAN_API_KEY": AK}
    with pytest.raises(ConfigError) as caught:
        QianfanBackend.from_settings(Settings.from_env(env, env_file=None))
    assert caught.value.variable == "QIANFAN_SECRET_KEY"


async def test_sdbot_draw_runs_on_qianfan(fake: FakeQianfan, tmp_path: Path) -> None:
    env = {"SDBOT_BACKEND": "qianfan", "QIANFAN_BASE_URL": fake.url, "QIANFAN_API_KEY": AK, "QIANFAN_SECRET_KEY": SK}
    args = ("--json", "--out", str(tmp_path / "images"), "cat", "--size", "768x1024", "--n", "2", "--style", "动漫")
    code, out, err = await sdbot("draw", *args, env=env, cwd=tmp_path)
    assert code == 0, err
    data = json.loads(out)
    assert len(data["images"]) == 2
    for path in data["images"]:
        with Image.open(path) as img:
            assert img.size == (768, 1024)
    body = fake.generate_calls[0].body
    assert (body["style"], body["n"], body["seed"]) == ("Anime", 2, data["request"]["seed"])
    assert len(body["user_id"]) == 32
    fake.push_error(17)
    code, out, err = await sdbot("draw", "--lang", "zh", "cat", env=env, cwd=tmp_path)
    assert code == 1 and "17" in err and "Traceback" not in err
    for secret in (AK, SK, *fake.issued_tokens):
        assert secret not in out + err


def test_retry_after_header_forms() -> None:
    assert retry_after_header({"Retry-After": "2.5"}) == 2.5
    assert retry_after_header({}) is None and retry_after_header({"Retry-After": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_header({"Retry-After": later}) or 0) <= 31
    assert retry_after_header({"Retry-After": "-5"}) == 0.0
    assert (wait_seconds(0.2, 60), wait_seconds(None, 60), wait_seconds(7.1, 60)) == (1, 60, 8)
    assert (sniff_format(b"\xff\xd8\xff\xe0"), sniff_format(b"RIFF....WEBPVP8 "), sniff_format(b"\x89PNG")) == (
        "JPEG",
        "WEBP",
        "PNG",
    )
