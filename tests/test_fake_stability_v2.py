"""The fake Stability's v2beta generate endpoints (tests/fakes/stability.py), driven directly with httpx."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.images import NOT_AN_IMAGE
from tests.fakes.stability import CORE_SIZES, MODERATION_MESSAGE, SD3_SIZES, V2_ERROR_MESSAGES, FakeStability

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def generate(
    client: httpx.AsyncClient,
    fake: FakeStability,
    endpoint: str = "core",
    fields: dict[str, Any] | None = None,
    *,
    image: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A multipart generate request; every field a part without a file name, as the bot's client sends them."""
    parts: list[tuple[str, tuple[str | None, bytes] | tuple[str, bytes, str]]] = [
        (name, (None, str(value).encode())) for name, value in {"prompt": "a lighthouse", **(fields or {})}.items()
    ]
    if image is not None:
        parts.append(("image", ("input.png", image, "image/png")))
    url = f"{fake.url}/v2beta/stable-image/generate/{endpoint}"
    return await client.post(url, headers=AUTH if headers is None else headers, files=parts)


async def balance(client: httpx.AsyncClient, fake: FakeStability) -> float:
    return (await client.get(fake.url + "/v1/user/balance", headers=AUTH)).json()["credits"]


def assert_error(response: httpx.Response, status: int, name: str) -> list[str]:
    body = response.json()
    assert response.status_code == status, response.text
    assert set(body) == {"id", "name", "errors"} and body["name"] == name
    assert isinstance(body["errors"], list) and body["errors"]
    if name != "rate_limit_exceeded":
        assert HEX32.match(body["id"])
    return body["errors"]


# -- success -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "fields", "content_type", "pil_format", "size"),
    [
        ("core", {}, "image/png", "PNG", CORE_SIZES["1:1"]),
        ("core", {"aspect_ratio": "16:9", "output_format": "jpeg"}, "image/jpeg", "JPEG", (2016, 1152)),
        ("ultra", {"aspect_ratio": "21:9", "output_format": "webp"}, "image/webp", "WEBP", (1536, 640)),
        ("sd3", {"model": "sd3.5-medium", "aspect_ratio": "9:16", "cfg_scale": 5}, "image/png", "PNG", (768, 1344)),
        ("sd3", {"model": "sd3.5-flash", "style_preset": "anime"}, "image/png", "PNG", (1024, 1024)),
    ],
)
async def test_bytes_answer_has_the_format_size_and_headers(
    endpoint: str, fields: dict[str, Any], content_type: str, pil_format: str, size: tuple[int, int]
) -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        response = await generate(client, fake, endpoint, {**fields, "seed": 1234})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == content_type
        assert response.headers["finish-reason"] == "SUCCESS" and response.headers["seed"] == "1234"
        assert HEX32.match(response.headers["x-request-id"])
        image = picture(response.content)
        assert image.format == pil_format and image.size == size


async def test_sizes_follow_the_documented_tables() -> None:
    assert CORE_SIZES["1:1"] == (1536, 1536)
    assert SD3_SIZES == {
        "1:1": (1024, 1024),
        "16:9": (1344, 768),
        "21:9": (1536, 640),
        "3:2": (1216, 832),
        "5:4": (1088, 896),
        "4:5": (896, 1088),
        "2:3": (832, 1216),
        "9:16": (768, 1344),
        "9:21": (640, 1536),
    }
    assert all(w * h > 2_000_000 for w, h in CORE_SIZES.values())  # ~1.5x of ~1 MP a side


async def test_json_accept_answers_base64_without_finish_reason_and_seed_headers() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        headers = {**AUTH, "Accept": "application/json"}
        response = await generate(client, fake, "sd3", {"output_format": "jpeg", "seed": 77}, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; type=image/jpeg"
        assert "finish-reason" not in response.headers and "seed" not in response.headers
        assert "x-request-id" in response.headers
        body = response.json()
        assert set(body) == {"image", "seed", "finish_reason"}
        assert body["seed"] == 77 and body["finish_reason"] == "SUCCESS"
        assert picture(base64.b64decode(body["image"])).size == (1024, 1024)


async def test_no_accept_header_and_random_seed() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        response = await generate(client, fake, fields={"seed": 0})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert 1 <= int(response.headers["seed"]) <= 4294967294


async def test_calls_are_recorded_with_fields_and_files() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        input_png = png(640, 640)
        await generate(client, fake, "ultra", {"strength": 0.4, "unknown": "kept"}, image=input_png)
        call = fake.v2_calls[-1]
        assert call.endpoint == "ultra"
        assert call.fields == {"prompt": "a lighthouse", "strength": "0.4", "unknown": "kept"}
        assert call.files == {"image": input_png}
        assert call.headers["authorization"] == f"Bearer {KEY}"
        assert fake.generate_calls[-1].path == "/v2beta/stable-image/generate/ultra"


# -- image-to-image ----------------------------------------------------------------------------------------
async def test_image_to_image_follows_the_input_aspect() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fields = {"mode": "image-to-image", "strength": 0.6, "model": "sd3.5-large"}
        sd3 = await generate(client, fake, "sd3", fields, image=png(300, 200))
        assert sd3.status_code == 200, sd3.text
        assert picture(sd3.content).size == (1216, 832)  # 3:2
        ultra = await generate(client, fake, "ultra", {"strength": 0.5}, image=png(512, 1024))
        assert ultra.status_code == 200, ultra.text
        assert picture(ultra.content).size == (768, 1344)  # 1:2 -> 9:16, the nearest ratio


@pytest.mark.parametrize(
    ("endpoint", "fields", "image", "expected"),
    [
        ("sd3", {"mode": "image-to-image"}, png(128, 128), ["strength: required"]),
        ("sd3", {"mode": "image-to-image", "strength": 0.5}, None, ["image: required"]),
        (
            "sd3",
            {"mode": "image-to-image", "strength": 0.5, "aspect_ratio": "1:1"},
            png(128, 128),
            ["aspect_ratio: only valid for text-to-image requests"],
        ),
        ("sd3", {"strength": 0.5}, png(128, 128), ["image: only valid for image-to-image requests"]),
        (
            "sd3",
            {"mode": "image-to-image", "strength": 0.5},
            png(32, 128),
            ["image: every side must be at least 64 pixels"],
        ),
        ("sd3", {"mode": "image-to-image", "strength": 1.5}, png(128, 128), ["strength: must be between 0 and 1"]),
        ("ultra", {}, png(128, 128), ["strength: required when image is provided"]),
        ("ultra", {"strength": 0.5}, b"not a picture", ["image: could not be read as an image"]),
    ],
)
async def test_image_to_image_rules(
    endpoint: str, fields: dict[str, Any], image: bytes | None, expected: list[str]
) -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        assert assert_error(await generate(client, fake, endpoint, fields, image=image), 400, "bad_request") == expected


# -- validation, multipart, auth, size ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "fields", "expected"),
    [
        ("core", {"prompt": ""}, "prompt: required"),
        ("core", {"prompt": "x" * 10001}, "prompt: must be at most 10000 characters"),
        ("core", {"negative_prompt": "x" * 10001}, "negative_prompt: must be at most 10000 characters"),
        ("core", {"seed": 4294967295}, "seed: must be between 0 and 4294967294"),
        ("core", {"seed": "abc"}, "seed: must be a number"),
        ("core", {"seed": 1.5}, "seed: must be an integer"),
        ("core", {"aspect_ratio": "4:3"}, "aspect_ratio: must be one of '21:9' | '16:9' | '3:2' | "),
        ("ultra", {"output_format": "gif"}, "output_format: must be one of 'png' | 'jpeg' | 'webp'"),
        ("core", {"style_preset": "watercolour"}, "style_preset: must be one of '3d-model' | "),
        ("sd3", {"model": "sd3-large"}, "model: must be one of 'sd3.5-large' | 'sd3.5-large-turbo' | "),
        ("sd3", {"mode": "inpaint"}, "mode: must be one of 'text-to-image' | 'image-to-image'"),
        ("sd3", {"cfg_scale": 11}, "cfg_scale: must be between 1 and 10"),
    ],
)
async def test_validation_errors(endpoint: str, fields: dict[str, Any], expected: str) -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        errors = assert_error(await generate(client, fake, endpoint, fields), 400, "bad_request")
        assert len(errors) == 1 and errors[0].startswith(expected)


async def test_every_problem_is_listed_and_validation_runs_before_the_key() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fake.push_moderation()  # a refused request never takes a planned fault
        fields = {"prompt": "", "model": "sd3.6", "cfg_scale": 0}
        bad = await generate(client, fake, "sd3", fields, headers={"Authorization": "Bearer wrong"})
        errors = assert_error(bad, 400, "bad_request")
        assert len(errors) == 3 and errors[0] == "prompt: required"
        wrong_key = await generate(client, fake, headers={"Authorization": "Bearer wrong"})
        assert assert_error(wrong_key, 401, "unauthorized") == ["Incorrect API key provided"]
        missing = await generate(client, fake, headers={})
        assert assert_error(missing, 401, "unauthorized") == ["missing authorization header"]
        assert len(fake.faults) == 1
        assert assert_error(await generate(client, fake), 403, "content_moderation") == [MODERATION_MESSAGE]


async def test_a_json_body_is_refused_as_the_service_takes_multipart_only() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        url = f"{fake.url}/v2beta/stable-image/generate/core"
        as_json = await client.post(url, headers=AUTH, json={"prompt": "a lighthouse"})
        assert assert_error(as_json, 400, "bad_request") == ["content-type: must be multipart/form-data"]
        urlencoded = await client.post(url, headers=AUTH, data={"prompt": "a lighthouse"})
        assert urlencoded.status_code == 400
        assert fake.v2_calls[0].fields == {} and fake.generate_calls[0].body == {"prompt": "a lighthouse"}


async def test_a_body_over_10_mib_is_refused_with_413() -> None:
    async with FakeStability(api_key=KEY, credits=50.0) as fake, http() as client:
        big = b"\0" * (10 * 1024 * 1024 + 1)
        response = await generate(client, fake, "ultra", {"strength": 0.5}, image=big)
        assert assert_error(response, 413, "payload_too_large") == [
            "body: payloads cannot be larger than 10MiB in size"
        ]
        assert await balance(client, fake) == 50.0


# -- credits ---------------------------------------------------------------------------------------------
async def test_each_call_costs_its_documented_credits_and_failures_cost_nothing() -> None:
    async with FakeStability(api_key=KEY, credits=100.0) as fake, http() as client:
        costs = [
            ("core", {}, 3.0),
            ("ultra", {}, 8.0),
            ("sd3", {}, 6.5),  # sd3.5-large by default
            ("sd3", {"model": "sd3.5-large-turbo"}, 4.0),
            ("sd3", {"model": "sd3.5-medium"}, 3.5),
            ("sd3", {"model": "sd3.5-flash"}, 2.5),
        ]
        expected = 100.0
        for endpoint, fields, cost in costs:
            assert (await generate(client, fake, endpoint, fields)).status_code == 200
            expected -= cost
            assert await balance(client, fake) == pytest.approx(expected)
        await generate(client, fake, "core", {"aspect_ratio": "7:3"})  # 400
        await generate(client, fake, headers={"Authorization": "Bearer wrong"})  # 401
        fake.push_moderation()
        fake.push_status(500)
        await generate(client, fake)
        await generate(client, fake)
        assert await balance(client, fake) == pytest.approx(expected)
        fake.push_content_filtered()
        filtered = await generate(client, fake, "core")
        assert filtered.headers["finish-reason"] == "CONTENT_FILTERED"
        assert await balance(client, fake) == pytest.approx(expected - 3.0)  # a filtered picture is billed


async def test_refuse_without_credits_answers_402() -> None:
    async with FakeStability(api_key=KEY, credits=5.0, refuse_without_credits=True) as fake, http() as client:
        assert (await generate(client, fake, "core")).status_code == 200
        broke = await generate(client, fake, "core")
        assert assert_error(broke, 402, "payment_required") == [V2_ERROR_MESSAGES["payment_required"]]
        assert await balance(client, fake) == 2.0


# -- planned faults --------------------------------------------------------------------------------------
async def test_content_filtered_in_bytes_and_json() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fake.push_content_filtered()
        fake.push_content_filtered()
        raw = await generate(client, fake, "sd3", {"output_format": "webp"})
        assert raw.status_code == 200 and raw.headers["finish-reason"] == "CONTENT_FILTERED"
        grey = picture(raw.content)
        assert grey.format == "WEBP" and grey.size == (1024, 1024)
        assert grey.convert("RGB").getextrema() == ((128, 128), (128, 128), (128, 128))
        as_json = await generate(client, fake, headers={**AUTH, "Accept": "application/json"})
        assert as_json.json()["finish_reason"] == "CONTENT_FILTERED"


@pytest.mark.parametrize(
    ("status", "name", "message"),
    [
        (429, "rate_limit_exceeded", V2_ERROR_MESSAGES["rate_limit_exceeded"]),
        (403, "content_moderation", MODERATION_MESSAGE),
        (422, "invalid_language", "English is the only supported language for this service."),
        (402, "payment_required", V2_ERROR_MESSAGES["payment_required"]),
        (500, "internal_error", "An unexpected server error has occurred, please try again later."),
    ],
)
async def test_pushed_statuses_have_the_v2_shape_and_documented_texts(status: int, name: str, message: str) -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fake.push_status(status, headers={"Retry-After": "60"})
        response = await generate(client, fake)
        assert assert_error(response, status, name) == [message]
        assert response.headers["Retry-After"] == "60"
        if status == 429:
            assert response.json()["id"] == "rate_limit_exceeded"
            assert message.endswith("and have been timed out for 60 seconds.")


async def test_pushed_status_keeps_the_v1_shape_on_v1_routes() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fake.push_status(429)
        fake.push_status(422, "public_figure")
        fake.push_status(400, errors=["prompt: required", "seed: must be a number"])
        body = {"text_prompts": [{"text": "a cat"}], "width": 1024, "height": 1024}
        v1 = await client.post(
            f"{fake.url}/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image", headers=AUTH, json=body
        )
        assert v1.status_code == 429 and set(v1.json()) == {"id", "name", "message"}
        assert v1.json()["name"] == "rate_limit_exceeded"
        assert (
            "Our system detected the likeness of a public figure"
            in assert_error(await generate(client, fake), 422, "public_figure")[0]
        )
        assert assert_error(await generate(client, fake), 400, "bad_request") == [
            "prompt: required",
            "seed: must be a number",
        ]


async def test_generic_faults_on_v2() -> None:
    async with FakeStability(api_key=KEY) as fake, http() as client:
        fake.push_not_an_image()
        fake.push_wrong_size()
        fake.push_malformed_json()
        fake.push_response(503, "<html>busy</html>")
        fake.push_disconnect()
        html = await generate(client, fake, fields={"output_format": "jpeg"})
        assert html.status_code == 200 and html.headers["content-type"] == "image/jpeg"
        assert html.content == NOT_AN_IMAGE
        half = await generate(client, fake, "sd3", {"aspect_ratio": "16:9", "output_format": "jpeg"})
        assert picture(half.content).size == (672, 384) and picture(half.content).format == "JPEG"
        broken = await generate(client, fake)
        assert broken.status_code == 200 and broken.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        assert (await generate(client, fake)).status_code == 503
        with pytest.raises(httpx.TransportError):
            await generate(client, fake)
        assert not fake.faults
