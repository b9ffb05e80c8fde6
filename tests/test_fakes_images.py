"""The image-API fakes, driven over real sockets with httpx: each documented scenario works on the wire."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from PIL import Image

from tests.fakes.a1111 import FakeA1111
from tests.fakes.bedrock import FakeBedrock, canonical_request, signing_key
from tests.fakes.image_api import ImageApiFake
from tests.fakes.images import NOT_AN_IMAGE, blank_png, bomb_png, png_bytes, png_size, seed_colours
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.qianfan import GENERATE_PATH, TOKEN_PATH, FakeQianfan
from tests.fakes.stability import FakeStability

SDXL = "stable-diffusion-xl-1024-v1-0"
STABILITY_KEY = {"Authorization": "Bearer sk-test", "Accept": "application/json"}


def http(timeout: float = 5.0) -> httpx.AsyncClient:
    """A real httpx client. The fakes speak plain HTTP, so skip loading the CA bundle (~50 ms a client)."""
    return httpx.AsyncClient(verify=False, timeout=timeout)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- images ----------------------------------------------------------------------------------------------
def test_png_bytes_is_a_real_png_of_the_size_and_follows_the_seed() -> None:
    image = decode(png_bytes(1024, 576, 7))
    assert (image.format, image.size) == ("PNG", (1024, 576))
    left, right = seed_colours(7)
    assert image.getpixel((0, 0)) == left and image.getpixel((1023, 575)) == right
    assert png_bytes(64, 64, 1) == png_bytes(64, 64, 1) != png_bytes(64, 64, 2)


def test_bomb_is_small_declares_30000_square_and_pillow_refuses_it() -> None:
    bomb = bomb_png()
    assert len(bomb) < 1_000_000 and png_size(bomb) == (30000, 30000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    small = decode(bomb_png(100, 2500))  # same construction, small enough to decode fully
    assert small.size == (100, 2500) and small.getextrema() == (0, 0)


def test_not_an_image_is_not_an_image() -> None:
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(NOT_AN_IMAGE))
    with pytest.raises(ValueError):
        png_size(NOT_AN_IMAGE)


# -- qianfan ---------------------------------------------------------------------------------------------
async def qianfan_token(client: httpx.AsyncClient, fake: FakeQianfan, ak: str = "test-ak", sk: str = "test-sk") -> str:
    params = {"grant_type": "client_credentials", "client_id": ak, "client_secret": sk}
    response = await client.post(fake.url + TOKEN_PATH, params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def qianfan_generate(client: httpx.AsyncClient, fake: FakeQianfan, token: str, **body: Any) -> httpx.Response:
    payload = {"prompt": "cat", **body}
    return await client.post(fake.url + GENERATE_PATH, params={"access_token": token}, json=payload)


async def test_qianfan_token_then_generate_returns_real_images_of_the_size() -> None:
    async with FakeQianfan(expires_in=3600) as fake, http() as client:
        params = {"grant_type": "client_credentials", "client_id": "test-ak", "client_secret": "test-sk"}
        token_answer = (await client.post(fake.url + TOKEN_PATH, params=params)).json()
        assert token_answer["expires_in"] == 3600 and fake.token_requests == 1
        assert {"refresh_token", "scope", "session_key", "session_secret"} <= token_answer.keys()
        token = token_answer["access_token"]
        response = await qianfan_generate(client, fake, token, size="768x1024", n=2, seed=5, steps=20)
        answer = response.json()
        assert response.status_code == 200 and answer["object"] == "image"
        assert [item["index"] for item in answer["data"]] == [1, 2]
        images = [decode(base64.b64decode(item["b64_image"])) for item in answer["data"]]
        assert [image.size for image in images] == [(768, 1024), (768, 1024)]
        assert images[0].getpixel((0, 0)) == seed_colours(5)[0]
        assert answer["usage"]["prompt_tokens"] >= 1
        assert response.headers["X-Ratelimit-Limit-Requests"] == "300"
        call = fake.generate_calls[-1]
        assert call.query["access_token"] == token and call.body["size"] == "768x1024"


async def test_qianfan_bad_credentials_answer_invalid_client_401() -> None:
    async with FakeQianfan() as fake, http() as client:
        url = fake.url + TOKEN_PATH
        unknown = await client.post(
            url, params={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
        )
        assert unknown.status_code == 401
        assert unknown.json() == {"error": "invalid_client", "error_description": "unknown client id"}
        wrong = await client.post(
            url, params={"grant_type": "client_credentials", "client_id": "test-ak", "client_secret": "y"}
        )
        assert wrong.json()["error_description"] == "Client authentication failed"
        assert fake.token_requests == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"size": "1000x1000"}, 336003),
        ({"n": 5}, 336003),
        ({"steps": 60}, 336003),
        ({"cfg_scale": 31}, 336003),
        ({"sampler_index": "Nope"}, 336003),
        ({"style": "Watercolor"}, 336003),
        ({"prompt": ""}, 336003),
        ({"prompt": "x" * 1025}, 336003),
        ({"steps": "20"}, 336001),
    ],
)
async def test_qianfan_argument_errors_come_with_http_200(body: dict[str, Any], code: int) -> None:
    async with FakeQianfan() as fake, http() as client:
        token = await qianfan_token(client, fake)
        response = await qianfan_generate(client, fake, token, **body)
        assert response.status_code == 200
        assert response.json()["error_code"] == code and response.json()["error_msg"]


async def test_qianfan_token_states_and_invalid_json() -> None:
    async with FakeQianfan() as fake, http() as client:
        url = fake.url + GENERATE_PATH
        assert (await client.post(url, json={"prompt": "cat"})).json()["error_code"] == 100
        assert (await qianfan_generate(client, fake, "24.nope")).json() == {
            "error_code": 110,
            "error_msg": "Access token invalid or no longer valid",
        }
        token = await qianfan_token(client, fake)
        bad_json = await client.post(url, params={"access_token": token}, content=b"{not json")
        assert bad_json.json() == {"error_code": 336002, "error_msg": "Invalid JSON"}
        fake.expire_tokens()
        assert (await qianfan_generate(client, fake, token)).json()["error_msg"] == "Access token expired"
        fresh = await qianfan_token(client, fake)
        assert "data" in (await qianfan_generate(client, fake, fresh)).json()
        fake.forget_tokens()
        assert (await qianfan_generate(client, fake, fresh)).json()["error_code"] == 110


async def test_qianfan_pushed_errors_are_fifo_and_rate_limits_carry_headers() -> None:
    async with FakeQianfan() as fake, http() as client:
        token = await qianfan_token(client, fake)
        fake.push_error(18)
        fake.push_error(110)
        limited = await qianfan_generate(client, fake, token)
        assert limited.json() == {"error_code": 18, "error_msg": "Open api qps request limit reached"}
        assert limited.headers["X-Ratelimit-Remaining-Requests"] == "0"
        assert "X-Ratelimit-Limit-Requests" in limited.headers
        assert (await qianfan_generate(client, fake, token)).json()["error_code"] == 110
        assert "data" in (await qianfan_generate(client, fake, token)).json()
        assert len(fake.generate_calls) == 3 and not fake.faults


async def test_qianfan_enforces_rpm_and_token_faults() -> None:
    async with FakeQianfan(rpm_limit=2) as fake, http() as client:
        fake.push_token_response(500, {"error": "server_error"})
        params = {"grant_type": "client_credentials", "client_id": "test-ak", "client_secret": "test-sk"}
        assert (await client.post(fake.url + TOKEN_PATH, params=params)).status_code == 500
        token = await qianfan_token(client, fake)
        for _ in range(2):
            assert "data" in (await qianfan_generate(client, fake, token)).json()
        third = await qianfan_generate(client, fake, token)
        assert third.json()["error_code"] == 336501
        assert third.headers["X-Ratelimit-Remaining-Requests"] == "0"


# -- stability -------------------------------------------------------------------------------------------
def stability_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "text_prompts": [{"text": "a lighthouse", "weight": 1}, {"text": "blurry", "weight": -1}],
        "width": 1024,
        "height": 1024,
        "samples": 1,
        "steps": 30,
        "cfg_scale": 7,
    }
    return {**body, **overrides}


async def stability_generate(
    client: httpx.AsyncClient, fake: FakeStability, headers: dict[str, str] | None = None, **overrides: Any
) -> httpx.Response:
    url = f"{fake.url}/v1/generation/{SDXL}/text-to-image"
    return await client.post(
        url, headers=STABILITY_KEY if headers is None else headers, json=stability_body(**overrides)
    )


async def test_stability_json_artifacts_with_seeds_and_png_accept() -> None:
    async with FakeStability(credits=10.0) as fake, http() as client:
        response = await stability_generate(client, fake, samples=2, seed=42, width=1152, height=896)
        artifacts = response.json()["artifacts"]
        assert response.status_code == 200
        assert [(a["seed"], a["finishReason"]) for a in artifacts] == [(42, "SUCCESS"), (43, "SUCCESS")]
        assert decode(base64.b64decode(artifacts[1]["base64"])).size == (1152, 896)
        random_seed = (await stability_generate(client, fake)).json()["artifacts"][0]["seed"]
        assert random_seed > 0
        png = await stability_generate(client, fake, headers={"Authorization": "Bearer sk-test", "Accept": "image/png"})
        assert png.headers["Content-Type"] == "image/png" and png.headers["Finish-Reason"] == "SUCCESS"
        assert int(png.headers["Seed"]) > 0 and decode(png.content).size == (1024, 1024)
        balance = await client.get(fake.url + "/v1/user/balance", headers=STABILITY_KEY)
        assert balance.json() == {"credits": pytest.approx(10.0 - 4 * 0.2)}
        engines = (await client.get(fake.url + "/v1/engines/list", headers=STABILITY_KEY)).json()
        assert SDXL in {engine["id"] for engine in engines}
        assert fake.generate_calls[0].headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"width": 512, "height": 512}, "invalid_sdxl_v1_dimensions"),
        ({"samples": 11}, "bad_request"),
        ({"steps": 51}, "bad_request"),
        ({"sampler": "K_FANCY"}, "bad_request"),
        ({"text_prompts": []}, "bad_request"),
        ({"text_prompts": [{"text": "x" * 2001}]}, "bad_request"),
    ],
)
async def test_stability_validation_errors(overrides: dict[str, Any], name: str) -> None:
    async with FakeStability() as fake, http() as client:
        response = await stability_generate(client, fake, **overrides)
        assert response.status_code == 400
        assert response.json()["name"] == name and {"id", "message"} <= response.json().keys()


async def test_stability_auth_engine_and_samples_errors() -> None:
    async with FakeStability() as fake, http() as client:
        missing = await stability_generate(client, fake, headers={"Accept": "application/json"})
        assert missing.status_code == 401 and missing.json()["message"] == "missing authorization header"
        wrong = await stability_generate(client, fake, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["name"] == "unauthorized"
        assert (await client.get(fake.url + "/v1/user/balance")).status_code == 401
        url = f"{fake.url}/v1/generation/no-such-engine/text-to-image"
        assert (await client.post(url, headers=STABILITY_KEY, json=stability_body())).status_code == 404
        png_many = await stability_generate(
            client, fake, headers={"Authorization": "Bearer sk-test", "Accept": "image/png"}, samples=2
        )
        assert png_many.status_code == 400 and png_many.json()["name"] == "invalid_samples"


async def test_stability_pushed_status_and_content_filter() -> None:
    async with FakeStability() as fake, http() as client:
        fake.push_status(429, name="rate_limit_exceeded", headers={"Retry-After": "1"})
        fake.push_content_filtered(count=1)
        limited = await stability_generate(client, fake)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json()["name"] == "rate_limit_exceeded"
        filtered = await stability_generate(client, fake, samples=2)
        reasons = [a["finishReason"] for a in filtered.json()["artifacts"]]
        assert filtered.status_code == 200 and reasons == ["CONTENT_FILTERED", "SUCCESS"]
        assert decode(base64.b64decode(filtered.json()["artifacts"][0]["base64"])).size == (1024, 1024)


# -- modelslab -------------------------------------------------------------------------------------------
ML_TEXT2IMG = "/api/v6/images/text2img"


async def modelslab_generate(client: httpx.AsyncClient, fake: FakeModelsLab, **overrides: Any) -> httpx.Response:
    body = {"key": "test-key", "prompt": "a cat", "width": "512", "height": "768", "samples": "1", **overrides}
    return await client.post(fake.url + ML_TEXT2IMG, json=body)


async def test_modelslab_success_with_string_numbers_and_self_hosted_urls() -> None:
    async with FakeModelsLab() as fake, http() as client:
        response = await modelslab_generate(client, fake, samples="2", seed="77", guidance_scale="7.5")
        answer = response.json()
        assert answer["status"] == "success" and len(answer["output"]) == 2
        assert answer["meta"]["seed"] == 77 and answer["output"][0].startswith(fake.url + "/generations/")
        image = await client.get(answer["output"][1])
        assert image.headers["Content-Type"] == "image/png" and decode(image.content).size == (512, 768)
        assert fake.generate_calls[0].body["width"] == "512"  # recorded exactly as sent
        assert (await modelslab_generate(client, fake, seed=None)).json()["meta"]["seed"] > 0


async def test_modelslab_errors_invalid_key_validation_and_legacy_spelling() -> None:
    async with FakeModelsLab(legacy_spelling=True) as fake, http() as client:
        bad_key = (await modelslab_generate(client, fake, key="nope")).json()
        assert bad_key["status"] == "error" and bad_key["messege"] == "Invalid Api Key" and "tip" in bad_key
        invalid = (await modelslab_generate(client, fake, prompt="", width="2048", samples="x")).json()
        assert invalid["messege"]["prompt"] == ["The prompt field is required."]
        assert invalid["messege"]["width"] == ["The width must not be greater than 1024."]
        assert invalid["messege"]["samples"] == ["The samples must be an integer."]
    async with FakeModelsLab(model_ids={"sdxl"}) as fake, http() as client:
        fake.push_rate_limited()
        fake.push_failed()
        limited = (await modelslab_generate(client, fake, model_id="sdxl")).json()
        assert limited["message"] == "Rate limit exceeded" and "spam filter" in limited["tips"]
        failed = (await modelslab_generate(client, fake, model_id="sdxl")).json()
        assert failed == {"status": "failed", "id": "", "message": "Failed, Try Again", "output": ""}
        unknown = (await modelslab_generate(client, fake, model_id="nope")).json()
        assert unknown == {"status": "error", "message": "Model id not found"}


async def test_modelslab_processing_then_fetch_until_success() -> None:
    async with FakeModelsLab() as fake, http() as client:
        fake.push_processing(pending_fetches=2, eta=0.01)
        queued = (await modelslab_generate(client, fake)).json()
        assert queued["status"] == "processing" and queued["eta"] == 0.01
        assert queued["fetch_result"] == f"{fake.url}/api/v6/images/fetch/{queued['id']}"
        assert (await client.get(queued["future_links"][0])).status_code == 404  # not generated yet
        statuses = []
        for _ in range(3):
            polled = (await client.post(queued["fetch_result"], json={"key": "test-key"})).json()
            statuses.append(polled["status"])
        assert statuses == ["processing", "processing", "success"]
        assert decode((await client.get(polled["output"][0])).content).size == (512, 768)
        again = await client.post(
            fake.url + "/api/v6/images/fetch", json={"key": "test-key", "request_id": str(queued["id"])}
        )
        assert again.json()["status"] == "success" and len(fake.fetch_calls) == 4
        fake.push_processing(pending_fetches=0, outcome="failed")
        doomed = (await modelslab_generate(client, fake)).json()
        assert (await client.post(doomed["fetch_result"], json={"key": "test-key"})).json()["status"] == "failed"


async def test_modelslab_queue_all_base64_content_filter_late_image_and_spam_filter() -> None:
    queueing = FakeModelsLab(queue_all=True, pending_fetches=0, spam_filter_seconds=30)
    async with queueing as fake, http() as client:
        queued = (await modelslab_generate(client, fake, base64="yes")).json()
        assert queued["status"] == "processing"
        done = (await client.post(queued["fetch_result"], json={"key": "test-key"})).json()
        text = await client.get(done["output"][0])
        assert done["output"][0].endswith(".base64")
        assert decode(base64.b64decode(text.text)).size == (512, 768)
        again = (await modelslab_generate(client, fake, base64="yes")).json()
        assert again["message"] == "Rate limit exceeded"
    async with FakeModelsLab() as fake, http() as client:
        fake.push_content_filtered()
        fake.push_late_image(gets=1)
        nsfw = (await modelslab_generate(client, fake)).json()
        assert (await client.get(nsfw["output"][0])).content == blank_png(512, 768)
        late = (await modelslab_generate(client, fake)).json()
        assert (await client.get(late["output"][0])).status_code == 404
        assert (await client.get(late["output"][0])).status_code == 200


# -- bedrock ---------------------------------------------------------------------------------------------
def sigv4_headers(
    url: str,
    body: bytes,
    *,
    akid: str = "AKIDEXAMPLE",
    secret: str = "fake-secret",
    service: str = "bedrock",
    region: str = "us-east-1",
) -> dict[str, str]:
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json", "Accept": "application/json"}
    )
    SigV4Auth(Credentials(akid, secret), service, region).add_auth(request)
    return dict(request.headers.items())


async def bedrock_invoke(
    client: httpx.AsyncClient, fake: FakeBedrock, model: str = "stability.stable-diffusion-xl-v1", **kwargs: Any
) -> httpx.Response:
    body = json.dumps(stability_body(**kwargs.pop("overrides", {}))).encode()
    url = f"{fake.url}/model/{model}/invoke"
    return await client.post(url, content=body, headers=sigv4_headers(url, body, **kwargs))


async def test_bedrock_botocore_signed_request_succeeds() -> None:
    async with FakeBedrock() as fake, http() as client:
        response = await bedrock_invoke(client, fake, overrides={"seed": 9, "width": 832, "height": 1216})
        answer = response.json()
        assert response.status_code == 200, response.text
        assert answer["result"] == "success" and answer["artifacts"][0]["seed"] == 9
        assert decode(base64.b64decode(answer["artifacts"][0]["base64"])).size == (832, 1216)
        assert fake.generate_calls[0].headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        versioned = await bedrock_invoke(client, fake, model="stability.stable-diffusion-xl-v1:0")
        assert versioned.status_code == 200, versioned.text
        assert not fake.auth_errors


def botocore_invoke(url: str, model: str) -> Any:
    """InvokeModel through botocore's own bedrock-runtime client (sync, so call it in a thread)."""
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="fake-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        body = json.dumps({"text_prompts": [{"text": "a cat"}], "seed": 3})
        answer = client.invoke_model(
            modelId=model, body=body, contentType="application/json", accept="application/json"
        )
        return json.loads(answer["body"].read())
    except ClientError as exc:
        return exc.response["Error"]["Code"]


async def test_bedrock_speaks_to_botocores_own_client() -> None:
    arn = "arn:aws:bedrock:us-east-1::foundation-model/stability.stable-diffusion-xl-v1"
    async with FakeBedrock() as fake:
        for model in ("stability.stable-diffusion-xl-v1:0", arn):  # botocore percent-encodes ':' and '/'
            answer = await asyncio.to_thread(botocore_invoke, fake.url, model)
            assert answer["artifacts"][0]["seed"] == 3
        fake.push_error("ThrottlingException")
        assert await asyncio.to_thread(botocore_invoke, fake.url, "stability.stable-diffusion-xl-v1") == (
            "ThrottlingException"
        )
        assert not fake.auth_errors


@pytest.mark.parametrize(
    ("kwargs", "error_type"),
    [
        ({"secret": "wrong"}, "InvalidSignatureException"),
        ({"akid": "AKIDOTHER"}, "UnrecognizedClientException"),
        ({"service": "bedrock-runtime"}, "InvalidSignatureException"),
        ({"region": "eu-west-1"}, "InvalidSignatureException"),
    ],
)
async def test_bedrock_rejects_bad_signatures(kwargs: dict[str, str], error_type: str) -> None:
    async with FakeBedrock() as fake, http() as client:
        fake.push_error("ThrottlingException")  # not consumed by a rejected request
        response = await bedrock_invoke(client, fake, **kwargs)
        assert response.status_code == 403
        assert response.headers["x-amzn-ErrorType"].split(":")[0] == error_type
        assert response.json()["message"] and len(fake.faults) == 1


async def test_bedrock_unsigned_tampered_and_stale_requests_are_refused() -> None:
    async with FakeBedrock() as fake, http() as client:
        url = f"{fake.url}/model/stability.stable-diffusion-xl-v1/invoke"
        body = json.dumps(stability_body()).encode()
        unsigned = await client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 403
        assert unsigned.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")
        tampered = await client.post(
            url, content=body.replace(b"lighthouse", b"lightHOUSE"), headers=sigv4_headers(url, body)
        )
        assert tampered.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
        old = "20200101T000000Z"
        headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{fake.port}", "X-Amz-Date": old}
        signed = ["content-type", "host", "x-amz-date"]
        canonical = canonical_request(
            "POST", "/model/stability.stable-diffusion-xl-v1/invoke", "", headers.items(), signed, body
        )
        scope = "20200101/us-east-1/bedrock/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", old, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(
            signing_key("fake-secret", "20200101", "us-east-1", "bedrock"), to_sign.encode(), hashlib.sha256
        )
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, SignedHeaders={';'.join(signed)}, "
            f"Signature={signature.hexdigest()}"
        )
        stale = await client.post(url, content=body, headers=headers)
        assert stale.status_code == 403 and "Signature expired" in stale.json()["message"]


async def test_bedrock_validation_access_and_pushed_errors() -> None:
    async with FakeBedrock(denied_models={"stability.stable-diffusion-xl-v1:0"}) as fake, http() as client:
        samples = await bedrock_invoke(client, fake, overrides={"samples": 2})
        assert samples.status_code == 400 and samples.headers["x-amzn-ErrorType"].startswith("ValidationException")
        dims = await bedrock_invoke(client, fake, overrides={"width": 512, "height": 512})
        assert dims.status_code == 400 and "Malformed input request" in dims.json()["message"]
        unknown = await bedrock_invoke(client, fake, model="stability.sd3-large-v1:0")
        assert unknown.status_code == 400
        denied = await bedrock_invoke(client, fake, model="stability.stable-diffusion-xl-v1:0")
        assert denied.status_code == 403 and denied.headers["x-amzn-ErrorType"].startswith("AccessDeniedException")
        fake.push_error("ModelTimeoutException")
        fake.push_content_filtered()
        timeout = await bedrock_invoke(client, fake)
        assert timeout.status_code == 408 and timeout.headers["x-amzn-ErrorType"].startswith("ModelTimeoutException")
        filtered = await bedrock_invoke(client, fake)
        assert filtered.json()["artifacts"][0]["finishReason"] == "CONTENT_FILTERED"


# -- a1111 -----------------------------------------------------------------------------------------------
async def test_a1111_txt2img_images_seeds_and_info() -> None:
    async with FakeA1111(duration=0.01) as fake, http() as client:
        body = {"prompt": "cat", "seed": 100, "batch_size": 2, "n_iter": 2, "width": 516, "height": 768, "steps": "20"}
        answer = (await client.post(fake.url + "/sdapi/v1/txt2img", json=body)).json()
        info = json.loads(answer["info"])
        assert len(answer["images"]) == 4 and info["all_seeds"] == [100, 101, 102, 103]
        assert info["seed"] == 100 and info["steps"] == 20 and info["index_of_first_image"] == 0
        assert decode(base64.b64decode(answer["images"][3])).size == (512, 768)  # rounded down to 8
        assert answer["parameters"]["sampler_index"] == "Euler"
        grid = (await client.post(fake.url + "/sdapi/v1/txt2img", json={**body, "save_images": True})).json()
        assert len(grid["images"]) == 5 and json.loads(grid["info"])["index_of_first_image"] == 1
        random_seed = json.loads((await client.post(fake.url + "/sdapi/v1/txt2img", json={"seed": -1})).json()["info"])
        assert random_seed["seed"] >= 0 and random_seed["all_seeds"] == [random_seed["seed"]]


async def test_a1111_progress_follows_the_running_job_and_interrupt_stops_it() -> None:
    async with FakeA1111(duration=3.0) as fake, http() as client:
        idle = (await client.get(fake.url + "/sdapi/v1/progress")).json()
        assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
        started = time.monotonic()
        job = asyncio.create_task(client.post(fake.url + "/sdapi/v1/txt2img", json={"steps": 20, "n_iter": 2}))
        seen = []
        for _ in range(3):
            await asyncio.sleep(0.1)
            seen.append((await client.get(fake.url + "/sdapi/v1/progress")).json())
        assert all(0 < p["progress"] < 1 and p["eta_relative"] > 0 for p in seen)
        assert seen[0]["progress"] < seen[-1]["progress"]
        assert seen[-1]["state"]["sampling_steps"] == 20 and seen[-1]["state"]["job_count"] == 2
        assert seen[-1]["state"]["job"] == "Batch 1 out of 2" and seen[-1]["state"]["job_no"] == 0
        assert (await client.post(fake.url + "/sdapi/v1/interrupt")).json() == {}
        answer = (await job).json()
        assert time.monotonic() - started < 2.5 and fake.interrupts == 1
        assert len(answer["images"]) == 1  # only the first of the two batches had started
        assert (await client.get(fake.url + "/sdapi/v1/progress")).json()["progress"] == 0


async def test_a1111_runs_one_job_at_a_time() -> None:
    async with FakeA1111(duration=0.05) as fake, http() as client:
        answers = await asyncio.gather(*(client.post(fake.url + "/sdapi/v1/txt2img", json={}) for _ in range(3)))
        assert all(answer.status_code == 200 for answer in answers) and fake.max_concurrent_jobs == 1


async def test_a1111_lists_errors_and_auth() -> None:
    async with FakeA1111(auth=("user", "pass")) as fake, http() as client:
        missing = await client.get(fake.url + "/sdapi/v1/samplers")
        assert missing.status_code == 401 and missing.json()["detail"] == "Not authenticated"
        assert missing.headers["WWW-Authenticate"] == "Basic"
        wrong = await client.post(fake.url + "/sdapi/v1/txt2img", json={}, auth=("user", "nope"))
        assert wrong.status_code == 401 and wrong.json()["detail"] == "Incorrect username or password"
        auth = ("user", "pass")
        samplers = (await client.get(fake.url + "/sdapi/v1/samplers", auth=auth)).json()
        names = {sampler["name"] for sampler in samplers}
        assert {"Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "LMS", "Heun"} <= names
        assert all({"name", "aliases", "options"} == set(sampler) for sampler in samplers)
        models = (await client.get(fake.url + "/sdapi/v1/sd-models", auth=auth)).json()
        assert models[0]["title"].startswith("sd_xl_base_1.0")
        sampler = await client.post(fake.url + "/sdapi/v1/txt2img", json={"sampler_name": "Nope"}, auth=auth)
        assert sampler.status_code == 404 and sampler.json()["detail"] == "Sampler not found"
        typed = await client.post(fake.url + "/sdapi/v1/txt2img", json={"steps": "many", "width": []}, auth=auth)
        assert typed.status_code == 422
        assert [error["loc"] for error in typed.json()["detail"]] == [["body", "steps"], ["body", "width"]]
        not_json = await client.post(fake.url + "/sdapi/v1/txt2img", content=b"{", auth=auth)
        assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "value_error.jsondecode"
        fake.push_oom()
        oom = await client.post(fake.url + "/sdapi/v1/txt2img", json={}, auth=auth)
        assert oom.status_code == 500 and oom.json()["error"] == "OutOfMemoryError"
        assert len(fake.generate_calls) == 5


# -- the faults every fake shares ------------------------------------------------------------------------
Scenario = tuple[Callable[[], ImageApiFake], Callable[[httpx.AsyncClient, Any], Awaitable[list[bytes]]]]


async def _qianfan_images(client: httpx.AsyncClient, fake: FakeQianfan) -> list[bytes]:
    response = await qianfan_generate(client, fake, await qianfan_token(client, fake), size="1024x1024")
    return [base64.b64decode(item["b64_image"]) for item in response.json()["data"]]


async def _stability_images(client: httpx.AsyncClient, fake: FakeStability) -> list[bytes]:
    response = await stability_generate(client, fake)
    return [base64.b64decode(item["base64"]) for item in response.json()["artifacts"]]


async def _modelslab_images(client: httpx.AsyncClient, fake: FakeModelsLab) -> list[bytes]:
    answer = (await modelslab_generate(client, fake, width=1024, height=1024)).json()
    return [(await client.get(url)).content for url in answer["output"]]


async def _bedrock_images(client: httpx.AsyncClient, fake: FakeBedrock) -> list[bytes]:
    answer = (await bedrock_invoke(client, fake)).json()
    return [base64.b64decode(item["base64"]) for item in answer["artifacts"]]


async def _a1111_images(client: httpx.AsyncClient, fake: FakeA1111) -> list[bytes]:
    response = await client.post(fake.url + "/sdapi/v1/txt2img", json={"width": 1024, "height": 1024})
    return [base64.b64decode(image) for image in response.json()["images"]]


SCENARIOS: dict[str, Scenario] = {
    "qianfan": (FakeQianfan, _qianfan_images),
    "stability": (FakeStability, _stability_images),
    "modelslab": (FakeModelsLab, _modelslab_images),
    "bedrock": (FakeBedrock, _bedrock_images),
    "a1111": (lambda: FakeA1111(duration=0.01), _a1111_images),
}


@pytest.mark.parametrize("provider", SCENARIOS)
async def test_image_faults_change_only_the_image(provider: str) -> None:
    make, images = SCENARIOS[provider]
    async with make() as fake, http() as client:
        fake.push_not_an_image()
        fake.push_bomb()
        fake.push_wrong_size()
        assert (await images(client, fake)) == [NOT_AN_IMAGE]
        assert png_size((await images(client, fake))[0]) == (30000, 30000)
        assert decode((await images(client, fake))[0]).size == (512, 512)
        assert decode((await images(client, fake))[0]).size == (1024, 1024)  # faults used up


@pytest.mark.parametrize("provider", SCENARIOS)
async def test_transport_faults_malformed_json_disconnect_and_delay(provider: str) -> None:
    make, images = SCENARIOS[provider]
    fake = make()
    async with fake, http() as client:
        fake.push_malformed_json()
        with pytest.raises(json.JSONDecodeError):
            await images(client, fake)
        fake.push_disconnect()
        with pytest.raises(httpx.RemoteProtocolError):
            await images(client, fake)
        fake.push_delay(0.05)
        started = time.monotonic()
        assert len(await images(client, fake)) == 1 and time.monotonic() - started >= 0.05
        fake.push_delay(30)
        client.timeout = httpx.Timeout(0.4)
        with pytest.raises(httpx.ReadTimeout):
            await images(client, fake)
        started = time.monotonic()
    assert time.monotonic() - started < 2  # stopping cuts the pending 30 s delay short
