"""The fake OpenAI Images API (tests/fakes/openai_images.py), driven directly with httpx."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.images import NOT_AN_IMAGE
from tests.fakes.openai_images import FakeOpenAIImages, mask_key

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
GPT_KEYS = {"created", "data", "background", "output_format", "quality", "size", "usage"}


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0))


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def b64_picture(item: dict[str, Any]) -> Image.Image:
    return picture(base64.b64decode(item["b64_json"]))


async def generate(
    client: httpx.AsyncClient,
    fake: FakeOpenAIImages,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    url = fake.base_url + "/images/generations"
    sent = AUTH if headers is None else headers
    if content is not None:
        return await client.post(url, headers={**sent, "Content-Type": "application/json"}, content=content)
    return await client.post(
        url, headers=sent, json={"model": "gpt-image-1.5", "prompt": "a fox"} if body is None else body
    )


def assert_error(response: httpx.Response, status: int, type_: str, code: str | None, param: str | None = None) -> str:
    body = response.json()
    assert response.status_code == status, response.text
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    assert (body["error"]["type"], body["error"]["code"], body["error"]["param"]) == (type_, code, param)
    assert response.headers["x-request-id"].startswith("req_")
    return body["error"]["message"]


# -- gpt-image -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "pil_format", "size", "mode"),
    [
        ({}, "PNG", (1024, 1024), "RGB"),
        ({"size": "1536x1024", "output_format": "jpeg", "output_compression": 60}, "JPEG", (1536, 1024), "RGB"),
        ({"size": "1024x1536", "output_format": "webp", "background": "transparent"}, "WEBP", (1024, 1536), "RGBA"),
        (
            {"background": "transparent", "quality": "low", "moderation": "low", "user": "u-1"},
            "PNG",
            (1024, 1024),
            "RGBA",
        ),
    ],
)
async def test_gpt_image_answers_base64_pictures_in_the_asked_format(
    fields: dict[str, Any], pil_format: str, size: tuple[int, int], mode: str
) -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "gpt-image-1.5", "prompt": "a fox", **fields})
        answer = response.json()
        assert response.status_code == 200 and set(answer) == GPT_KEYS
        assert (
            response.headers["x-request-id"].startswith("req_") and "x-ratelimit-remaining-requests" in response.headers
        )
        assert set(answer["data"][0]) == {"b64_json"}  # no url, no revised_prompt
        image = b64_picture(answer["data"][0])
        assert (image.format, image.size, image.mode) == (pil_format, size, mode)
        assert answer["size"] == "{}x{}".format(*size)
        assert answer["output_format"] == fields.get("output_format", "png")
        assert answer["background"] == ("transparent" if fields.get("background") == "transparent" else "opaque")
        assert answer["quality"] == fields.get("quality", "high")
        usage = answer["usage"]
        assert set(usage) == {
            "input_tokens",
            "input_tokens_details",
            "output_tokens",
            "output_tokens_details",
            "total_tokens",
        }
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
        assert fake.generate_calls[0].body["prompt"] == "a fox"


async def test_several_pictures_differ() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        data = (await generate(client, fake, {"model": "gpt-image-1.5", "prompt": "a fox", "n": 3})).json()["data"]
        assert len({item["b64_json"] for item in data}) == 3


async def test_gpt_image_2_takes_custom_sizes() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "gpt-image-2", "prompt": "a fox", "size": "1536x864"})
        assert response.status_code == 200 and b64_picture(response.json()["data"][0]).size == (1536, 864)
        for size in ("1000x1000", "3200x1024", "4096x1024", "512x512", "1024x"):
            response = await generate(client, fake, {"model": "gpt-image-2", "prompt": "a fox", "size": size})
            assert_error(response, 400, "invalid_request_error", "invalid_value", "size")


@pytest.mark.parametrize(
    ("fields", "code", "param", "message"),
    [
        (
            {"size": "512x512"},
            "invalid_value",
            "size",
            "Invalid value: '512x512'. Supported values are: '1024x1024', '1536x1024', '1024x1536', and 'auto'.",
        ),
        (
            {"response_format": "b64_json"},
            "unknown_parameter",
            "response_format",
            "Unknown parameter: 'response_format'.",
        ),
        ({"seed": 7}, "unknown_parameter", "seed", "Unknown parameter: 'seed'."),
        ({"quality": "hd"}, "invalid_value", "quality", None),
        ({"output_format": "gif"}, "invalid_value", "output_format", None),
        ({"background": "transparent", "output_format": "jpeg"}, "invalid_value", "background", None),
        ({"output_compression": 50}, "invalid_value", "output_compression", None),
        ({"output_compression": 101, "output_format": "webp"}, "integer_above_max_value", "output_compression", None),
        (
            {"n": 11},
            "integer_above_max_value",
            "n",
            "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead.",
        ),
        ({"n": 0}, "integer_below_min_value", "n", None),
        ({"n": "2"}, "invalid_type", "n", "Invalid type for 'n': expected an integer, but got a string instead."),
        ({"prompt": None}, "invalid_type", "prompt", None),
        ({"prompt": ""}, "empty_string", "prompt", None),
        (
            {"prompt": "x" * 32001},
            "string_above_max_length",
            "prompt",
            "Invalid 'prompt': string too long. Expected "
            "a string with maximum length 32000, but got a string with length 32001 instead.",
        ),
        ({"stream": True}, "unsupported_value", "stream", None),
    ],
)
async def test_gpt_image_refusals(fields: dict[str, Any], code: str, param: str, message: str | None) -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "gpt-image-1.5", "prompt": "a fox", **fields})
        got = assert_error(response, 400, "invalid_request_error", code, param)
        assert message is None or got == message


async def test_a_missing_prompt_and_a_body_that_is_not_json() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "gpt-image-1.5"})
        message = assert_error(response, 400, "invalid_request_error", "missing_required_parameter", "prompt")
        assert message == "Missing required parameter: 'prompt'."
        response = await generate(client, fake, content=b'{"prompt": ')
        assert assert_error(response, 400, "invalid_request_error", None).startswith(
            "We could not parse the JSON body of your request."
        )


# -- dall-e-3 ------------------------------------------------------------------------------------------------
async def test_dall_e_3_answers_links_served_by_the_fake() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox", "size": "1792x1024"})
        answer = response.json()
        assert response.status_code == 200 and set(answer) == {"created", "data"}
        item = answer["data"][0]
        assert set(item) == {"url", "revised_prompt"} and "a fox" in item["revised_prompt"]
        assert item["url"].startswith(fake.url + "/oai-files/img-") and "sig=" in item["url"]
        got = await client.get(item["url"])
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert picture(got.content).size == (1792, 1024) and len(fake.file_gets) == 1
        tampered = re.sub(r"sig=[^&]+", "sig=AAAA", item["url"])
        got = await client.get(tampered)
        assert got.status_code == 403 and b"<Code>AuthenticationFailed</Code>" in got.content
        assert (await client.get(fake.url + "/oai-files/img-missing.png")).status_code == 404


async def test_dall_e_3_base64_and_its_own_refusals() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        body = {
            "model": "dall-e-3",
            "prompt": "a fox",
            "response_format": "b64_json",
            "quality": "hd",
            "style": "natural",
        }
        item = (await generate(client, fake, body)).json()["data"][0]
        assert set(item) == {"b64_json", "revised_prompt"} and b64_picture(item).size == (1024, 1024)
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox", "n": 2})
        assert assert_error(response, 400, "invalid_request_error", None) == "You must provide n=1 for this model."
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox", "size": "1024x1536"})
        assert (
            assert_error(response, 400, "invalid_request_error", "invalid_size")
            == "The size is not supported by this model."
        )
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "x" * 4001})
        assert_error(response, 400, "invalid_request_error", "string_above_max_length", "prompt")
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox", "style": "loud"})
        assert_error(response, 400, "invalid_request_error", "invalid_value", "style")


# -- DeepInfra-like ------------------------------------------------------------------------------------------
async def test_a_deepinfra_like_prefix_and_model() -> None:
    async with FakeOpenAIImages(prefix="/v1/openai") as fake, http() as client:
        assert fake.base_url == fake.url + "/v1/openai"
        body = {"model": "black-forest-labs/FLUX-1-schnell", "prompt": "a fox", "size": "768x512", "n": 2, "seed": 1}
        response = await generate(client, fake, body)
        answer = response.json()
        assert response.status_code == 200 and set(answer) == {"created", "data"}
        assert [set(item) for item in answer["data"]] == [{"b64_json", "revised_prompt"}] * 2
        assert answer["data"][0]["revised_prompt"] == "a fox" and b64_picture(answer["data"][0]).size == (768, 512)
        response = await generate(client, fake, {**body, "response_format": "url"})
        assert set(response.json()["data"][0]) == {"url", "revised_prompt"}
        response = await generate(client, fake, {**body, "size": "1001x512"})
        assert_error(response, 400, "invalid_request_error", "invalid_value", "size")
        assert (await client.post(fake.url + "/v1/images/generations", headers=AUTH, json=body)).status_code == 404


async def test_the_answer_option_sets_the_default_for_other_models() -> None:
    async with FakeOpenAIImages(answer="url") as fake, http() as client:
        body = {"model": "black-forest-labs/FLUX-1-schnell", "prompt": "a fox"}
        assert "url" in (await generate(client, fake, body)).json()["data"][0]


# -- auth and models -----------------------------------------------------------------------------------------
async def test_auth_errors() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        fake.push_server_error()
        message = assert_error(await generate(client, fake, headers={}), 401, "invalid_request_error", None)
        assert message.startswith("You didn't provide an API key.")
        response = await generate(client, fake, headers={"Authorization": "Bearer sk-proj-wrongwrongwrong1234"})
        message = assert_error(response, 401, "invalid_request_error", "invalid_api_key")
        assert (
            message.startswith(f"Incorrect API key provided: sk-proj-{'*' * 15}1234.") and "wrongwrong" not in message
        )
        assert len(fake.faults) == 1 and len(fake.generate_calls) == 2  # recorded; no fault consumed
        assert mask_key("sk-short") == "sk-*****"


async def test_models_list_and_lookup() -> None:
    async with FakeOpenAIImages(models=("gpt-image-2", "black-forest-labs/FLUX-1-schnell")) as fake, http() as client:
        listed = await client.get(fake.base_url + "/models", headers=AUTH)
        body = listed.json()
        assert listed.status_code == 200 and body["object"] == "list"
        assert [model["id"] for model in body["data"]] == ["gpt-image-2", "black-forest-labs/FLUX-1-schnell"]
        for model in body["data"]:
            assert set(model) == {"id", "object", "created", "owned_by"} and model["object"] == "model"
            assert isinstance(model["created"], int)
        assert body["data"][1]["owned_by"] == "black-forest-labs"
        one = await client.get(fake.base_url + "/models/black-forest-labs/FLUX-1-schnell", headers=AUTH)
        assert one.json() == body["data"][1]
        missing = await client.get(fake.base_url + "/models/dall-e-3", headers=AUTH)
        message = assert_error(missing, 404, "invalid_request_error", "model_not_found")
        assert message == "The model `dall-e-3` does not exist or you do not have access to it."
        refused = await client.get(fake.base_url + "/models", headers={"Authorization": "Bearer sk-wrong"})
        assert_error(refused, 401, "invalid_request_error", "invalid_api_key")
        assert len(fake.models_calls) == 4 and fake.generate_calls == []


async def test_unknown_and_default_models() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        response = await generate(client, fake, {"model": "gpt-image-9", "prompt": "a fox"})
        assert "`gpt-image-9`" in assert_error(response, 404, "invalid_request_error", "model_not_found")
        response = await generate(client, fake, {"prompt": "a fox"})  # no model: the API's default, dall-e-2
        assert "`dall-e-2`" in assert_error(response, 404, "invalid_request_error", "model_not_found")
    async with FakeOpenAIImages(models=("dall-e-2",)) as fake, http() as client:
        response = await generate(client, fake, {"prompt": "a fox", "size": "256x256"})
        assert response.status_code == 200 and "url" in response.json()["data"][0]


# -- planned faults ------------------------------------------------------------------------------------------
async def test_moderation() -> None:
    async with FakeOpenAIImages(blocked_words=("gore",)) as fake, http() as client:
        fake.push_moderation()
        fake.push_moderation(categories=("sexual",), stage="output")
        fake.push_moderation()
        message = assert_error(await generate(client, fake), 400, "image_generation_user_error", "moderation_blocked")
        assert message.startswith("Your request was rejected by the safety system.")
        assert message.endswith("safety_violations=[violence].")
        response = await generate(client, fake)
        assert_error(response, 400, "image_generation_user_error", "moderation_blocked")
        details = response.json()["error"]["moderation_details"]
        assert details == {"moderation_stage": "output", "categories": ["sexual"]}
        response = await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox"})
        assert_error(response, 400, "invalid_request_error", "content_policy_violation")
        response = await generate(client, fake, {"model": "gpt-image-2", "prompt": "some GORE"})
        assert_error(response, 400, "image_generation_user_error", "moderation_blocked")


async def test_rate_limit_quota_and_server_errors() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        fake.push_rate_limit(3)
        fake.push_insufficient_quota()
        fake.push_server_error(503)
        fake.push_error(403, None, "invalid_request_error", "Your organization must be verified.", headers={"a": "b"})
        fake.push_error(400, "invalid_value", "invalid_request_error", "Bad size.", param="size")
        response = await generate(client, fake, {"model": "gpt-image-2", "prompt": "a fox"})
        message = assert_error(response, 429, "requests", "rate_limit_exceeded")
        assert "gpt-image-2" in message and "Please try again in 3s." in message
        assert response.headers["retry-after"] == "3" and response.headers["retry-after-ms"] == "3000"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        message = assert_error(await generate(client, fake), 429, "insufficient_quota", "insufficient_quota")
        assert message.startswith("You exceeded your current quota")
        message = assert_error(await generate(client, fake), 503, "server_error", None)
        assert message == "The server had an error while processing your request. Sorry about that!"
        response = await generate(client, fake)
        assert assert_error(response, 403, "invalid_request_error", None) == "Your organization must be verified."
        assert response.headers["a"] == "b"
        assert_error(await generate(client, fake), 400, "invalid_request_error", "invalid_value", "size")
        assert (await generate(client, fake)).status_code == 200


async def test_an_expired_link() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        fake.push_expired_url()
        url = (await generate(client, fake, {"model": "dall-e-3", "prompt": "a fox"})).json()["data"][0]["url"]
        got = await client.get(url)
        assert got.status_code == 403 and b"AuthenticationFailed" in got.content


async def test_generic_faults() -> None:
    async with FakeOpenAIImages() as fake, http() as client:
        fake.push_count(2)
        fake.push_wrong_size()
        fake.push_not_an_image()
        fake.push_malformed_json()
        assert len((await generate(client, fake)).json()["data"]) == 2
        body = {"model": "gpt-image-1.5", "prompt": "a fox", "size": "1536x1024", "output_format": "jpeg"}
        image = b64_picture((await generate(client, fake, body)).json()["data"][0])
        assert (image.format, image.size) == ("JPEG", (768, 512))
        item = (await generate(client, fake)).json()["data"][0]
        assert base64.b64decode(item["b64_json"]) == NOT_AN_IMAGE
        response = await generate(client, fake)
        with pytest.raises(ValueError):
            response.json()
        assert not fake.faults
