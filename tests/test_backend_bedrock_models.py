"""Bedrock's current Stability models (SD3.5 Large, Stable Image Core and Ultra) through the real httpx client
against the fake Bedrock on 127.0.0.1: the JSON each takes (and nothing more: Bedrock refuses extraneous keys),
the ratio each size is drawn at, filtered answers, a retired or unsubscribed model named for the operator,
Bedrock API keys without botocore, and a whole /draw."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.backends.bedrock import BedrockBackend, base_model
from bot.config import Settings
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import fast_retry, sdbot
from tests.fakes.bedrock import CORE_SIZES, IMAGE_CORE, IMAGE_ULTRA, SD3_SIZES, SD35_LARGE, FakeBedrock

AKID = "AKIDMODELS0000000000"
SECRET = "models-secret-access-key-0000"
API_KEY = "bedrock-api-key-ABSKexample000000"
USER = user_key("discord", 9)
REGION = "us-west-2"  # where the current Stability models are


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock(
        access_key_id=AKID,
        secret_access_key=SECRET,
        api_key=API_KEY,
        retired_models=("stability.stable-diffusion-xl-v1",),
        region=REGION,
    ) as server:
        yield server


def make(fake: FakeBedrock, model: str, **kwargs: object) -> BedrockBackend:
    options: dict[str, object] = {
        "region": REGION,
        "model_id": model,
        "endpoint_url": fake.url,
        "access_key_id": AKID,
        "secret_access_key": SECRET,
        "timeout": 5.0,
        "connect_timeout": 1.0,
        "retry": fast_retry()[0],
    }
    options.update(kwargs)
    return BedrockBackend(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "sizes"), [(SD35_LARGE, SD3_SIZES), (IMAGE_CORE, CORE_SIZES), (IMAGE_ULTRA, SD3_SIZES)]
)
async def test_each_model_draws_at_the_nearest_ratio(fake: FakeBedrock, model: str, sizes: dict) -> None:
    async with make(fake, model) as backend:
        request = parse_request(
            "a harbour --size 1152x2048 --negative rain --n 2 --seed 9", await backend.capabilities()
        )
        generation = await generate(backend, request, user=USER)
    bodies = [call.body for call in fake.generate_calls]
    assert {body["aspect_ratio"] for body in bodies} == {"9:16"} and sorted(b["seed"] for b in bodies) == [9, 10]
    assert all(body["negative_prompt"] == "rain" for body in bodies)
    assert all(("mode" in body) == (model == SD35_LARGE) for body in bodies)  # Core takes no mode key
    assert [(i.width, i.height) for i in generation.images] == [sizes["9:16"]] * 2
    assert generation.drawn.size == "x".join(map(str, sizes["9:16"])) and generation.drawn.ratio == "9:16"


async def test_options_the_models_do_not_take_are_refused_before_anything_is_sent(fake: FakeBedrock) -> None:
    async with make(fake, SD35_LARGE) as backend:
        caps = await backend.capabilities()
    for option in ("--style Anime", "--steps 30", "--cfg 7", '--sampler "Euler a"'):
        with pytest.raises(Exception) as caught:
            parse_request(f"x {option}", caps)
        assert getattr(caught.value, "code", None) == "unsupported_option"
    assert fake.generate_calls == []


async def test_an_inference_profile_and_an_arn_name_the_same_model(fake: FakeBedrock) -> None:
    assert base_model("us.stability.sd3-5-large-v1:0") == SD35_LARGE
    assert base_model("arn:aws:bedrock:us-west-2::foundation-model/stability.stable-image-core-v1:1") == IMAGE_CORE
    async with make(fake, "us." + SD35_LARGE) as backend:
        generation = await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert len(generation.images) == 1


async def test_a_prompt_filter_is_the_filter_outcome(fake: FakeBedrock) -> None:
    fake.push_content_filtered()
    async with make(fake, IMAGE_ULTRA) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
    assert caught.value.code == "content_filtered"


async def test_one_filtered_picture_of_two_is_a_shortfall(fake: FakeBedrock) -> None:
    fake.push_content_filtered()
    async with make(fake, SD35_LARGE) as backend:
        generation = await generate(backend, parse_request("x --n 2", await backend.capabilities()), user=USER)
    assert len(generation.images) == 1 and generation.missing == 1


async def test_a_picture_of_another_ratio_is_refused(fake: FakeBedrock) -> None:
    square = io.BytesIO()
    Image.new("RGB", (1024, 1024)).save(square, "PNG")
    fake.push_response(
        200, {"seeds": [1], "finish_reasons": [None], "images": [base64.b64encode(square.getvalue()).decode()]}
    )
    async with make(fake, SD35_LARGE) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x --size 1024x576", await backend.capabilities()), user=USER)
    assert caught.value.code == "backend_bad_image" and caught.value.params["reason"] == "wrong_size"


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_retired_sdxl_is_named_with_the_variable_to_change(fake: FakeBedrock, lang: str) -> None:
    async with make(fake, "stability.stable-diffusion-xl-v1") as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
        report = await backend.check()
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "model_retired")
    assert "BEDROCK_MODEL_ID" in render_error(caught.value, lang) and not report.ok


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_model_without_access_names_the_variable(lang: str) -> None:
    denied = FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, region=REGION, denied_models=(IMAGE_ULTRA,))
    async with denied as fake, make(fake, IMAGE_ULTRA) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("x"), user=USER)
    assert caught.value.provider_code == "AccessDeniedException"
    assert "BEDROCK_MODEL_ID" in render_error(caught.value, lang)


async def test_a_bedrock_api_key_needs_no_signature(fake: FakeBedrock) -> None:
    async with make(fake, IMAGE_CORE, access_key_id=None, secret_access_key=None, api_key=API_KEY) as backend:
        generation = await generate(backend, parse_request("x", await backend.capabilities()), user=USER)
        report = await backend.check()
    assert len(generation.images) == 1 and report.ok
    assert fake.generate_calls[0].headers["Authorization"] == f"Bearer {API_KEY}" and fake.auth_errors == []
    async with make(fake, IMAGE_CORE, access_key_id=None, secret_access_key=None, api_key="wrong-key") as wrong:
        with pytest.raises(BackendError) as caught:
            await generate(wrong, parse_request("x"), user=USER)
    assert caught.value.code in ("backend_config", "backend_auth_failed")
    assert "wrong-key" not in repr(caught.value.params)


def test_an_unknown_model_id_is_a_configuration_error() -> None:
    env = {"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-west-2", "BEDROCK_MODEL_ID": "stability.sd9"}
    with pytest.raises(ConfigError) as caught:
        BedrockBackend.from_settings(Settings.from_env(env, env_file=None))
    assert caught.value.variable == "BEDROCK_MODEL_ID"


async def test_sdbot_draw_with_the_default_model_and_an_api_key(fake: FakeBedrock, tmp_path: Path) -> None:
    env = {
        "SDBOT_BACKEND": "bedrock",
        "BEDROCK_ENDPOINT_URL": fake.url,
        "AWS_REGION": "us-west-2",
        "AWS_BEARER_TOKEN_BEDROCK": API_KEY,
    }
    code, out, err = await sdbot(
        "draw", "--json", "--out", str(tmp_path), "a cat --size 1024x768", env=env, cwd=tmp_path
    )
    assert code == 0, err
    (path,) = json.loads(out)["images"]
    with Image.open(path) as img:
        assert img.size == SD3_SIZES["5:4"]
    assert fake.generate_calls[0].path.endswith("/invoke") and "sd3-5-large" in fake.generate_calls[0].path
    assert API_KEY not in out + err
