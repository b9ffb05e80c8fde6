"""The fake Bedrock's current Stability models, lifecycle answers and API keys (tests/fakes/bedrock.py), driven
directly with httpx (SigV4 from botocore's signer) and once through botocore's own client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any
from urllib.parse import quote

import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from PIL import Image

from tests.fakes.bedrock import (
    BEARER_MESSAGE,
    EOL_MESSAGE,
    IMAGE_CORE,
    IMAGE_ULTRA,
    LEGACY_MESSAGE,
    SD35_LARGE,
    FakeBedrock,
)
from tests.fakes.images import NOT_AN_IMAGE

SDXL = "stability.stable-diffusion-xl-v1"


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0))


def signed(url: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json", "Accept": "application/json"}
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "fake-secret"), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


async def invoke(
    client: httpx.AsyncClient,
    fake: FakeBedrock,
    model: str,
    body: Any,
    *,
    bearer: str | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    url = f"{fake.url}/model/{quote(model, safe='')}/invoke"
    if bearer is None:
        headers = signed(url, raw)
    else:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
    return await client.post(url, content=raw, headers=headers)


def picture(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png_b64(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def error_type(response: httpx.Response) -> str:
    return response.headers["x-amzn-ErrorType"].split(":")[0]


def malformed(response: httpx.Response) -> str:
    assert response.status_code == 400 and error_type(response) == "ValidationException", response.text
    return response.json()["message"]


# -- success ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "body", "pil_format", "size"),
    [
        (SD35_LARGE, {"aspect_ratio": "16:9"}, "PNG", (1344, 768)),
        (SD35_LARGE, {"output_format": "webp", "negative_prompt": "fog"}, "WEBP", (1024, 1024)),
        (IMAGE_CORE, {"aspect_ratio": "1:1", "output_format": "png"}, "PNG", (1536, 1536)),
        (IMAGE_CORE, {"aspect_ratio": "21:9"}, "PNG", (2304, 960)),
        (IMAGE_ULTRA, {"aspect_ratio": "9:21", "output_format": "jpeg"}, "JPEG", (640, 1536)),
    ],
)
async def test_current_models_answer_seeds_finish_reasons_and_images(
    model: str, body: dict[str, Any], pil_format: str, size: tuple[int, int]
) -> None:
    async with FakeBedrock() as fake, http() as client:
        response = await invoke(client, fake, model, {"prompt": "a lighthouse", "seed": 42, **body})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == {"seeds", "finish_reasons", "images"}
        assert answer["seeds"] == [42] and answer["finish_reasons"] == [None] and len(answer["images"]) == 1
        image = picture(answer["images"][0])
        assert image.format == pil_format and image.size == size
        assert "x-amzn-RequestId" in response.headers and fake.generate_calls[-1].body["seed"] == 42


async def test_random_seed_inference_profiles_and_arns() -> None:
    profile_arn = f"arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.{IMAGE_ULTRA}"
    model_arn = f"arn:aws:bedrock:us-west-2::foundation-model/{SD35_LARGE}"
    async with FakeBedrock() as fake, http() as client:
        for model in (f"us.{IMAGE_CORE}", f"global.{SD35_LARGE}", profile_arn, model_arn):
            response = await invoke(client, fake, model, {"prompt": "a cat"})
            assert response.status_code == 200, (model, response.text)
            assert 1 <= response.json()["seeds"][0] <= 4294967294
        assert (await invoke(client, fake, f"us.{SDXL}", {"text_prompts": [{"text": "x"}]})).status_code == 400


def botocore_invoke(url: str, model: str, body: dict[str, Any]) -> Any:
    """InvokeModel through botocore's own bedrock-runtime client (sync: run it in a thread)."""
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="fake-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    answer = client.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json")
    return json.loads(answer["body"].read())


async def test_botocores_client_reaches_a_current_model_through_an_inference_profile() -> None:
    async with FakeBedrock() as fake:
        answer = await asyncio.to_thread(botocore_invoke, fake.url, f"us.{SD35_LARGE}", {"prompt": "a cat", "seed": 5})
        assert answer["seeds"] == [5] and picture(answer["images"][0]).size == (1024, 1024)


# -- the JSON schema -------------------------------------------------------------------------------------
async def test_an_extraneous_key_is_refused_with_bedrocks_exact_text() -> None:
    async with FakeBedrock() as fake, http() as client:
        response = await invoke(client, fake, SD35_LARGE, {"prompt": "a cat", "cfg_scale": 5})
        assert malformed(response) == (
            "Malformed input request: #: extraneous key [cfg_scale] is not permitted, please reformat your input "
            "and try again."
        )
        sdxl_body = {"text_prompts": [{"text": "a cat"}], "cfg_scale": 7, "steps": 30}
        several = await invoke(client, fake, IMAGE_CORE, sdxl_body)
        assert malformed(several) == (
            "Malformed input request: 4 schema violations found, please reformat your input and try again."
        )


@pytest.mark.parametrize(
    ("model", "body", "violation"),
    [
        (IMAGE_CORE, {}, "#: required key [prompt] not found"),
        (IMAGE_CORE, {"prompt": 5}, "#/prompt: expected type: String, found: Integer"),
        (IMAGE_CORE, {"prompt": "x" * 10001}, "#/prompt: expected maxLength: 10000, actual: 10001"),
        (
            IMAGE_ULTRA,
            {"prompt": "x", "negative_prompt": "y" * 10001},
            "#/negative_prompt: expected maxLength: 10000, actual: 10001",
        ),
        (IMAGE_CORE, {"prompt": "x", "aspect_ratio": "4:3"}, "#/aspect_ratio: 4:3 is not a valid enum value"),
        (IMAGE_CORE, {"prompt": "x", "output_format": "webp"}, "#/output_format: webp is not a valid enum value"),
        (SD35_LARGE, {"prompt": "x", "seed": 4294967295}, "#/seed: 4294967295 is not less or equal to 4294967294"),
        (SD35_LARGE, {"prompt": "x", "seed": -1}, "#/seed: -1 is not greater or equal to 0"),
        (SD35_LARGE, {"prompt": "x", "seed": "7"}, "#/seed: expected type: Integer, found: String"),
        (IMAGE_CORE, {"prompt": "x", "mode": "image-to-image"}, "#/mode: image-to-image is not a valid enum value"),
        (IMAGE_ULTRA, {"prompt": "x", "style_preset": "anime"}, "#: extraneous key [style_preset] is not permitted"),
    ],
)
async def test_schema_violations(model: str, body: dict[str, Any], violation: str) -> None:
    async with FakeBedrock() as fake, http() as client:
        message = malformed(await invoke(client, fake, model, body))
        assert message == f"Malformed input request: {violation}, please reformat your input and try again."


async def test_core_takes_the_seed_range_its_page_gives() -> None:
    async with FakeBedrock() as fake, http() as client:
        response = await invoke(client, fake, IMAGE_CORE, {"prompt": "x", "seed": 4294967295})
        assert response.status_code == 200 and response.json()["seeds"] == [4294967295]


async def test_a_body_that_is_not_json_is_malformed() -> None:
    async with FakeBedrock() as fake, http() as client:
        url = f"{fake.url}/model/{IMAGE_CORE}/invoke"
        response = await client.post(url, content=b"prompt=x", headers=signed(url, b"prompt=x"))
        assert malformed(response) == "Malformed input request, please reformat your input and try again."


# -- image-to-image --------------------------------------------------------------------------------------
async def test_image_to_image_follows_the_input_aspect() -> None:
    async with FakeBedrock() as fake, http() as client:
        body = {"prompt": "snow", "mode": "image-to-image", "image": png_b64(300, 200), "strength": 0.6}
        response = await invoke(client, fake, SD35_LARGE, body)
        assert response.status_code == 200, response.text
        assert picture(response.json()["images"][0]).size == (1216, 832)


@pytest.mark.parametrize(
    ("body", "violation"),
    [
        ({"mode": "image-to-image", "image": png_b64(128, 128)}, "#: required key [strength] not found"),
        (
            {"mode": "image-to-image", "image": png_b64(128, 128), "strength": 0.5, "aspect_ratio": "1:1"},
            "#: extraneous key [aspect_ratio] is not permitted",
        ),
        ({"image": png_b64(128, 128), "strength": 0.5}, "2 schema violations found"),  # text-to-image by default
        (
            {"mode": "image-to-image", "image": png_b64(128, 128), "strength": 2},
            "#/strength: 2 is not less or equal to 1",
        ),
        ({"mode": "image-to-image", "image": "%%%", "strength": 0.5}, "#/image: not a base64-encoded picture"),
        (
            {"mode": "image-to-image", "image": png_b64(32, 128), "strength": 0.5},
            "#/image: every side must be at least 64 pixels",
        ),
    ],
)
async def test_image_to_image_rules(body: dict[str, Any], violation: str) -> None:
    async with FakeBedrock() as fake, http() as client:
        message = malformed(await invoke(client, fake, SD35_LARGE, {"prompt": "snow", **body}))
        assert message == f"Malformed input request: {violation}, please reformat your input and try again."


# -- content filter and picture faults -------------------------------------------------------------------
async def test_content_filtered_variants() -> None:
    async with FakeBedrock() as fake, http() as client:
        fake.push_content_filtered()
        fake.push_content_filtered("Filter reason: output image", with_image=True)
        fake.push_content_filtered("Filter reason: prompt", minimal=True)
        fake.push_content_filtered()
        prompt = (await invoke(client, fake, IMAGE_CORE, {"prompt": "x", "seed": 3})).json()
        assert prompt == {"seeds": [3], "finish_reasons": ["Filter reason: prompt"], "images": []}
        output = (await invoke(client, fake, IMAGE_ULTRA, {"prompt": "x", "output_format": "jpeg"})).json()
        assert output["finish_reasons"] == ["Filter reason: output image"]
        grey = picture(output["images"][0])
        assert grey.format == "JPEG" and grey.size == (1024, 1024)
        minimal = (await invoke(client, fake, SD35_LARGE, {"prompt": "x"})).json()
        assert minimal == {"finish_reasons": ["Filter reason: prompt"]}
        sdxl = await invoke(client, fake, SDXL, {"text_prompts": [{"text": "x"}]})
        assert sdxl.json()["artifacts"][0]["finishReason"] == "CONTENT_FILTERED"  # SDXL keeps its own shape


async def test_picture_faults_on_current_models() -> None:
    async with FakeBedrock() as fake, http() as client:
        fake.push_wrong_size()
        fake.push_not_an_image()
        fake.push_error("ThrottlingException")
        half = (await invoke(client, fake, SD35_LARGE, {"prompt": "x", "output_format": "webp"})).json()
        assert picture(half["images"][0]).size == (512, 512) and picture(half["images"][0]).format == "WEBP"
        html = (await invoke(client, fake, IMAGE_CORE, {"prompt": "x"})).json()
        assert base64.b64decode(html["images"][0]) == NOT_AN_IMAGE
        throttled = await invoke(client, fake, IMAGE_CORE, {"prompt": "x"})
        assert throttled.status_code == 429 and error_type(throttled) == "ThrottlingException"


# -- lifecycle and access --------------------------------------------------------------------------------
async def test_retired_and_legacy_models_answer_resource_not_found() -> None:
    retired = {SDXL, "stability.stable-image-core-v1:0"}
    async with FakeBedrock(retired_models=retired, legacy_models={IMAGE_ULTRA}) as fake, http() as client:
        eol = await invoke(client, fake, SDXL, {"text_prompts": [{"text": "x"}]})
        assert eol.status_code == 404 and error_type(eol) == "ResourceNotFoundException"
        assert eol.json() == {"message": EOL_MESSAGE}
        assert EOL_MESSAGE == (
            "This model version has reached the end of its life. Please refer to the AWS documentation for more "
            "details."
        )
        old_core = await invoke(client, fake, "us.stability.stable-image-core-v1:0", {"prompt": "x"})
        assert old_core.status_code == 404 and old_core.json()["message"] == EOL_MESSAGE
        legacy = await invoke(client, fake, IMAGE_ULTRA, {"prompt": "x"})
        assert legacy.status_code == 404 and error_type(legacy) == "ResourceNotFoundException"
        assert legacy.json()["message"] == LEGACY_MESSAGE
        assert LEGACY_MESSAGE.startswith("Access denied. This Model is marked by provider as Legacy")
        assert (await invoke(client, fake, SD35_LARGE, {"prompt": "x"})).status_code == 200
    async with FakeBedrock() as fake, http() as client:  # by default SDXL still answers, for the older tests
        assert (await invoke(client, fake, SDXL, {"text_prompts": [{"text": "x"}]})).status_code == 200


async def test_a_model_without_access_is_denied() -> None:
    async with FakeBedrock(denied_models={SD35_LARGE}) as fake, http() as client:
        denied = await invoke(client, fake, f"us.{SD35_LARGE}", {"prompt": "x"})
        assert denied.status_code == 403 and error_type(denied) == "AccessDeniedException"
        assert denied.json() == {"message": "You don't have access to the model with the specified model ID."}


# -- Bedrock API keys ------------------------------------------------------------------------------------
async def test_bedrock_api_key_as_a_bearer_token() -> None:
    async with FakeBedrock(api_key="bedrock-api-key") as fake, http() as client:
        ok = await invoke(client, fake, f"us.{IMAGE_CORE}", {"prompt": "x"}, bearer="bedrock-api-key")
        assert ok.status_code == 200, ok.text
        fake.push_error("ThrottlingException")  # a refused request does not take it
        wrong = await invoke(client, fake, IMAGE_CORE, {"prompt": "x"}, bearer="not-the-key")
        assert wrong.status_code == 403 and error_type(wrong) == "AccessDeniedException"
        assert wrong.json() == {"Message": BEARER_MESSAGE}
        assert len(fake.faults) == 1 and fake.auth_errors == [f"AccessDeniedException: {BEARER_MESSAGE}"]
        signed_too = await invoke(client, fake, IMAGE_CORE, {"prompt": "x"})  # SigV4 keeps working
        assert signed_too.status_code == 429
    async with FakeBedrock() as fake, http() as client:  # no key configured: every bearer token is refused
        refused = await invoke(client, fake, IMAGE_CORE, {"prompt": "x"}, bearer="anything")
        assert refused.status_code == 403 and refused.json() == {"Message": BEARER_MESSAGE}
