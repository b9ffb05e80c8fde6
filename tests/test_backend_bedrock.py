"""The Bedrock backend: botocore signs, httpx sends, the local fake Bedrock recomputes every SigV4 signature."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.backends import sdxl_v1
from bot.backends.bedrock import SDXL_MODEL as SDXL
from bot.backends.bedrock import BedrockBackend
from bot.backends.http import RetryPolicy
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.errors import BackendError, ConfigError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import assert_image, fast_retry, sdbot
from tests.fakes.bedrock import FakeBedrock

AKID, SECRET = "AKIDBEDROCKTEST01", "bedrock-test-secret-access-key/0123456789"
USER = user_key("telegram", 7)
CAT = DrawRequest("cat", seed=21)


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """botocore must find no credentials on this machine unless a test provides them."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock(access_key_id=AKID, secret_access_key=SECRET) as server:
        yield server


def make(fake: FakeBedrock, retry: RetryPolicy | None = None, **kwargs: object) -> BedrockBackend:
    options: dict[str, object] = {
        "region": "us-east-1",
        "model_id": SDXL,  # these tests are SDXL v1's; the current models have tests/test_backend_bedrock_models.py
        "endpoint_url": fake.url,
        "access_key_id": AKID,
        "secret_access_key": SECRET,
        "timeout": 5.0,
        "connect_timeout": 1.0,
        "retry": retry or fast_retry()[0],
    }
    options.update(kwargs)
    return BedrockBackend(**options)  # type: ignore[arg-type]


async def test_n_images_are_n_signed_calls_with_distinct_seeds(fake: FakeBedrock) -> None:
    request = DrawRequest(
        "a lighthouse",
        negative_prompt="fog",
        size="1216x832",
        n=3,
        steps=40,
        sampler_index="DPM++ 2M",
        seed=4294967294,
        cfg_scale=12.0,
        style="Neonpunk",
    )
    progress: list[float] = []

    async def report(fraction: float) -> None:
        progress.append(fraction)

    async with make(fake) as backend:
        images = await backend.generate(request, user=USER, progress=report)
    assert fake.auth_errors == []  # every signature verified
    assert len(images) == 3 and len(fake.generate_calls) == 3
    for image in images:
        assert_image(image, 1216, 832)
    bodies = sorted((call.body for call in fake.generate_calls), key=lambda body: body["seed"])
    assert [body["seed"] for body in bodies] == [0, 4294967294, 4294967295]
    # Seeds as the provider reports them; 0 means "random" to Stability's API, so that one is Bedrock's draw.
    seeds = [image.seed for image in images]
    assert len(seeds) == 3 and {4294967294, 4294967295} < set(seeds) and 0 not in seeds
    assert {k: v for k, v in bodies[0].items() if k != "seed"} == {
        "text_prompts": [{"text": "a lighthouse", "weight": 1.0}, {"text": "fog", "weight": -1.0}],
        "cfg_scale": 12.0,
        "width": 1216,
        "height": 832,
        "samples": 1,
        "steps": 40,
        "sampler": "K_DPMPP_2M",
        "style_preset": "neon-punk",
    }
    call = fake.generate_calls[0]
    assert call.path == "/model/stability.stable-diffusion-xl-v1/invoke"
    authorization = call.headers["Authorization"]
    assert f"Credential={AKID}/" in authorization and "/us-east-1/bedrock/aws4_request" in authorization
    assert sorted(progress) == pytest.approx([1 / 3, 2 / 3, 1.0])


async def test_a_versioned_model_id_and_a_session_token_are_signed_correctly() -> None:
    async with FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, session_token="session-token-xyz") as fake:
        backend = make(fake, model_id="stability.stable-diffusion-xl-v1:0", session_token="session-token-xyz")
        async with backend:
            assert len(await backend.generate(CAT, user=USER)) == 1
    assert fake.auth_errors == []
    assert fake.generate_calls[0].path == "/model/stability.stable-diffusion-xl-v1:0/invoke"
    assert fake.generate_calls[0].headers["X-Amz-Security-Token"] == "session-token-xyz"


async def test_capabilities_are_sdxl_with_the_shared_mapping() -> None:
    options = {"region": "us-east-1", "model_id": SDXL, "access_key_id": AKID, "secret_access_key": SECRET}
    async with BedrockBackend(**options) as backend:
        caps = await backend.capabilities()
    assert caps.sizes == sdxl_v1.SDXL_SIZES and caps.samplers == tuple(sdxl_v1.SAMPLERS)
    assert caps.max_n == 4


@pytest.mark.parametrize(
    ("kwargs", "fake_kwargs", "outcome", "type_"),
    [
        ({"secret_access_key": "not-the-secret-000"}, {}, "backend_auth_failed", "InvalidSignatureException"),
        ({"access_key_id": "AKIDUNKNOWN000"}, {}, "backend_auth_failed", "UnrecognizedClientException"),
        ({"region": "eu-west-1"}, {}, "backend_auth_failed", "InvalidSignatureException"),
        ({"model_id": "no.such-model"}, {}, "backend_config", "ValidationException"),
        ({}, {"denied_models": ["stability.stable-diffusion-xl-v1"]}, "backend_config", "AccessDeniedException"),
    ],
)
async def test_refusals_of_the_real_fake(kwargs: dict, fake_kwargs: dict, outcome: str, type_: str) -> None:
    server = FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, **fake_kwargs)
    async with server as fake, make(fake, **kwargs) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.provider_code) == (outcome, type_)
    assert len(fake.generate_calls) == 1  # not retried


@pytest.mark.parametrize(
    ("type_", "outcome"),
    [
        ("ValidationException", "backend_invalid_request"),
        ("ServiceQuotaExceededException", "backend_quota_exhausted"),
        ("AccessDeniedException", "backend_config"),
        ("ResourceNotFoundException", "backend_config"),
        ("ModelTimeoutException", "backend_timeout"),
        ("ModelErrorException", "backend_unavailable"),
        ("ExpiredTokenException", "backend_auth_failed"),
    ],
)
async def test_errors_that_are_not_retried(fake: FakeBedrock, type_: str, outcome: str) -> None:
    retry, sleeps = fast_retry()
    if type_ == "ExpiredTokenException":
        fake.push_status(403, type_, "The security token included in the request is expired")
    else:
        fake.push_error(type_)
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert (error.code, error.provider, error.provider_code) == (outcome, "bedrock", type_)
    assert error.user_fault == (outcome == "backend_invalid_request")
    assert len(fake.generate_calls) == 1 and sleeps.delays == []


@pytest.mark.parametrize(
    "type_", ["ThrottlingException", "ModelNotReadyException", "InternalServerException", "ServiceUnavailableException"]
)
async def test_transient_errors_are_retried(fake: FakeBedrock, type_: str) -> None:
    retry, sleeps = fast_retry()
    fake.push_error(type_)
    async with make(fake, retry) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2 and sleeps.delays == [0.01]
    assert fake.auth_errors == []  # the retry was signed afresh and verified


async def test_throttling_that_persists_is_rate_limited_with_a_wait(fake: FakeBedrock) -> None:
    retry, sleeps = fast_retry(retries=1)
    fake.push_error("ThrottlingException", headers={"Retry-After": "2"})
    fake.push_error("ThrottlingException")
    async with make(fake, retry) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    error = caught.value
    assert sleeps.delays == [2.0]
    assert (error.code, error.retry_after, error.params["seconds"]) == ("backend_rate_limited", 10.0, 10)
    assert "10" in render_error(error, "en")


async def test_some_images_failing_still_delivers_the_others(fake: FakeBedrock) -> None:
    fake.push_error("ModelErrorException")
    async with make(fake) as backend:
        images = await backend.generate(DrawRequest("cat", n=3, seed=1), user=USER)
    assert len(images) == 2 and len(fake.generate_calls) == 3


async def test_every_image_failing_raises(fake: FakeBedrock) -> None:
    for _ in range(2):
        fake.push_error("ServiceQuotaExceededException")
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(DrawRequest("cat", n=2, seed=1), user=USER)
    assert caught.value.code == "backend_quota_exhausted"


async def test_content_filtered(fake: FakeBedrock) -> None:
    fake.push_content_filtered()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, CAT, user=USER)
    assert caught.value.code == "content_filtered"


async def test_slow_answer_past_the_timeout(fake: FakeBedrock) -> None:
    fake.push_delay(2.0)
    async with make(fake, timeout=0.2) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert caught.value.code == "backend_timeout" and len(fake.generate_calls) == 1


async def test_malformed_json(fake: FakeBedrock) -> None:
    fake.push_malformed_json()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_unavailable", "malformed")


async def test_a_dropped_connection_is_retried(fake: FakeBedrock) -> None:
    fake.push_disconnect()
    async with make(fake) as backend:
        assert len(await backend.generate(CAT, user=USER)) == 1
    assert len(fake.generate_calls) == 2 and fake.auth_errors == []


@pytest.mark.parametrize("fault", ["push_not_an_image", "push_wrong_size", "push_bomb"])
async def test_answers_that_are_not_the_image_asked_for_are_bad_images(fake: FakeBedrock, fault: str) -> None:
    getattr(fake, fault)()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, CAT, user=USER)
    assert caught.value.code == "backend_bad_image"


async def test_credentials_from_the_standard_chain_are_resolved_once_in_a_thread(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    threads: list[threading.Thread] = []
    original = BedrockBackend._resolve_credentials

    def spy(self: BedrockBackend) -> object:
        threads.append(threading.current_thread())
        return original(self)

    monkeypatch.setattr(BedrockBackend, "_resolve_credentials", spy)
    async with make(fake, access_key_id=None, secret_access_key=None) as backend:
        await backend.generate(DrawRequest("cat", n=2, seed=3), user=USER)
        await backend.generate(CAT, user=USER)
        report = await backend.check()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert fake.auth_errors == [] and len(fake.generate_calls) == 4
    assert report.ok
    assert "shared-credentials-file" in report.findings[3][1].render("en")  # type: ignore[union-attr]


async def test_no_credentials_anywhere(fake: FakeBedrock) -> None:
    async with make(fake, access_key_id=None, secret_access_key=None) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(CAT, user=USER)
        assert caught.value.code == "backend_config"
        with pytest.raises(ConfigError) as config_error:
            await backend.check()
    assert config_error.value.variable == "AWS_ACCESS_KEY_ID"
    assert fake.generate_calls == []


async def test_check_probes_with_an_invalid_body_and_generates_nothing(fake: FakeBedrock) -> None:
    async with make(fake) as backend:
        report = await backend.check()
    assert report.ok
    (call,) = fake.generate_calls
    assert call.raw_body == b"{}" and fake.auth_errors == []
    assert "ValidationException" in report.findings[-1][1].render("en")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "fake_kwargs", "outcome"),
    [
        ({"secret_access_key": "not-the-secret-000"}, {}, "backend_auth_failed"),
        ({"model_id": "no.such-model"}, {}, "backend_config"),
        ({}, {"denied_models": ["stability.stable-diffusion-xl-v1"]}, "backend_config"),
    ],
)
async def test_check_failures(kwargs: dict, fake_kwargs: dict, outcome: str) -> None:
    server = FakeBedrock(access_key_id=AKID, secret_access_key=SECRET, **fake_kwargs)
    async with server as fake, make(fake, **kwargs) as backend:
        report = await backend.check()
    assert not report.ok
    error = report.findings[-1][1]
    assert isinstance(error, BackendError) and error.code == outcome


def test_settings_need_a_region_and_a_whole_key_pair() -> None:
    with pytest.raises(ConfigError) as caught:
        BedrockBackend.from_settings(Settings.from_env({"SDBOT_BACKEND": "bedrock"}, env_file=None))
    assert caught.value.variable == "AWS_REGION"
    env = {"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": AKID}
    with pytest.raises(ConfigError) as caught:
        BedrockBackend.from_settings(Settings.from_env(env, env_file=None))
    assert caught.value.variable == "AWS_SECRET_ACCESS_KEY"
    env = {"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-east-1"}
    backend = BedrockBackend.from_settings(Settings.from_env(env, env_file=None))  # the chain decides later
    assert isinstance(backend, BedrockBackend)


def test_without_botocore_the_operator_is_told_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)  # makes `import botocore` raise ImportError
    env = {"SDBOT_BACKEND": "bedrock", "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError) as caught:
        BedrockBackend.from_settings(Settings.from_env(env, env_file=None))
    assert caught.value.variable == "SDBOT_BACKEND"
    assert 'pip install "sdbot[bedrock]"' in render_error(caught.value, "en")
    assert 'pip install "sdbot[bedrock]"' in render_error(caught.value, "zh")


async def test_sdbot_draw_runs_on_bedrock(fake: FakeBedrock, tmp_path: Path) -> None:
    env = {
        "SDBOT_BACKEND": "bedrock",
        "BEDROCK_ENDPOINT_URL": fake.url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": AKID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "BEDROCK_MODEL_ID": SDXL,
    }
    args = ("--json", "--out", str(tmp_path), "cat", "--size", "896x1152", "--n", "2", "--seed", "77")
    code, out, err = await sdbot("draw", *args, env=env, cwd=tmp_path)
    assert code == 0, err
    paths = json.loads(out)["images"]
    assert len(paths) == 2 and fake.auth_errors == []
    for path in paths:
        with Image.open(path) as img:
            assert img.size == (896, 1152)
    assert sorted(call.body["seed"] for call in fake.generate_calls) == [77, 78]
    assert SECRET not in out + err
