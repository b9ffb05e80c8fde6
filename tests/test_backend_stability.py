"""The Stability v1 backend with the real httpx client against the local fake Stability on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.backends import sdxl_v1
from bot.backends.http import RetryPolicy
from bot.backends.stability import StabilityBackend
from bot.config import Settings
from bot.draw import params
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import assert_image, fast_retry, sdbot
from tests.fakes.stability import SAMPLERS, STYLE_PRESETS, FakeStability

KEY = "sk-stability-test-key-123"
USER = user_key("discord", 42)
CAT = DrawRequest("cat", seed=11)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStability]:
    async with FakeStability(api_key=KEY) as server:
        yield server


def make(fake: FakeStability, retry: RetryPolicy | None = None, **kwargs: object) -> StabilityBackend:
    return StabilityBackend(
        KEY,
        base_url=fake.url,
        timeout=kwargs.pop("timeout", 5.0),  # type: ignore[arg-type]
        connect_timeout=1.0,
        retry=retry or fast_retry()[0],
        **kwargs,  # type: ignore[arg-type]
    )


async def test_success_maps_every_field_onto_the_v1_body(fake: FakeStability) -> None:
    request = DrawRequest(
        "a cat",
        negative_prompt="blurry",
        size="832x1216",
        n=3,
        steps=30,
        sampler_index="Euler a",
        seed=100,
        cfg_scale=9.0,
        style="Craft Clay",
    )
    async with make(fake) as backend:
        images = await backend.generate(request, user=USER)
    assert len(images) == 3
    for image in images:
        assert_image(image, 832, 1216)
        assert not image.filtered
    assert [image.seed for image in images] == [100, 101, 102]  # as the provider reports them
    call = fake.generate_calls[0]
    assert call.path == "/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"
    assert call.headers["Authorization"] == f"Bearer {KEY}" and call.headers["Accept"] == "application/json"
    assert call.body == {
        "text_prompts": [{"text": "a cat", "weight": 1.0}, {"text": "blurry", "weight": -1.0}],
        "cfg_scale": 9.0,
        "width": 832,
        "height": 1216,
        "samples": 3,
        "steps": 30,
        "seed": 100,
        "sampler": "K_EULER_ANCESTRAL",
        "style_preset": "modeling-compound",
    }


async def test_base_style_sends_no_preset_and_no_negative_means_one_prompt(fake: FakeStability) -> None:
    async with make(fake) as backend:
        await backend.generate(CAT, user=USER)
    body = fake.generate_calls[0].body
    assert "style_preset" not in body and body["text_prompts"] == [{"text": "cat", "weight": 1.0}]


def test_every_mapped_value_is_one_stability_accepts() -> None:
    assert set(sdxl_v1.SAMPLERS.values()) <= SAMPLERS
    assert {p for p in sdxl_v1.STYLE_PRESETS.values() if p} == STYLE_PRESETS  # every preset offered
    assert set(sdxl_v1.STYLE_PRESETS) == set(params.STYLES)  # every one of our styles mapped


async def test_capabilities_offer_only_what_maps_exactly() -> None:
    async with StabilityBackend(KEY) as backend:
        caps = await backend.capabilities()
    assert caps.sizes == sdxl_v1.SDXL_SIZES and "768x1024" not in caps.sizes
    assert "DPM++ 2M Karras" not in caps.samplers and "DPM++ SDE" not in caps.samplers
    assert caps.styles == tuple(params.STYLES) and caps.cfg == (0.0, 35.0)
    # Users learn it before anything is sent: unsupported, not silently replaced.
    with pytest.raises(DrawError) as caught:
        parse_request("cat --size 768x1024", caps)
    assert caught.value.code == "unsupported_size"
    with pytest.raises(DrawError) as caught:
        parse_request("cat --sampler 'DPM++ 2M Karras'", caps)
    assert caught.value.code == "unsupported_sampler"
    assert parse_request("cat --style modeling-compound --size 1344x768", caps).style == "Craft Clay"


async def test_older_engines_offer_the_seed_sizes_they_accept(fake: FakeStability) -> None:
    async with make(fake, engine="stable-diffusion-v1-6") as backend:
        caps = await backend.capabilities()
        assert caps.sizes == ("768x768", "1024x1024", "1024x768", "768x1024", "1024x576", "576x1024")
        for size in caps.sizes:
            request = DrawRequest("cat", size=size, seed=1)
            (image,) = await backend.generate(request, user=USER)
            assert_image(image, request.width, request.height)


async def test_content_filtered_becomes_our_outcome(fake: FakeStability) -> None:
    fake.push_content_filtered()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, DrawRequest("cat", n=2, seed=5), user=USER)
    assert caught.value.code == "content_filtered"


async def test_partly_filtered_results_are_marked(fake: FakeStability) -> None:
    fake.push_content_filtered(count=1)
    async with make(fake) as backend:
        result = await generate(backend, DrawRequest("cat", n=2, seed=5), user=USER)
    assert [image.filtered for image in result.images] == [True, False] and result.filtered == 1


async def test_error_artifacts_are_dropped(fake: FakeStability) -> None:
    async with make(fake) as backend:
        (good,) = await backend.generate(CAT, user=USER)
        art = {"base64": base64.b64encode(good.data).decode(), "seed": 1}
        fake.push_response(200, {"artifacts": [{**art, "finishReason": "ERROR"}, {**art, "finishReason": "SUCCESS"}]})
        assert len(await backend.generate(CAT, user=USER)) == 1
        fake.push_response(200, {"artifacts": [{**art, "finishReason": "ERROR"}]})
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_unavailable", "ERROR")


@pytest.mark.parametrize(
    ("status", "name", "outcome"),
    [
        (400, "invalid_sdxl_v1_dimensions", "backend_invalid_request"),
        (400, "bad_request", "backend_invalid_request"),
        (401, "unauthorized", "backend_auth_failed"),
        (402, "insufficient_balance", "backend_quota_exhausted"),
        (403, "permission_denied", "backend_config"),
        (404, "not_found", "backend_config"),
        (418, "teapot", "backend_unavailable"),
    ],
)
async def test_errors_that_are_not_retried(fake: FakeStability, status: int, name: str, outcome: str) -> None:
    retry, sleeps = fast_retry()
    fake.push_status(status, name)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.provider, error.provider_code) == (outcome, "stability", name)
    assert error.user_fault == (outcome == "backend_invalid_request")
    assert len(fake.generate_calls) == 1 and sleeps.delays == []


async def test_a_wrong_key_is_refused_by_the_real_fake(fake: FakeStability) -> None:
    async with StabilityBackend("sk-wrong-key-000", base_url=fake.url) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_auth_failed"


async def test_an_unknown_engine_is_a_configuration_error(fake: FakeStability) -> None:
    async with make(fake, engine="no-such-engine") as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "not_found")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_rate_limits_and_server_errors_are_retried(fake: FakeStability, status: int) -> None:
    retry, sleeps = fast_retry()
    fake.push_status(status)
    async with make(fake, retry) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2 and sleeps.delays == [0.01]


async def test_429_retry_after_is_honoured_and_reported(fake: FakeStability) -> None:
    retry, sleeps = fast_retry(retries=2)
    for _ in range(3):
        fake.push_status(429, headers={"Retry-After": "4"})
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert sleeps.delays == [4.0, 4.0] and len(fake.generate_calls) == 3
    assert (error.code, error.retry_after, error.params["seconds"]) == ("backend_rate_limited", 4.0, 4)
    assert "4" in render_error(error, "zh")


async def test_429_without_a_hint_still_tells_users_a_wait(fake: FakeStability) -> None:
    retry, _ = fast_retry(retries=0)
    fake.push_status(429)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.retry_after, caught.value.params["seconds"]) == (10.0, 10)


async def test_slow_answer_past_the_timeout(fake: FakeStability) -> None:
    fake.push_delay(2.0)
    async with make(fake, timeout=0.2) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_timeout" and len(fake.generate_calls) == 1


async def test_malformed_json(fake: FakeStability) -> None:
    fake.push_malformed_json()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_unavailable" and len(fake.generate_calls) == 1


async def test_a_dropped_connection_is_retried(fake: FakeStability) -> None:
    fake.push_disconnect()
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2


@pytest.mark.parametrize("fault", ["push_not_an_image", "push_wrong_size", "push_bomb"])
async def test_answers_that_are_not_the_image_asked_for_are_bad_images(fake: FakeStability, fault: str) -> None:
    getattr(fake, fault)()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, CAT, user=USER)
    assert caught.value.code == "backend_bad_image"


async def test_check_reads_the_balance_and_the_engine_without_generating(fake: FakeStability) -> None:
    async with make(fake) as backend:
        report = await backend.check()
    assert report.ok and fake.generate_calls == []
    assert ("GET", "/v1/user/balance") in fake.requests and ("GET", "/v1/engines/list") in fake.requests
    texts = [v.render("en") for _, v in report.findings if hasattr(v, "render")]  # type: ignore[union-attr]
    assert "100 credits" in texts and "stable-diffusion-xl-1024-v1-0 is available to this key" in texts


@pytest.mark.parametrize(
    ("setup", "outcome"),
    [("wrong_key", "backend_auth_failed"), ("no_credits", "backend_quota_exhausted"), ("engine", "backend_config")],
)
async def test_check_failures(setup: str, outcome: str) -> None:
    async with FakeStability(api_key=KEY, credits=0.0 if setup == "no_credits" else 5.0) as fake:
        key = "sk-wrong-key-000" if setup == "wrong_key" else KEY
        engine = "no-such-engine" if setup == "engine" else "stable-diffusion-xl-1024-v1-0"
        async with StabilityBackend(key, base_url=fake.url, engine=engine) as backend:
            report = await backend.check()
    assert not report.ok and fake.generate_calls == []
    error = report.findings[-1][1]
    assert isinstance(error, BackendError) and error.code == outcome


def test_from_settings_needs_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        StabilityBackend.from_settings(Settings.from_env({"SDBOT_BACKEND": "stability"}, env_file=None))
    assert caught.value.variable == "STABILITY_API_KEY"


async def test_sdbot_draw_runs_on_stability(fake: FakeStability, tmp_path: Path) -> None:
    env = {"SDBOT_BACKEND": "stability", "STABILITY_BASE_URL": fake.url, "STABILITY_API_KEY": KEY}
    env["STABILITY_ENGINE"] = "stable-diffusion-xl-1024-v1-0"  # v1 (SDXL); v2beta is the default
    args = (
        "--json",
        "--out",
        str(tmp_path),
        "cat",
        "--size",
        "1344x768",
        "--style",
        "Craft Clay",
        "--sampler",
        "Euler",
    )
    code, out, err = await sdbot("draw", *args, env=env, cwd=tmp_path)
    assert code == 0, err
    (path,) = json.loads(out)["images"]
    with Image.open(path) as img:
        assert img.size == (1344, 768)
    body = fake.generate_calls[0].body
    assert (body["style_preset"], body["sampler"], body["width"]) == ("modeling-compound", "K_EULER", 1344)
    # A size SDXL cannot make is refused before anything is sent, naming the sizes it can.
    code, out, err = await sdbot("draw", "cat", "--size", "768x1024", env=env, cwd=tmp_path)
    assert code == 2 and "1152x896" in err and len(fake.generate_calls) == 1
    assert KEY not in out + err
