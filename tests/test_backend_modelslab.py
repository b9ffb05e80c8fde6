"""The ModelsLab backend with the real httpx client against the local fake ModelsLab on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from bot.backends import create_backend
from bot.backends.http import RetryPolicy
from bot.backends.modelslab import SIZES, ModelsLabBackend
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError
from bot.jobs.generation import generate
from bot.messages.i18n import LANGUAGES, Msg, render_error
from bot.process import redact
from tests.fakes.images import seed_colours
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.server import FakeServer

KEY = "ml-key-9f3c2a7d5e1b4c6a"
FAST = RetryPolicy(retries=2, factor=0.001, jitter=0.0)


def make(fake: FakeServer, *, key: str = KEY, **overrides: Any) -> ModelsLabBackend:
    options: dict[str, Any] = {
        "base_url": fake.url,
        "timeout": 5.0,
        "connect_timeout": 1.0,
        "poll_deadline": 5.0,
        "retry": FAST,
        "poll_min": 0.0,
        "poll_max": 0.05,
    }
    options.update(overrides)
    return ModelsLabBackend(key, **options)


def draw(**overrides: Any) -> DrawRequest:
    fields: dict[str, Any] = {"prompt": "a red fox in snow", "seed": 4242, "size": "768x1024", "n": 1}
    fields.update(overrides)
    return DrawRequest(**fields)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


async def failure(backend: ModelsLabBackend, request: DrawRequest | None = None) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await backend.generate(request or draw(), user="u1")
    return caught.value


# -- success ----------------------------------------------------------------------------------------------


async def test_success_downloads_real_images_and_sends_the_documented_body() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        request = draw(n=2, negative_prompt="blurry", steps=25, cfg_scale=7.5)
        result = await backend.generate(request, user="u1")

        assert [(i.format, i.width, i.height, i.filtered) for i in result] == [("PNG", 768, 1024, False)] * 2
        assert [size_of(i.data) for i in result] == [(768, 1024)] * 2
        # ModelsLab seeds a batch once: the first image is the seed's, the second is not reproducible alone.
        assert [i.seed for i in result] == [4242, None]
        with Image.open(io.BytesIO(result[0].data)) as img:
            assert img.convert("RGB").getpixel((0, 0)) == seed_colours(4242)[0]

        (call,) = fake.generate_calls
        assert call.path == "/api/v6/images/text2img"
        assert call.body == {
            "key": KEY,
            "prompt": "a red fox in snow",
            "negative_prompt": "blurry",
            "width": 768,
            "height": 1024,
            "samples": 2,
            "num_inference_steps": 25,
            "guidance_scale": 7.5,
            "seed": 4242,
            "scheduler": "EulerAncestralDiscreteScheduler",
            "safety_checker": "yes",
            "base64": "no",
            "webhook": None,
            "track_id": None,
        }
        assert "key" not in {k.lower() for k in call.headers}  # the key travels in the body only
        assert len(fake.image_gets) == 2


async def test_capabilities_offer_only_what_modelslab_serves() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        caps = await backend.capabilities()
    assert caps.sizes == SIZES == ("768x768", "1024x1024", "1024x768", "768x1024", "1024x576", "576x1024")
    assert (caps.samplers, caps.styles, caps.max_n, caps.cfg) == (("Euler a",), ("Base",), 4, (1.0, 20.0))
    assert parse_request("cat", caps).size == "1024x1024"
    for text, code in [
        ("cat --size 2048x2048", "unsupported_size"),
        ("cat --style Anime", "unsupported_style"),
        ("cat --sampler Heun", "unsupported_sampler"),
        ("cat --cfg 25", "out_of_range"),
        ("cat --n 5", "out_of_range"),
    ]:
        with pytest.raises(DrawError) as caught:
            parse_request(text, caps)
        assert caught.value.code == code, text


async def test_processing_is_polled_with_the_job_id_until_success() -> None:
    async with FakeModelsLab(api_key=KEY, queue_all=True, pending_fetches=2, eta=0.01) as fake, make(fake) as backend:
        result = await backend.generate(draw(), user="u1")
        assert size_of(result[0].data) == (768, 1024)
        assert len(fake.generate_calls) == 1
        job_id = max(fake.jobs)
        # Polls go to the configured base URL with the id, never to the answer's fetch_result URL.
        assert [(c.path, c.body) for c in fake.fetch_calls] == [
            ("/api/v6/images/fetch", {"key": KEY, "request_id": str(job_id)})
        ] * 3


async def test_processing_past_the_deadline_is_a_timeout() -> None:
    fake = FakeModelsLab(api_key=KEY, queue_all=True, pending_fetches=10**6, eta=0.01)
    async with fake, make(fake, poll_deadline=0.3) as backend:
        started = time.monotonic()
        error = await failure(backend)
    assert error.code == "backend_timeout" and error.params["reason"] == "poll_deadline"
    assert time.monotonic() - started < 2
    assert len(fake.fetch_calls) >= 3


async def test_a_queued_job_that_fails_is_unavailable() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_processing(pending_fetches=1, eta=0.01, outcome="failed")
        error = await failure(backend)
        assert len(fake.generate_calls) == 1 and len(fake.fetch_calls) == 2  # the end is not polled again
    assert (error.code, error.provider, error.provider_code) == ("backend_unavailable", "modelslab", "failed")


# -- documented errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["message", "messege"])
@pytest.mark.parametrize(
    ("plan", "code", "provider_code"),
    [
        (lambda f: f.push_invalid_key(), "backend_auth_failed", "invalid_api_key"),
        (lambda f: f.push_rate_limited(), "backend_rate_limited", "rate_limit_exceeded"),
        (lambda f: f.push_error("Model id not found"), "backend_config", "model_not_found"),
        (
            lambda f: f.push_error({"prompt": ["The prompt field is required."]}),
            "backend_invalid_request",
            "validation",
        ),
        (lambda f: f.push_error("Insufficient credits, please top up"), "backend_quota_exhausted", "quota"),
        (lambda f: f.push_error("Something odd happened"), "backend_unavailable", "error"),
        (lambda f: f.push_failed(), "backend_unavailable", "failed"),
    ],
    ids=["invalid_key", "rate_limit", "model", "validation", "quota", "other", "failed"],
)
async def test_every_documented_answer_maps_to_an_outcome(
    plan: Any, code: str, provider_code: str, legacy: bool
) -> None:
    fake = FakeModelsLab(api_key=KEY, legacy_spelling=legacy)
    async with fake, make(fake, retry=RetryPolicy(retries=0)) as backend:
        plan(fake)
        error = await failure(backend)
    assert (error.code, error.provider, error.provider_code) == (code, "modelslab", provider_code)
    assert error.user_fault is (code == "backend_invalid_request")
    assert fake.image_gets == []
    for lang in LANGUAGES:
        assert "{" not in render_error(error, lang)


async def test_a_wrong_key_is_refused_by_the_fake_itself() -> None:
    async with FakeModelsLab(api_key="the-right-key") as fake, make(fake, key="a-wrong-key-123") as backend:
        error = await failure(backend)
    assert (error.code, error.provider_code) == ("backend_auth_failed", "invalid_api_key")
    assert "MODELSLAB_API_KEY" in render_error(error, "en") and "MODELSLAB_API_KEY" in render_error(error, "zh")


async def test_rate_limit_carries_the_wait_and_is_not_repeated() -> None:
    # Repeating the same body is exactly what the spam filter punishes: no retry, the user is told to wait.
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_rate_limited()
        error = await failure(backend)
        assert len(fake.generate_calls) == 1
    assert (error.retry_after, error.params["seconds"]) == (30.0, 30)
    assert "30" in render_error(error, "en") and "30" in render_error(error, "zh")


async def test_the_real_spam_filter_answer_is_mapped() -> None:
    async with FakeModelsLab(api_key=KEY, spam_filter_seconds=60) as fake, make(fake) as backend:
        await backend.generate(draw(), user="u1")
        error = await failure(backend)
    assert error.code == "backend_rate_limited" and error.retry_after == 30.0


async def test_http_429_uses_retry_after() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_response(429, "Too Many Requests", headers={"Retry-After": "7"})
        error = await failure(backend)
        assert len(fake.generate_calls) == 1
    assert (error.code, error.retry_after, error.params["seconds"]) == ("backend_rate_limited", 7.0, 7)


async def test_failed_try_again_and_gateway_errors_are_retried() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_failed()
        fake.push_response(503, "Service Unavailable")
        result = await backend.generate(draw(), user="u1")
        assert len(result) == 1 and len(fake.generate_calls) == 3


async def test_a_500_is_unavailable_and_not_repeated() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_response(500, "<html>Server Error</html>")
        error = await failure(backend)
        assert len(fake.generate_calls) == 1
    assert (error.code, error.provider_code) == ("backend_unavailable", "http_500")


async def test_a_wrong_base_url_is_a_configuration_error() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake, base_url=f"{fake.url}/nothing-here") as backend:
        error = await failure(backend)
    assert (error.code, error.provider_code) == ("backend_config", "http_404")


async def test_a_dropped_connection_is_retried_then_reported() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_disconnect()
        assert len(await backend.generate(draw(), user="u1")) == 1
        assert len(fake.generate_calls) == 2
    async with FakeModelsLab(api_key=KEY) as fake, make(fake, retry=RetryPolicy(retries=0)) as backend:
        fake.push_disconnect()
        error = await failure(backend)
    assert error.code == "backend_unavailable"


async def test_slow_answer_past_the_timeout() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake, timeout=0.2) as backend:
        fake.push_delay(3)
        started = time.monotonic()
        error = await failure(backend)
        assert time.monotonic() - started < 1.5
        assert len(fake.generate_calls) == 1  # a late answer may still be generating: never paid twice
    assert error.code == "backend_timeout"


async def test_malformed_json_is_unavailable_and_not_repeated() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_malformed_json()
        error = await failure(backend)
        assert len(fake.generate_calls) == 1
    assert (error.code, error.params["reason"]) == ("backend_unavailable", "malformed_json")


async def test_success_without_output_is_a_bad_image() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_response(200, {"status": "success", "id": 1, "output": [], "meta": {"seed": 1}})
        error = await failure(backend)
    assert (error.code, error.params["reason"]) == ("backend_bad_image", "no_output")


# -- images -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("push", "reason"),
    # Pillow refuses the 30000x30000 bomb before anything is decoded (DecompressionBombError).
    [("push_not_an_image", "not_an_image"), ("push_wrong_size", "wrong_size"), ("push_bomb", "not_an_image")],
)
async def test_bad_images_become_backend_bad_image_through_generation(push: str, reason: str) -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        getattr(fake, push)()
        with pytest.raises(BackendError) as caught:
            await generate(backend, draw(), user="u1")
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_bad_image", reason)
    if push == "push_bomb":
        assert caught.value.params["found"] == "DecompressionBombError"


async def test_blank_nsfw_images_are_reported_filtered() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_content_filtered()
        result = await backend.generate(draw(n=2), user="u1")
        assert [i.filtered for i in result] == [True, True]
        fake.push_content_filtered()
        with pytest.raises(BackendError) as caught:
            await generate(backend, draw(), user="u1")
    assert caught.value.code == "content_filtered"


async def test_an_output_url_that_is_not_there_yet_is_fetched_again() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_late_image(gets=2)
        result = await backend.generate(draw(), user="u1")
        assert size_of(result[0].data) == (768, 1024)
        assert len(fake.image_gets) == 3


async def test_an_image_over_the_cap_is_refused_by_its_length() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake, max_download=1000) as backend:
        error = await failure(backend)
    assert (error.code, error.params["reason"]) == ("backend_bad_image", "too_large")


class EndlessImage(FakeServer):
    """Serves an image without Content-Length that never ends, to prove the download stops at the cap."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.app.router.add_get("/big.png", self._big)

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})  # chunked: no length
        await response.prepare(request)
        chunk = b"\x89PNG" + b"\0" * (64 * 1024 - 4)
        try:
            for _ in range(16 * 1024):  # 1 GiB if nobody stops it
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response


async def test_a_streamed_image_is_cut_off_past_the_cap() -> None:
    async with EndlessImage() as endless, FakeModelsLab(api_key=KEY) as fake:
        async with make(fake, max_download=256 * 1024) as backend:
            fake.push_response(200, {"status": "success", "id": 7, "output": [f"{endless.url}/big.png"], "meta": {}})
            error = await failure(backend)
        await asyncio.sleep(0.05)
        assert endless.sent < 64 * 1024 * 1024
    assert (error.code, error.params["reason"]) == ("backend_bad_image", "too_large")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "/generations/x.png", "data:image/png;base64,AAAA", "::"]
)
async def test_output_urls_that_are_not_absolute_http_are_refused(url: str) -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        fake.push_response(200, {"status": "success", "id": 8, "output": [url], "meta": {"seed": 1}})
        error = await failure(backend)
        assert fake.image_gets == []
    assert (error.code, error.params["reason"]) == ("backend_bad_image", "url")


# -- check, configuration, secrets ------------------------------------------------------------------------


async def test_check_probes_the_key_without_generating() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, make(fake) as backend:
        report = await backend.check()
        assert report.ok and report.backend == "modelslab"
        assert fake.generate_calls == [] and fake.image_gets == []
        assert [c.body for c in fake.fetch_calls] == [{"key": KEY, "request_id": "0"}]
        labels = [label.key for label, _ in report.findings if isinstance(label, Msg)]
        assert "check.label.api_key" in labels
        for _, finding in report.findings:  # every finding renders in both languages
            if isinstance(finding, Msg):
                assert all(finding.render(lang) for lang in LANGUAGES)


async def test_check_reports_a_refused_key_and_an_unreachable_service() -> None:
    async with FakeModelsLab(api_key="other-key-123456") as fake, make(fake) as backend:
        report = await backend.check()
    assert not report.ok
    problem = report.findings[-1][1]
    assert isinstance(problem, BackendError) and problem.code == "backend_auth_failed"

    async with FakeModelsLab(api_key=KEY) as gone:
        url = gone.url
    async with ModelsLabBackend(KEY, base_url=url, retry=RetryPolicy(retries=0)) as backend:
        report = await backend.check()
    assert not report.ok
    problem = report.findings[-1][1]
    assert isinstance(problem, BackendError) and problem.code == "backend_unavailable"


async def test_settings_select_and_configure_the_backend() -> None:
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env({"SDBOT_BACKEND": "modelslab"}, env_file=None))
    assert (caught.value.code, caught.value.variable) == ("config_missing", "MODELSLAB_API_KEY")

    env = {
        "SDBOT_BACKEND": "modelslab",
        "MODELSLAB_API_KEY": KEY,
        "MODELSLAB_BASE_URL": "http://127.0.0.1:9",
        "MODELSLAB_POLL_DEADLINE": "42",
        "MODELSLAB_MAX_DOWNLOAD": "12345",
    }
    async with create_backend(Settings.from_env(env, env_file=None)) as backend:
        assert isinstance(backend, ModelsLabBackend)
        assert (backend._poll_deadline, backend._max_download, backend._base_url) == (42.0, 12345, "http://127.0.0.1:9")
    assert redact.scrub(f"the key is {KEY} here") == "the key is *** here"  # registered for every log line


async def test_the_key_never_reaches_logs_errors_or_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BackendError] = []
    async with FakeModelsLab(api_key=KEY, queue_all=True, eta=0.01) as fake, make(fake) as backend:
        await backend.generate(draw(n=2), user="u1")
        for plan in (fake.push_rate_limited, fake.push_malformed_json, fake.push_not_an_image, fake.push_invalid_key):
            plan()
            with pytest.raises(BackendError) as caught:
                await generate(backend, draw(), user="u1")
            errors.append(caught.value)
        await backend.check()
    async with FakeModelsLab(api_key="other-key-123456") as fake, make(fake) as backend:
        errors.append(await failure(backend))
        await backend.check()
    assert "httpx" in caplog.text or "HTTP Request" in caplog.text  # DEBUG records were really captured
    assert KEY not in caplog.text
    for error in errors:
        shown = [str(error), repr(error), str(error.as_dict()), *(render_error(error, lang) for lang in LANGUAGES)]
        assert not any(KEY in text for text in shown)
