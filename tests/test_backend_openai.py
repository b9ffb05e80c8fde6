"""OpenAI-compatible images services and Baidu Qianfan v2 through the real httpx client against their fakes on
127.0.0.1: the body each model gets, b64_json and url answers (links fetched with a size bound and without the
key), sizes a model lacks drawn at the nearest ratio, every error as an outcome with zh/en words, the probes of
sdbot check, and the settings that choose Qianfan v1 or v2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.backends import create_backend
from bot.backends.openai_images import OpenAIImagesBackend
from bot.backends.qianfan import QianfanBackend
from bot.backends.qianfan_v2 import QianfanV2Backend
from bot.config import Settings
from bot.draw.validation import parse_request
from bot.errors import BackendError, DrawError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import fast_retry, sdbot
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.qianfan import DEFAULT_V2_API_KEY, FakeQianfan

KEY = "sk-openai-test-key-0001"
USER = user_key("discord", 5)


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAIImages]:
    async with FakeOpenAIImages(api_key=KEY) as server:
        yield server


@pytest.fixture
async def qianfan() -> AsyncIterator[FakeQianfan]:
    async with FakeQianfan() as server:
        yield server


def make(fake: FakeOpenAIImages, model: str = "gpt-image-1.5", **kwargs: object) -> OpenAIImagesBackend:
    options: dict[str, object] = {"base_url": fake.base_url, "model": model, "timeout": 5.0, "retry": fast_retry()[0]}
    options.update(kwargs)
    return OpenAIImagesBackend(str(options.pop("api_key", KEY)), **options)  # type: ignore[arg-type]


def make_qianfan(fake: FakeQianfan, model: str = "irag-1.0", key: str = DEFAULT_V2_API_KEY) -> QianfanV2Backend:
    return QianfanV2Backend(
        key, base_url=fake.url, model=model, sizes=(), timeout=5.0, retry=fast_retry()[0], prompt_max=220
    )


async def test_gpt_image_draws_at_its_nearest_size_in_one_call(openai: FakeOpenAIImages) -> None:
    async with make(openai) as backend:
        caps = await backend.capabilities()
        request = parse_request("a red fox --size 1024x768 --n 2", caps)
        generation = await generate(backend, request, user=USER)
    (call,) = openai.generate_calls
    assert call.body == {"model": "gpt-image-1.5", "prompt": "a red fox", "n": 2, "size": "1536x1024", "user": USER}
    assert [(i.width, i.height) for i in generation.images] == [(1536, 1024)] * 2
    assert generation.drawn.ratio == "3:2" and "seed" in generation.drawn.unused
    for option in ("--steps 30", "--negative dogs", "--seed 4", "--style Anime"):
        with pytest.raises(DrawError):
            parse_request(f"x {option}", caps)


async def test_dall_e_3_asks_for_base64_one_picture_per_call(openai: FakeOpenAIImages) -> None:
    async with make(openai, "dall-e-3") as backend:
        generation = await generate(backend, parse_request("a boat --n 2 --size 576x1024"), user=USER)
    assert [call.body["n"] for call in openai.generate_calls] == [1, 1]
    assert {call.body["response_format"] for call in openai.generate_calls} == {"b64_json"}
    assert {call.body["size"] for call in openai.generate_calls} == {"1024x1792"}
    assert len(generation.images) == 2


async def test_a_model_that_takes_any_size_gets_the_size_asked(openai: FakeOpenAIImages) -> None:
    async with make(openai, "black-forest-labs/FLUX-1-schnell") as backend:
        generation = await generate(backend, parse_request("a boat --size 768x1024"), user=USER)
    assert openai.generate_calls[0].body["size"] == "768x1024" and generation.drawn.size is None


async def test_url_answers_are_fetched_without_the_key(qianfan: FakeQianfan) -> None:
    async with make_qianfan(qianfan) as backend:
        caps = await backend.capabilities()
        generation = await generate(backend, parse_request("一只猫 --size 768x1024 --n 2", caps), user=USER)
    body = qianfan.v2_calls[0].body
    assert body == {"model": "irag-1.0", "prompt": "一只猫", "n": 2, "size": "768x1024", "user": USER}
    assert qianfan.v2_calls[0].headers["Authorization"] == f"Bearer {DEFAULT_V2_API_KEY}"
    assert len(qianfan.v2_file_gets) == 2 and [(i.width, i.height) for i in generation.images] == [(768, 1024)] * 2
    with pytest.raises(DrawError) as caught:
        parse_request("x" * 221, caps)
    assert caught.value.code == "prompt_too_long"


async def test_a_download_past_the_bound_is_refused(qianfan: FakeQianfan) -> None:
    qianfan.push_huge_download(64 * 1024)
    backend = QianfanV2Backend(DEFAULT_V2_API_KEY, base_url=qianfan.url, model="irag-1.0", max_download=32 * 1024)
    async with backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_bad_image", "too_large")


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_an_expired_link_says_so(qianfan: FakeQianfan, lang: str) -> None:
    qianfan.push_expired_url()
    async with make_qianfan(qianfan) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
    assert caught.value.provider_code == "url_expired"
    assert "expired" in render_error(caught.value, lang) or "过期" in render_error(caught.value, lang)


@pytest.mark.parametrize(
    ("push", "code", "provider_code"),
    [
        (lambda f: f.push_moderation(), "content_filtered", "moderation_blocked"),
        (lambda f: f.push_insufficient_quota(), "backend_quota_exhausted", "insufficient_quota"),
        (lambda f: f.push_rate_limit(7), "backend_rate_limited", "rate_limit_exceeded"),
        (lambda f: f.push_server_error(503), "backend_unavailable", None),
    ],
)
async def test_openai_errors_are_outcomes_in_both_languages(
    openai: FakeOpenAIImages, push: object, code: str, provider_code: str | None
) -> None:
    push(openai)  # type: ignore[operator]
    async with make(openai, retry=fast_retry(retries=0)[0]) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
    assert caught.value.code == code
    if provider_code is not None:
        assert caught.value.provider_code == provider_code
    for lang in ("en", "zh"):
        assert render_error(caught.value, lang)
    if code == "backend_rate_limited":
        assert caught.value.retry_after == 7
    assert KEY not in repr(caught.value.params)


async def test_a_wrong_key_and_an_unknown_model(openai: FakeOpenAIImages) -> None:
    async with make(openai, api_key="sk-wrong") as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
        report = await backend.check()
    assert caught.value.code == "backend_auth_failed" and not report.ok
    async with make(openai, "gpt-image-9") as backend:
        report = await backend.check()  # the key works; the model is not listed: said, not failed
    assert report.ok and any("gpt-image-9" in str(value.render("en")) for _, value in report.findings[2:])


@pytest.mark.parametrize(
    ("push", "code", "provider_code"),
    [
        (lambda f: f.push_moderation(), "backend_invalid_request", "invalid_image_generation_prompt"),
        (lambda f: f.push_v2_rate_limit(), "backend_rate_limited", "rpm_rate_limit_exceeded"),
        (lambda f: f.push_v2_error(500, "internal_error", "boom", type="server_error"), "backend_unavailable", None),
    ],
)
async def test_qianfan_v2_errors_are_outcomes_in_both_languages(
    qianfan: FakeQianfan, push: object, code: str, provider_code: str | None
) -> None:
    push(qianfan)  # type: ignore[operator]
    backend = QianfanV2Backend(DEFAULT_V2_API_KEY, base_url=qianfan.url, retry=fast_retry(retries=0)[0])
    async with backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
    assert caught.value.code == code
    if provider_code is not None:
        assert caught.value.provider_code == provider_code
        assert provider_code in render_error(caught.value, "en") and provider_code in render_error(caught.value, "zh")


async def test_qianfan_v2_check_proves_key_and_model_without_drawing(qianfan: FakeQianfan) -> None:
    async with make_qianfan(qianfan) as backend:
        assert (await backend.check()).ok
    async with make_qianfan(qianfan, key="bce-v3/ALTAK-wrong/secret") as backend:
        report = await backend.check()
    assert not report.ok and report.findings[-1][1].code == "backend_auth_failed"  # type: ignore[union-attr]
    async with make_qianfan(qianfan, model="no-such-model") as backend:
        report = await backend.check()
    assert not report.ok and report.findings[-1][1].code == "backend_config"  # type: ignore[union-attr]
    assert qianfan.v2_file_gets == []


def test_the_kind_of_key_chooses_qianfan_v1_or_v2() -> None:
    v2 = create_backend(
        Settings.from_env({"SDBOT_BACKEND": "qianfan", "QIANFAN_API_KEY": DEFAULT_V2_API_KEY}, env_file=None)
    )
    assert isinstance(v2, QianfanV2Backend) and str(v2._client.base_url).startswith("https://qianfan.baidubce.com")
    env = {"SDBOT_BACKEND": "qianfan", "QIANFAN_API_KEY": "ak", "QIANFAN_SECRET_KEY": "sk"}
    v1 = create_backend(Settings.from_env(env, env_file=None))
    assert isinstance(v1, QianfanBackend) and str(v1._client.base_url).startswith("https://aip.baidubce.com")


async def test_sdbot_draw_and_check_on_an_openai_compatible_service(openai: FakeOpenAIImages, tmp_path: Path) -> None:
    env = {
        "SDBOT_BACKEND": "openai",
        "OPENAI_BASE_URL": openai.base_url,
        "OPENAI_API_KEY": KEY,
        "OPENAI_MODEL": "black-forest-labs/FLUX-1-schnell",
        "OPENAI_SIZES": "1024x1024,1344x768",
    }
    args = ("draw", "--json", "--out", str(tmp_path), "a cat --size 1024x576")
    code, out, err = await sdbot(*args, env=env, cwd=tmp_path)
    assert code == 0, err
    (path,) = json.loads(out)["images"]
    with Image.open(path) as img:
        assert img.size == (1344, 768)
    code, out, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 0, out + err
    assert KEY not in out + err
