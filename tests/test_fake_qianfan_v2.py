"""The fake Qianfan's v2 image API (tests/fakes/qianfan.py), driven directly with httpx."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.images import NOT_AN_IMAGE, PNG_SIGNATURE
from tests.fakes.qianfan import DEFAULT_V2_API_KEY, MODEL_EMPTY, MODEL_NO_ACCESS, FakeQianfan

AUTH = {"Authorization": f"Bearer {DEFAULT_V2_API_KEY}"}
REQUEST_ID = re.compile(r"^as-[a-z0-9]{10}$")


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0))


def data_uri(width: int, height: int, fmt: str = "png") -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(out, format=fmt.upper())
    return f"data:image/{fmt};base64,{base64.b64encode(out.getvalue()).decode()}"


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def generate(
    client: httpx.AsyncClient,
    fake: FakeQianfan,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    url = fake.url + "/v2/images/generations"
    sent_headers = AUTH if headers is None else headers
    if content is not None:
        return await client.post(url, headers={**sent_headers, "Content-Type": "application/json"}, content=content)
    return await client.post(
        url, headers=sent_headers, json={"model": "irag-1.0", "prompt": "a dog"} if body is None else body
    )


def assert_error(response: httpx.Response, status: int, code: str, type_: str = "invalid_request_error") -> str:
    body = response.json()
    assert response.status_code == status, response.text
    assert set(body) == {"error", "id"} and REQUEST_ID.match(body["id"])
    assert set(body["error"]) == {"code", "message", "type"}
    assert body["error"]["code"] == code and body["error"]["type"] == type_
    return body["error"]["message"]


# -- success -------------------------------------------------------------------------------------------------
async def test_success_has_the_documented_shape_and_links_to_real_pictures() -> None:
    async with FakeQianfan() as fake, http() as client:
        body = {"model": "irag-1.0", "prompt": "一只小狗", "n": 2, "size": "768x1024", "user": "u1"}
        response = await generate(client, fake, body, headers={**AUTH, "X-Request-Id": "trace-1"})
        answer = response.json()
        assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-1"
        assert set(answer) == {"id", "created", "data"} and REQUEST_ID.match(answer["id"])
        assert isinstance(answer["created"], int) and len(answer["data"]) == 2
        pictures = []
        for item in answer["data"]:
            assert set(item) == {"url"}
            assert item["url"].startswith(fake.url + "/v2files/") and "?authorization=bce-auth-v1%2F" in item["url"]
            got = await client.get(item["url"])
            assert got.status_code == 200 and got.headers["Content-Type"] == "image/png"
            assert got.content.startswith(PNG_SIGNATURE) and picture(got.content).size == (768, 1024)
            pictures.append(got.content)
        assert pictures[0] != pictures[1]  # one seed per index
        assert len(fake.v2_file_gets) == 2 and len(fake.v2_files) == 2
        assert fake.v2_calls[0].body == body and fake.generate_calls == fake.v2_calls


async def test_defaults_custom_models_and_ignored_fields() -> None:
    async with FakeQianfan(v2_models=("my-sdxl-service",)) as fake, http() as client:
        response = await generate(client, fake, {"model": "flux.1-schnell", "prompt": "x" * 512, "seed": 5, "foo": 1})
        assert response.status_code == 200 and len(response.json()["data"]) == 1  # n defaults to 1, extras ignored
        got = await client.get(response.json()["data"][0]["url"])
        assert picture(got.content).size == (1024, 1024)  # the default size
        response = await generate(client, fake, {"model": "my-sdxl-service", "prompt": "a cat", "size": "512x2048"})
        assert response.status_code == 200
        response = await generate(client, fake, {"model": "irag-1.0", "prompt": "a cat", "steps": 500})
        assert response.status_code == 200  # steps only applies to flux, so irag ignores it


async def test_refer_image_is_checked_for_irag() -> None:
    async with FakeQianfan() as fake, http() as client:
        for refer in (data_uri(256, 512), data_uri(300, 200, "jpeg"), "https://example.com/ref.png"):
            response = await generate(client, fake, {"model": "irag-1.0", "prompt": "like this", "refer_image": refer})
            assert response.status_code == 200, response.text
        for refer in (data_uri(100, 300), data_uri(128, 640), "data:image/png;base64,@@@", "ftp://x/y.png", ""):
            response = await generate(client, fake, {"model": "irag-1.0", "prompt": "like this", "refer_image": refer})
            message = assert_error(response, 400, "invalid_image_generation_refer_image")
            assert message == "refer image is invalid, please check parameter"
        response = await generate(
            client, fake, {"model": "irag-1.0", "prompt": "p", "refer_image": "https://" + "a" * 1020}
        )
        assert_error(response, 400, "invalid_image_generation_refer_image")
        response = await generate(
            client, fake, {"model": "flux.1-schnell", "prompt": "p", "refer_image": data_uri(256, 256)}
        )
        assert "refer_image" in assert_error(response, 400, "invalid_argument")


# -- auth ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer bce-v3/ALTAK-other/secret"}, {"Authorization": DEFAULT_V2_API_KEY}],
    ids=["none", "wrong-key", "no-bearer"],
)
async def test_a_bad_key_is_refused_before_anything_else(headers: dict[str, str]) -> None:
    async with FakeQianfan() as fake, http() as client:
        fake.push_v2_error(500, "internal_error", "Internal error", "internal_error")
        response = await generate(client, fake, {"garbage": True}, headers=headers)
        assert assert_error(response, 401, "invalid_iam_token") == "invalid_iam_token"
        assert len(fake.faults) == 1 and len(fake.v2_calls) == 1  # recorded, but no fault consumed


async def test_appid_when_the_key_needs_one() -> None:
    async with FakeQianfan(v2_appid="app-1") as fake, http() as client:
        assert_error(await generate(client, fake), 401, "invalid_appid")
        assert_error(await generate(client, fake, headers={**AUTH, "appid": "app-2"}), 401, "invalid_appid")
        assert (await generate(client, fake, headers={**AUTH, "appid": "app-1"})).status_code == 200


async def test_the_check_probe_proves_the_key_without_generating() -> None:
    async with FakeQianfan() as fake, http() as client:
        response = await generate(client, fake, {"model": "irag-1.0"})
        assert assert_error(response, 400, "invalid_argument") == "prompt is required"
        assert assert_error(await generate(client, fake, {}), 400, "invalid_model") == MODEL_EMPTY
        response = await generate(client, fake, {"model": "irag-1.0"}, headers={"Authorization": "Bearer nope"})
        assert_error(response, 401, "invalid_iam_token")
        response = await generate(client, fake, {"model": "Stable-Diffusion-XL"})
        assert assert_error(response, 401, "invalid_model") == MODEL_NO_ACCESS
        assert fake.v2_files == {}  # nothing was generated


# -- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ([1, 2], 400, "malformed_json", "Invalid Argument"),
        ({"prompt": "a dog"}, 400, "invalid_model", MODEL_EMPTY),
        ({"model": "", "prompt": "a dog"}, 400, "invalid_model", MODEL_EMPTY),
        ({"model": "flux.1-dev", "prompt": "a dog"}, 401, "invalid_model", MODEL_NO_ACCESS),
        ({"model": "irag-1.0", "prompt": ""}, 400, "invalid_argument", "prompt is required"),
        ({"model": "irag-1.0", "prompt": 5}, 400, "invalid_argument", "prompt must be a string"),
        ({"model": "irag-1.0", "prompt": "x" * 221}, 400, "characters_too_long", "the max input characters is 220"),
        (
            {"model": "flux.1-schnell", "prompt": "x" * 513},
            400,
            "characters_too_long",
            "the max input characters is 512",
        ),
        ({"model": "irag-1.0", "prompt": "p", "n": 5}, 400, "invalid_argument", "n must be in range [1, 4]"),
        ({"model": "irag-1.0", "prompt": "p", "n": 0}, 400, "invalid_argument", "n must be in range [1, 4]"),
        ({"model": "irag-1.0", "prompt": "p", "n": "2"}, 400, "invalid_argument", "n must be an integer"),
        ({"model": "irag-1.0", "prompt": "p", "size": "1024*1024"}, 400, "invalid_argument", None),
        ({"model": "irag-1.0", "prompt": "p", "size": "511x1024"}, 400, "invalid_argument", None),
        ({"model": "irag-1.0", "prompt": "p", "size": "1024x2049"}, 400, "invalid_argument", None),
        ({"model": "flux.1-schnell", "prompt": "p", "steps": 51}, 400, "invalid_argument", None),
        ({"model": "irag-1.0", "prompt": "p", "user": 7}, 400, "invalid_argument", "user must be a string"),
    ],
)
async def test_invalid_requests(body: Any, status: int, code: str, message: str | None) -> None:
    async with FakeQianfan() as fake, http() as client:
        got = assert_error(await generate(client, fake, body), status, code)
        assert message is None or got == message


async def test_a_body_that_is_not_json() -> None:
    async with FakeQianfan() as fake, http() as client:
        response = await generate(client, fake, content=b'{"model": "irag-1.0", ')
        assert assert_error(response, 400, "malformed_json") == "Invalid Argument"


async def test_blocked_words_and_the_rate_limit() -> None:
    async with FakeQianfan(blocked_words=("forbidden",), v2_rpm_limit=2) as fake, http() as client:
        response = await generate(client, fake, {"model": "irag-1.0", "prompt": "a FORBIDDEN thing"})
        assert (
            assert_error(response, 400, "invalid_image_generation_prompt")
            == "prompt is invalid, please check parameter"
        )
        assert (await generate(client, fake)).status_code == 200
        response = await generate(client, fake)
        message = assert_error(response, 429, "rpm_rate_limit_exceeded", "rate_limit_exceeded")
        assert message == "Rate limit reached for RPM"


# -- planned faults ------------------------------------------------------------------------------------------
async def test_pushed_errors() -> None:
    async with FakeQianfan() as fake, http() as client:
        fake.push_v2_error(503, "server_error", "busy", "internal_error", headers={"Retry-After": "2"})
        fake.push_v2_rate_limit("tpm")
        fake.push_moderation()
        response = await generate(client, fake)
        assert assert_error(response, 503, "server_error", "internal_error") == "busy"
        assert response.headers["Retry-After"] == "2"
        response = await generate(client, fake)
        assert (
            assert_error(response, 429, "tpm_rate_limit_exceeded", "rate_limit_exceeded")
            == "Rate limit reached for TPM"
        )
        assert_error(await generate(client, fake), 400, "invalid_image_generation_prompt")
        assert (await generate(client, fake)).status_code == 200 and not fake.faults


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (404, "NoSuchKey")])
async def test_expired_links(status: int, code: str) -> None:
    async with FakeQianfan() as fake, http() as client:
        fake.push_expired_url(status)
        url = (await generate(client, fake)).json()["data"][0]["url"]
        got = await client.get(url)
        assert got.status_code == status and got.json()["code"] == code and "requestId" in got.json()


async def test_a_link_needs_its_signature() -> None:
    async with FakeQianfan() as fake, http() as client:
        url = (await generate(client, fake)).json()["data"][0]["url"]
        assert (await client.get(url.split("?")[0])).status_code == 403
        assert (await client.get(fake.url + "/v2files/nothing.png")).status_code == 404
        assert (await client.get(url)).status_code == 200


@pytest.mark.parametrize("declare_length", [True, False])
async def test_a_huge_download(declare_length: bool) -> None:
    async with FakeQianfan() as fake, http() as client:
        fake.push_huge_download(3_000_000, declare_length=declare_length)
        url = (await generate(client, fake, {"model": "irag-1.0", "prompt": "p", "size": "640x512"})).json()["data"][0]
        async with client.stream("GET", url["url"]) as got:
            assert got.status_code == 200
            assert ("content-length" in got.headers) is declare_length
            if declare_length:
                assert got.headers["content-length"] == "3000000"
            data = await got.aread()
        assert (
            len(data) == 3_000_000
            and data.startswith(PNG_SIGNATURE)
            and data[16:24] == bytes.fromhex("0000028000000200")
        )


async def test_generic_faults_reach_the_v2_route() -> None:
    async with FakeQianfan() as fake, http() as client:
        fake.push_count(3)
        fake.push_wrong_size()
        fake.push_not_an_image()
        fake.push_malformed_json()
        assert len((await generate(client, fake)).json()["data"]) == 3
        url = (await generate(client, fake, {"model": "irag-1.0", "prompt": "p", "size": "1024x768"})).json()["data"][0]
        assert picture((await client.get(url["url"])).content).size == (512, 384)
        url = (await generate(client, fake)).json()["data"][0]["url"]
        assert (await client.get(url)).content == NOT_AN_IMAGE
        response = await generate(client, fake)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()


async def test_v1_and_v2_live_side_by_side() -> None:
    async with FakeQianfan(api_key="ak", secret_key="sk") as fake, http() as client:
        token = await client.post(
            fake.url + "/oauth/2.0/token",
            params={"grant_type": "client_credentials", "client_id": "ak", "client_secret": "sk"},
        )
        v1 = await client.post(
            fake.url + "/rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/sd_xl",
            params={"access_token": token.json()["access_token"]},
            json={"prompt": "a cat", "size": "768x768"},
        )
        assert "X-Request-Id" not in v1.headers and v1.json()["data"][0]["index"] == 1
        assert (await generate(client, fake)).status_code == 200
        assert len(fake.generate_calls) == 2 and len(fake.v2_calls) == 1
