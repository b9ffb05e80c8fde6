"""Stability AI REST v2beta (Stable Image Core, Ultra, SD3.5) through the real httpx client against the fake
Stability on 127.0.0.1: the multipart form, the ratio each size is drawn at, raw picture answers, moderation and
blurred results, errors in both languages, the settings that choose v1 or v2beta, and a whole /draw."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.backends import create_backend
from bot.backends.http import RetryPolicy
from bot.backends.stability import StabilityBackend
from bot.backends.stability_v2 import StabilityV2Backend
from bot.config import Settings
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from bot.messages.presentation import parameters_line
from tests.backend_support import fast_retry, sdbot
from tests.fakes.stability import CORE_SIZES, SD3_SIZES, FakeStability

KEY = "sk-stability-v2-test-key"
USER = user_key("telegram", 7)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStability]:
    async with FakeStability(api_key=KEY, credits=100.0) as server:
        yield server


def make(fake: FakeStability, model: str = "core", retry: RetryPolicy | None = None) -> StabilityV2Backend:
    return StabilityV2Backend(
        KEY, model=model, base_url=fake.url, timeout=5.0, connect_timeout=1.0, retry=retry or fast_retry()[0]
    )


async def test_core_draws_each_size_at_its_nearest_ratio_and_the_caption_says_so(fake: FakeStability) -> None:
    async with make(fake) as backend:
        caps = await backend.capabilities()
        request = parse_request("a red fox --size 1024x576 --style Anime --negative blurry --n 2 --seed 5", caps)
        generation = await generate(backend, request, user=USER)
    assert [call.fields["aspect_ratio"] for call in fake.v2_calls] == ["16:9", "16:9"]
    assert sorted(call.fields["seed"] for call in fake.v2_calls) == ["5", "6"]
    first = fake.v2_calls[0]
    assert first.endpoint == "core" and first.fields["style_preset"] == "anime"
    assert first.fields["negative_prompt"] == "blurry" and "model" not in first.fields
    assert first.headers["Accept"] == "image/*"
    width, height = CORE_SIZES["16:9"]
    assert [(i.width, i.height) for i in generation.images] == [(width, height)] * 2
    assert sorted(i.seed for i in generation.images if i.seed is not None) == [5, 6]
    line = parameters_line(generation.request, "en", generation.drawn)
    assert f"{width}x{height}" in line and "16:9" in line and "steps" not in line and "Euler" not in line
    assert fake.credits == pytest.approx(100.0 - 2 * 3)


async def test_sd35_sends_its_model_and_cfg(fake: FakeStability) -> None:
    async with make(fake, "sd3.5-large") as backend:
        request = parse_request("a lighthouse --size 768x1024 --cfg 7", await backend.capabilities())
        generation = await generate(backend, request, user=USER)
    call = fake.v2_calls[0]
    assert (call.endpoint, call.fields["model"], call.fields["cfg_scale"]) == ("sd3", "sd3.5-large", "7.0")
    assert call.fields["aspect_ratio"] == "4:5"
    assert (generation.images[0].width, generation.images[0].height) == SD3_SIZES["4:5"]


async def test_flash_sends_neither_negative_nor_cfg(fake: FakeStability) -> None:
    async with make(fake, "sd3.5-flash") as backend:
        await generate(backend, parse_request("a boat", await backend.capabilities()), user=USER)
    fields = fake.v2_calls[0].fields
    assert fields["model"] == "sd3.5-flash" and "cfg_scale" not in fields and "negative_prompt" not in fields


async def test_a_blurred_result_is_the_filter_outcome(fake: FakeStability) -> None:
    fake.push_content_filtered()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert caught.value.code == "content_filtered"


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_moderation_is_the_filter_outcome_with_its_own_words(fake: FakeStability, lang: str) -> None:
    fake.push_moderation()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    error = caught.value
    assert (error.code, error.provider_code) == ("content_filtered", "content_moderation")
    text = render_error(error, lang)
    assert "content_moderation" in text and ("not charged" in text or "不扣额度" in text)
    assert "flagged" in error.params["provider_message"]


@pytest.mark.parametrize(
    ("status", "name", "code"),
    [
        (401, "unauthorized", "backend_auth_failed"),
        (402, "payment_required", "backend_quota_exhausted"),
        (422, "invalid_language", "backend_invalid_request"),
        (422, "public_figure", "backend_invalid_request"),
        (500, "internal_error", "backend_unavailable"),
    ],
)
async def test_each_error_is_an_outcome_with_a_message_in_both_languages(
    fake: FakeStability, status: int, name: str, code: str
) -> None:
    retry, _ = fast_retry(retries=0)
    fake.push_status(status, name)
    async with make(fake, retry=retry) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert caught.value.code == code and caught.value.provider_code == name
    for lang in ("en", "zh"):
        assert render_error(caught.value, lang)
    assert KEY not in repr(caught.value.params)


async def test_a_rate_limit_is_retried_after_the_wait(fake: FakeStability) -> None:
    retry, sleeps = fast_retry(retries=1)
    fake.push_status(429, headers={"Retry-After": "2"})
    async with make(fake, retry=retry) as backend:
        generation = await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert len(generation.images) == 1 and sleeps.delays == [2.0]


async def test_an_answer_that_is_no_picture_is_refused(fake: FakeStability) -> None:
    fake.push_response(200, b"not a picture", headers={"Content-Type": "text/html"})
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert caught.value.code == "backend_bad_image"


async def test_check_shows_the_balance_and_generates_nothing(fake: FakeStability) -> None:
    async with make(fake, "ultra") as backend:
        report = await backend.check()
    assert report.ok and fake.v2_calls == []
    async with StabilityV2Backend("sk-wrong-key", base_url=fake.url) as wrong:
        report = await wrong.check()
    assert not report.ok


def test_the_settings_choose_v2beta_by_default_and_v1_by_engine() -> None:
    base = {"SDBOT_BACKEND": "stability", "STABILITY_API_KEY": KEY}
    assert isinstance(create_backend(Settings.from_env(base, env_file=None)), StabilityV2Backend)
    v1 = create_backend(Settings.from_env({**base, "STABILITY_ENGINE": "stable-diffusion-xl-1024-v1-0"}, env_file=None))
    assert isinstance(v1, StabilityBackend)
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env({**base, "STABILITY_ENGINE": "x", "STABILITY_MODEL": "core"}, env_file=None))
    assert caught.value.variable == "STABILITY_ENGINE"
    assert "STABILITY_MODEL" in render_error(caught.value, "en") and "STABILITY_MODEL" in render_error(
        caught.value, "zh"
    )
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**base, "STABILITY_MODEL": "sd4"}, env_file=None)
    assert caught.value.variable == "STABILITY_MODEL"


async def test_sdbot_draw_on_sd35_medium(fake: FakeStability, tmp_path: Path) -> None:
    env = {
        "SDBOT_BACKEND": "stability",
        "STABILITY_BASE_URL": fake.url,
        "STABILITY_API_KEY": KEY,
        "STABILITY_MODEL": "sd3.5-medium",
    }
    code, out, err = await sdbot(
        "draw", "--json", "--out", str(tmp_path), "a cat --size 2048x1152", env=env, cwd=tmp_path
    )
    assert code == 0, err
    (path,) = json.loads(out)["images"]
    with Image.open(path) as img:
        assert img.size == SD3_SIZES["16:9"]
    assert fake.v2_calls[0].fields["model"] == "sd3.5-medium" and KEY not in out + err
    code, _, err = await sdbot("draw", "--out", str(tmp_path), "a cat --steps 30", env=env, cwd=tmp_path)
    assert code == 2 and "--steps" in err
