"""Stability (v2beta and v1) and Bedrock drawing from a picture and upscaling, through the real httpx clients against
the fake Stability and the fake Bedrock on 127.0.0.1: what each model is sent (the picture, the strength, the mode,
no aspect ratio), at which ratio it answers, the models that cannot (Core; Ultra on Bedrock), v1's image_strength
(the part of the picture KEPT: 1 - strength), the fast and conservative upscalers and their exact 2x pictures, a
picture too large for the fast upscaler refused with a clear message before anything is sent, and Bedrock's
upscaler: off by default, a subscription missing, an inference profile needed."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from bot.backends.bedrock import BedrockBackend
from bot.backends.stability import StabilityBackend
from bot.backends.stability_v2 import StabilityV2Backend
from bot.config import Settings
from bot.draw.capabilities import Capabilities
from bot.draw.picture import target
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import Lang, render_error
from tests.backend_support import assert_image, fast_retry, photo, pixels, source
from tests.fakes.bedrock import (
    CONSERVATIVE_UPSCALE,
    FAST_UPSCALE,
    IMAGE_CORE,
    IMAGE_ULTRA,
    SD35_LARGE,
    FakeBedrock,
)
from tests.fakes.stability import SD3_SIZES, FakeStability

KEY = "sk-img2img-test-key"
USER = user_key("telegram", 21)
AKID = "AKIDPICTURES00000000"
SECRET = "pictures-secret-access-key-000"
SDXL = "stable-diffusion-xl-1024-v1-0"
BEDROCK_SDXL = "stability.stable-diffusion-xl-v1"


# -- pictures ---------------------------------------------------------------------------------------------------


PHOTO = photo()


def difference(a: bytes, b: bytes) -> float:
    """Mean difference per channel (0-255) of two pictures, the first brought to the second's size."""
    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        small = first.convert("RGB").resize(second.size, Image.Resampling.BILINEAR)
        diff = ImageChops.difference(small, second.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def from_picture(caps: Capabilities, text: str) -> DrawRequest:
    """``text`` drawn from PHOTO, fitted as the core fits it for ``caps``' service."""
    request = parse_request(text, caps, picture=(1200, 800))
    width, height = target(caps, request.size)
    return request.with_source(source(width, height))


def upscale_request(width: int, height: int, prompt: str = "a fox in snow", negative: str | None = None) -> DrawRequest:
    """The Upscale button's request: the picture at twice its sides, one picture, a seed."""
    return DrawRequest(
        prompt=prompt,
        negative_prompt=negative,
        size=f"{2 * width}x{2 * height}",
        n=1,
        seed=42,
        task="upscale",
        source=source(width, height),
    )


# -- Stability v2beta ---------------------------------------------------------------------------------------------


@pytest.fixture
async def stability() -> AsyncIterator[FakeStability]:
    async with FakeStability(api_key=KEY, credits=100.0) as server:
        yield server


def v2(fake: FakeStability, model: str = "sd3.5-large", upscale: str = "fast") -> StabilityV2Backend:
    return StabilityV2Backend(
        KEY, model=model, base_url=fake.url, upscale=upscale, timeout=10.0, connect_timeout=1.0, retry=fast_retry()[0]
    )


@pytest.mark.parametrize("model", ["sd3.5-large", "sd3.5-flash"])
async def test_sd35_draws_from_the_picture_with_image_to_image(stability: FakeStability, model: str) -> None:
    async with v2(stability, model) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image
        request = from_picture(caps, "a fox in snow --size 1024x576 --strength 0.35 --seed 7 --n 2")
        generation = await generate(backend, request, user=USER)
    assert request.source is not None and (request.source.width, request.source.height) == (1344, 768)
    assert [call.endpoint for call in stability.v2_calls] == ["sd3", "sd3"]
    for call in stability.v2_calls:
        fields = call.fields
        assert (fields["mode"], fields["model"], float(fields["strength"])) == ("image-to-image", model, 0.35)
        assert "aspect_ratio" not in fields  # refused with a picture: the picture's shape is the answer's
        assert pixels(call.files["image"]) == pixels(request.source.data)
    assert sorted(call.fields["seed"] for call in stability.v2_calls) == ["7", "8"]
    assert [(i.width, i.height, i.ratio) for i in generation.images] == [(*SD3_SIZES["16:9"], "16:9")] * 2


async def test_ultra_sends_the_picture_and_the_strength_together(stability: FakeStability) -> None:
    async with v2(stability, "ultra") as backend:
        caps = await backend.capabilities()
        request = from_picture(caps, "a lighthouse --size 768x1024 --strength 0.8")
        generation = await generate(backend, request, user=USER)
    (call,) = stability.v2_calls
    assert call.endpoint == "ultra" and float(call.fields["strength"]) == 0.8
    assert "aspect_ratio" not in call.fields and "mode" not in call.fields and "model" not in call.fields
    assert request.source is not None and pixels(call.files["image"]) == pixels(request.source.data)
    (image,) = generation.images
    assert (image.width, image.height, image.ratio) == (*SD3_SIZES["4:5"], "4:5")


async def test_without_strength_the_default_is_sent(stability: FakeStability) -> None:
    async with v2(stability) as backend:
        caps = await backend.capabilities()
        await generate(backend, from_picture(caps, "a boat"), user=USER)
    assert float(stability.v2_calls[0].fields["strength"]) == caps.strength


async def test_core_does_not_draw_from_pictures(stability: FakeStability) -> None:
    async with v2(stability, "core") as backend:
        caps = await backend.capabilities()
        assert not caps.image_to_image
        with pytest.raises(DrawError) as refused:
            parse_request("a boat", caps, picture=(1200, 800))
        assert refused.value.code == "picture_unsupported"
        # Past validation (a stored job, another service's request): refused before anything is sent.
        forced = DrawRequest(prompt="a boat", seed=1, strength=0.5, source=source(1024, 1024))
        with pytest.raises(BackendError) as caught:
            await backend.generate(forced, user=USER)
    assert caught.value.code == "backend_config" and stability.v2_calls == []


async def test_the_fake_refuses_what_the_service_refuses_in_image_to_image(stability: FakeStability) -> None:
    picture = source(1024, 1024).data

    async def post(path: str, fields: dict[str, str], image: bytes | None = picture) -> httpx.Response:
        files: Any = [(name, (None, value.encode())) for name, value in fields.items()]
        if image is not None:
            files.append(("image", ("image.png", image, "image/png")))
        async with httpx.AsyncClient(base_url=stability.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
            return await client.post(path, files=files)

    sd3 = "/v2beta/stable-image/generate/sd3"
    cases = [
        (sd3, {"prompt": "x", "mode": "image-to-image"}, picture, "strength: required"),
        (sd3, {"prompt": "x", "mode": "image-to-image", "strength": "0.5"}, None, "image: required"),
        (sd3, {"prompt": "x", "mode": "image-to-image", "strength": "0.5", "aspect_ratio": "1:1"}, picture, "aspect"),
        ("/v2beta/stable-image/generate/ultra", {"prompt": "x"}, picture, "strength: required"),
        ("/v2beta/stable-image/upscale/fast", {}, source(1536, 1536).data, "1536"),
        ("/v2beta/stable-image/upscale/conservative", {}, picture, "prompt: required"),
    ]  # fmt: skip
    for path, fields, image, said in cases:
        answer = await post(path, fields, image)
        body = answer.json()
        assert answer.status_code == 400 and set(body) == {"id", "name", "errors"}, (path, fields, body)
        assert body["name"] == "bad_request" and any(said in error for error in body["errors"]), body
    assert stability.credits == 100.0  # errors are not billed


async def test_fast_upscale_gives_exactly_twice_the_sides(stability: FakeStability) -> None:
    async with v2(stability) as backend:
        assert (await backend.capabilities()).upscale
        request = upscale_request(640, 512)
        generation = await generate(backend, request, user=USER)
    (call,) = stability.v2_calls
    assert call.endpoint == "upscale/fast" and call.fields == {"output_format": "png"}  # fast takes nothing else
    assert request.source is not None and pixels(call.files["image"]) == pixels(request.source.data)
    (image,) = generation.images
    assert_image(image, 1280, 1024)
    assert image.ratio is None and generation.drawn.size is None  # exactly the size asked, no ratio of its own
    # It is the picture, upscaled (the fake answers the picture itself at 4x), not something else.
    assert difference(image.data, request.source.data) < 4 < difference(source(512, 640).data, request.source.data)
    assert stability.credits == pytest.approx(100.0 - 2)


async def test_a_picture_too_large_for_the_fast_upscaler_is_refused_clearly(stability: FakeStability) -> None:
    async with v2(stability) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, upscale_request(1536, 1536), user=USER)
    error = caught.value
    assert (error.code, error.provider_code, error.user_fault) == (
        "backend_invalid_request",
        "upscale_too_large",
        False,
    )
    assert stability.generate_calls == [] and stability.credits == 100.0  # nothing sent, nothing billed
    english = render_error(error, "en")
    assert "1536x1536" in english and "1536 pixels" in english and "STABILITY_UPSCALE" in english
    assert "not charged" in english and "{" not in english
    chinese = render_error(error, "zh")
    assert "1536x1536" in chinese and "STABILITY_UPSCALE" in chinese and "本次不扣额度" in chinese


async def test_conservative_upscale_sends_the_prompt_and_gives_twice_the_sides(stability: FakeStability) -> None:
    async with v2(stability, "core", upscale="conservative") as backend:
        assert (await backend.capabilities()).upscale  # Core's 1.5 megapixel pictures fit this one
        request = upscale_request(1536, 1536, prompt="a red fox", negative="fog")
        generation = await generate(backend, request, user=USER)
    (call,) = stability.v2_calls
    assert call.endpoint == "upscale/conservative"
    assert call.fields == {"output_format": "png", "prompt": "a red fox", "negative_prompt": "fog", "seed": "42"}
    (image,) = generation.images
    assert_image(image, 3072, 3072)  # the service answered about 4 megapixels (2048x2048): resized to exactly 2x
    assert image.seed == 42 and difference(image.data, request.source.data) < 4  # type: ignore[union-attr]


async def test_upscale_is_off_for_core_with_the_fast_upscaler_or_when_set_off(stability: FakeStability) -> None:
    async with v2(stability, "core") as backend:
        assert not (await backend.capabilities()).upscale
        report = await backend.check()
    said = {label.render("en"): value.render("en") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert "conservative" in said["Upscale"] and "Core" in said["Upscale"]
    async with v2(stability, "sd3.5-large", upscale="off") as backend:
        assert not (await backend.capabilities()).upscale
        report = await backend.check()
    said = {label.render("zh"): value.render("zh") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert "STABILITY_UPSCALE" in said["放大"]


def test_stability_upscale_setting() -> None:
    base = {"SDBOT_BACKEND": "stability", "STABILITY_API_KEY": KEY}
    assert Settings.from_env(base, env_file=None).stability_upscale == "fast"
    settings = Settings.from_env({**base, "STABILITY_UPSCALE": "Conservative"}, env_file=None)
    assert settings.stability_upscale == "conservative"
    assert StabilityV2Backend.options(settings)["upscale"] == "conservative"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**base, "STABILITY_UPSCALE": "creative"}, env_file=None)
    assert caught.value.variable == "STABILITY_UPSCALE"


# -- Stability v1 (SDXL) ------------------------------------------------------------------------------------------


def v1(fake: FakeStability) -> StabilityBackend:
    return StabilityBackend(
        KEY, base_url=fake.url, engine=SDXL, timeout=10.0, connect_timeout=1.0, retry=fast_retry()[0]
    )


async def test_v1_sends_image_to_image_with_the_part_of_the_picture_kept(stability: FakeStability) -> None:
    async with v1(stability) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and caps.strength == 0.65 and not caps.upscale
        text = "a fox --size 1152x896 --strength 0.3 --n 2 --seed 11 --negative fog --style Anime --steps 25 --cfg 6"
        request = from_picture(caps, text + ' --sampler "Euler a"')
        generation = await generate(backend, request, user=USER)
    (call,) = stability.v1_image_calls
    fields = call.fields
    assert call.endpoint == SDXL and stability.v2_calls == []
    assert float(fields["image_strength"]) == pytest.approx(0.7)  # KEPT: 1 - strength
    assert fields["init_image_mode"] == "IMAGE_STRENGTH"
    prompts = [(fields[f"text_prompts[{i}][text]"], float(fields[f"text_prompts[{i}][weight]"])) for i in (0, 1)]
    assert prompts == [("a fox", 1.0), ("fog", -1.0)]
    assert (int(fields["samples"]), int(fields["steps"]), int(fields["seed"]), float(fields["cfg_scale"])) == (
        2,
        25,
        11,
        6.0,
    )
    assert (fields["style_preset"], fields["sampler"]) == ("anime", "K_EULER_ANCESTRAL")
    assert "width" not in fields and "height" not in fields  # the picture's size is the answer's
    assert request.source is not None and pixels(call.files["init_image"]) == pixels(request.source.data)
    assert [(i.width, i.height, i.ratio) for i in generation.images] == [(1152, 896, None)] * 2


async def test_v1_default_strength_keeps_the_documented_image_strength(stability: FakeStability) -> None:
    async with v1(stability) as backend:
        caps = await backend.capabilities()
        await generate(backend, from_picture(caps, "a fox --size 1024x1024"), user=USER)
    assert float(stability.v1_image_calls[0].fields["image_strength"]) == pytest.approx(0.35)  # v1's own default


async def test_v1_refuses_an_init_image_of_a_size_sdxl_does_not_take(stability: FakeStability) -> None:
    request = DrawRequest(prompt="a fox", size="1000x1000", seed=3, strength=0.5, source=source(1000, 1000))
    async with v1(stability) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(request, user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_invalid_request", "invalid_sdxl_v1_dimensions")


# -- Bedrock ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, region="us-west-2") as server:
        yield server


def aws(fake: FakeBedrock, model: str = SD35_LARGE, **kwargs: Any) -> BedrockBackend:
    options: dict[str, Any] = {
        "region": fake.region,
        "model_id": model,
        "endpoint_url": fake.url,
        "access_key_id": AKID,
        "secret_access_key": SECRET,
        "timeout": 10.0,
        "connect_timeout": 1.0,
        "retry": fast_retry()[0],
    }
    return BedrockBackend(**{**options, **kwargs})


def decoded(body: dict[str, Any], key: str = "image") -> tuple[tuple[int, int], bytes]:
    return pixels(base64.b64decode(body[key]))


async def test_bedrock_sd35_large_draws_from_the_picture(bedrock: FakeBedrock) -> None:
    async with aws(bedrock) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image
        request = from_picture(caps, "a harbour --size 576x1024 --strength 0.45 --seed 9")
        generation = await generate(backend, request, user=USER)
    (call,) = bedrock.generate_calls
    body = call.body
    assert (body["mode"], body["strength"], body["seed"]) == ("image-to-image", 0.45, 9)
    assert "aspect_ratio" not in body
    assert request.source is not None and decoded(body) == pixels(request.source.data)
    (image,) = generation.images
    assert (image.width, image.height, image.ratio) == (*SD3_SIZES["9:16"], "9:16")


@pytest.mark.parametrize("model", [IMAGE_CORE, IMAGE_ULTRA])
async def test_bedrock_core_and_ultra_do_not_draw_from_pictures(bedrock: FakeBedrock, model: str) -> None:
    async with aws(bedrock, model) as backend:
        caps = await backend.capabilities()
        forced = DrawRequest(prompt="a boat", seed=1, strength=0.5, source=source(1024, 1024))
        with pytest.raises(BackendError):
            await backend.generate(forced, user=USER)
    assert not caps.image_to_image and bedrock.generate_calls == []


async def test_bedrock_sdxl_sends_the_init_image_and_the_part_kept(bedrock: FakeBedrock) -> None:
    async with aws(bedrock, BEDROCK_SDXL) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and caps.strength == 0.65
        request = from_picture(caps, "a fox --size 1216x832 --strength 0.25 --seed 5 --steps 30")
        generation = await generate(backend, request, user=USER)
    (call,) = bedrock.generate_calls
    body = call.body
    assert (body["init_image_mode"], body["image_strength"]) == ("IMAGE_STRENGTH", pytest.approx(0.75))
    assert "width" not in body and "height" not in body and body["text_prompts"][0]["text"] == "a fox"
    assert (body["seed"], body["steps"], body["samples"]) == (5, 30, 1)
    assert request.source is not None and decoded(body, "init_image") == pixels(request.source.data)
    assert [(i.width, i.height) for i in generation.images] == [(1216, 832)]


async def test_bedrock_upscale_is_off_by_default(bedrock: FakeBedrock) -> None:
    async with aws(bedrock) as backend:
        assert not (await backend.capabilities()).upscale
        report = await backend.check()
        with pytest.raises(BackendError):
            await backend.generate(upscale_request(512, 512), user=USER)
    said = {label.render("en"): value.render("en") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert report.ok and "BEDROCK_UPSCALE_MODEL_ID" in said["Upscale"]
    assert [call.raw_body for call in bedrock.generate_calls] == [b"{}"]  # the check's probe only
    settings = Settings.from_env({"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-west-2"}, env_file=None)
    assert settings.bedrock_upscale_model_id is None


async def test_bedrock_fast_upscale_through_an_inference_profile() -> None:
    east = FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, region="us-east-1")
    async with east as fake, aws(fake, upscale_model_id=f"us.{FAST_UPSCALE}") as backend:
        assert (await backend.capabilities()).upscale
        request = upscale_request(1024, 576)
        generation = await generate(backend, request, user=USER)
        report = await backend.check()
    call = fake.generate_calls[0]
    assert call.path == f"/model/us.{FAST_UPSCALE}/invoke"
    assert set(call.body) == {"image", "output_format"} and call.body["output_format"] == "png"
    assert request.source is not None and decoded(call.body) == pixels(request.source.data)
    (image,) = generation.images
    assert_image(image, 2048, 1152)
    assert image.ratio is None and difference(image.data, request.source.data) < 4
    said = {label.render("en"): value.render("en") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert report.ok and FAST_UPSCALE in said["Upscale"]  # the upscaler probed too


async def test_bedrock_conservative_upscale_sends_the_prompt(bedrock: FakeBedrock) -> None:
    async with aws(bedrock, upscale_model_id=CONSERVATIVE_UPSCALE) as backend:
        request = upscale_request(832, 1216, prompt="a lighthouse")
        generation = await generate(backend, request, user=USER)
    (call,) = bedrock.generate_calls
    assert {k: v for k, v in call.body.items() if k != "image"} == {
        "output_format": "png",
        "prompt": "a lighthouse",
        "seed": 42,
    }
    (image,) = generation.images
    assert_image(image, 1664, 2432)


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_bedrock_fast_upscale_refuses_a_picture_too_large(bedrock: FakeBedrock, lang: Lang) -> None:
    async with aws(bedrock, upscale_model_id=FAST_UPSCALE) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(upscale_request(1600, 900), user=USER)
    assert caught.value.provider_code == "upscale_too_large" and bedrock.generate_calls == []
    said = render_error(caught.value, lang)
    assert "1600x900" in said and "BEDROCK_UPSCALE_MODEL_ID" in said


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_bedrock_upscaler_without_access_names_its_variable(lang: Lang) -> None:
    denied = FakeBedrock(
        access_key_id=AKID, secret_access_key=SECRET, region="us-west-2", denied_models=(FAST_UPSCALE,)
    )
    async with denied as fake, aws(fake, upscale_model_id=FAST_UPSCALE) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(upscale_request(512, 512), user=USER)
        report = await backend.check()
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "upscale_access_denied")
    assert "BEDROCK_UPSCALE_MODEL_ID" in render_error(caught.value, lang)
    assert not report.ok and report.findings[-1][1].provider_code == "upscale_access_denied"  # type: ignore[union-attr]


async def test_bedrock_bare_upscaler_id_in_us_east_1_asks_for_an_inference_profile() -> None:
    east = FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, region="us-east-1")
    async with east as fake, aws(fake, upscale_model_id=FAST_UPSCALE) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(upscale_request(512, 512), user=USER)
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "inference_profile")
    assert "us.stability" in render_error(caught.value, "en")


def test_bedrock_upscale_model_setting() -> None:
    env = {"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-west-2", "AWS_BEARER_TOKEN_BEDROCK": "k"}
    good = Settings.from_env({**env, "BEDROCK_UPSCALE_MODEL_ID": f"us.{CONSERVATIVE_UPSCALE}"}, env_file=None)
    assert BedrockBackend.options(good)["upscale_model_id"] == f"us.{CONSERVATIVE_UPSCALE}"
    with pytest.raises(ConfigError) as caught:
        BedrockBackend.options(Settings.from_env({**env, "BEDROCK_UPSCALE_MODEL_ID": "stability.x"}, env_file=None))
    assert caught.value.variable == "BEDROCK_UPSCALE_MODEL_ID"
