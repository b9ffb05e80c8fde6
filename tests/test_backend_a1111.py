"""The AUTOMATIC1111 backend with the real httpx client against the local fake A1111 on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.backends import create_backend
from bot.backends.a1111 import A1111Backend
from bot.backends.http import RetryPolicy
from bot.config import Settings
from bot.draw.params import SIZES
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError
from bot.jobs.generation import generate
from bot.messages.i18n import LANGUAGES, Msg, render_error
from tests.fakes.a1111 import SAMPLERS, FakeA1111
from tests.fakes.images import png_bytes

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "painter", "a1111-pass-7d2e9c41b8"
FAST = RetryPolicy(retries=2, factor=0.001, jitter=0.0)


def make(fake: FakeA1111, **overrides: Any) -> A1111Backend:
    options: dict[str, Any] = {"timeout": 5.0, "connect_timeout": 1.0, "retry": FAST, "progress_interval": 0.02}
    options.update(overrides)
    return A1111Backend(fake.url, **options)


def draw(**overrides: Any) -> DrawRequest:
    fields: dict[str, Any] = {"prompt": "a lighthouse at dusk", "seed": 99, "size": "768x1024", "n": 1}
    fields.update(overrides)
    return DrawRequest(**fields)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


async def failure(backend: A1111Backend, request: DrawRequest | None = None) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await backend.generate(request or draw(), user="u1")
    return caught.value


class Sleeps:
    """A retry ``sleep`` that records the delays asked for and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# -- success ----------------------------------------------------------------------------------------------


async def test_txt2img_sends_the_request_and_returns_real_images_with_their_seeds() -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        request = draw(n=2, negative_prompt="fog", steps=12, cfg_scale=6.5, sampler_index="DPM++ 2M Karras")
        result = await backend.generate(request, user="u1")

        assert [(i.format, i.width, i.height, i.filtered) for i in result] == [("PNG", 768, 1024, False)] * 2
        assert [size_of(i.data) for i in result] == [(768, 1024)] * 2
        assert [i.seed for i in result] == [99, 100]  # info.all_seeds
        (call,) = fake.generate_calls
        assert call.path == "/sdapi/v1/txt2img"
        assert call.body == {
            "prompt": "a lighthouse at dusk",
            "negative_prompt": "fog",
            "seed": 99,
            "sampler_name": "DPM++ 2M Karras",
            "steps": 12,
            "cfg_scale": 6.5,
            "width": 768,
            "height": 1024,
            "batch_size": 2,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        assert "authorization" not in call.headers  # no A1111_AUTH, no header


def _answer(images: list[bytes], info: Any) -> dict[str, Any]:
    return {
        "images": [base64.b64encode(i).decode() for i in images],
        "parameters": {},
        "info": info if isinstance(info, str) else json.dumps(info),
    }


async def test_seeds_come_from_info_and_a_grid_is_skipped() -> None:
    grid, one, two = png_bytes(1536, 1024, 1), png_bytes(768, 1024, 2), png_bytes(768, 1024, 3)
    async with FakeA1111() as fake, make(fake) as backend:
        fake.push_response(200, _answer([grid, one, two], {"all_seeds": [5551, 5552], "index_of_first_image": 1}))
        result = await backend.generate(draw(n=2), user="u1")
        assert [(i.data, i.seed) for i in result] == [(one, 5551), (two, 5552)]

        fake.push_response(200, _answer([one], "not json {"))
        (only,) = await backend.generate(draw(), user="u1")
        assert (only.data, only.seed) == (one, None)  # unknown rather than guessed


async def test_progress_is_reported_while_the_job_runs() -> None:
    fractions: list[float] = []

    async def progress(fraction: float) -> None:
        fractions.append(fraction)

    async with FakeA1111(duration=0.5) as fake, make(fake) as backend:
        await backend.generate(draw(n=2), user="u1", progress=progress)
        polls = [r for r in fake.requests if r == ("GET", "/sdapi/v1/progress")]
    assert len(fractions) >= 4, fractions
    assert fractions == sorted(set(fractions)), "strictly increasing"
    assert fractions[0] > 0 and all(f < 1.0 for f in fractions[:-1]) and fractions[-1] == 1.0
    assert len(polls) >= 5
    await asyncio.sleep(0.05)
    assert len([r for r in fake.requests if r == ("GET", "/sdapi/v1/progress")]) == len(polls)  # poller stopped


async def test_a_failing_progress_callback_does_not_fail_the_generation() -> None:
    async def broken(fraction: float) -> None:
        raise RuntimeError("chat edit refused")

    async with FakeA1111(duration=0.15) as fake, make(fake) as backend:
        assert len(await backend.generate(draw(), user="u1", progress=broken)) == 1


# -- capabilities -----------------------------------------------------------------------------------------


async def test_capabilities_come_from_the_server() -> None:
    samplers = [{"name": n, "aliases": [], "options": {}} for n in ("UniPC", "Euler", "DPM++ 2M Karras", "DDIM")]
    async with FakeA1111(samplers=samplers) as fake, make(fake) as backend:
        caps = await backend.capabilities()
    assert caps.samplers == ("Euler", "DPM++ 2M Karras", "UniPC", "DDIM")  # the seed's order, then extras
    assert caps.sizes == SIZES and caps.styles == ("Base",)
    assert parse_request("cat", caps).sampler_index == "Euler"  # "Euler a" is not on this server
    assert parse_request("cat --sampler ddim", caps).sampler_index == "DDIM"
    for text, code in [("cat --sampler Heun", "unsupported_sampler"), ("cat --style Anime", "unsupported_style")]:
        with pytest.raises(DrawError) as caught:
            parse_request(text, caps)
        assert caught.value.code == code


async def test_capabilities_are_fetched_once_under_concurrency() -> None:
    async with FakeA1111(samplers=SAMPLERS) as fake, make(fake) as backend:
        results = await asyncio.gather(*(backend.capabilities() for _ in range(20)))
        assert all(r is results[0] for r in results)
        assert fake.requests.count(("GET", "/sdapi/v1/samplers")) == 1
        assert fake.requests.count(("GET", "/sdapi/v1/sd-models")) == 1
        await backend.capabilities()
        assert fake.requests.count(("GET", "/sdapi/v1/samplers")) == 1


async def test_a_failed_capability_fetch_is_not_cached() -> None:
    async with FakeA1111() as fake:
        url = fake.url
    async with A1111Backend(url, retry=RetryPolicy(retries=0)) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.capabilities()
        assert caught.value.code == "backend_unavailable"
        async with FakeA1111() as revived:
            backend._client.base_url = revived.url  # the same backend, once the server is up
            assert "Euler a" in (await backend.capabilities()).samplers


async def test_a_server_without_checkpoints_is_a_configuration_error() -> None:
    async with FakeA1111(models=()) as fake, make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.capabilities()
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "no_models")
    assert "checkpoint" in render_error(caught.value, "en") and "checkpoint" in render_error(caught.value, "zh")


async def test_a_server_without_the_api_is_a_configuration_error() -> None:
    async with FakeA1111() as fake, A1111Backend(f"{fake.url}/not-the-api", retry=FAST) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.capabilities()
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "http_404")
    assert all("--api" in render_error(caught.value, lang) for lang in LANGUAGES)


# -- errors -----------------------------------------------------------------------------------------------


async def test_basic_auth_is_sent_and_a_wrong_login_is_auth_failed() -> None:
    async with FakeA1111(auth=(USER, PASSWORD)) as fake:
        async with make(fake, auth=(USER, PASSWORD)) as backend:
            assert len(await backend.generate(draw(), user="u1")) == 1
            assert await backend.capabilities()
        for auth in [(USER, "wrong-password-123"), None]:
            async with make(fake, auth=auth) as backend:
                with pytest.raises(BackendError) as caught:
                    await backend.capabilities()
                assert (caught.value.code, caught.value.provider_code) == ("backend_auth_failed", "http_401")
                assert all("A1111_AUTH" in render_error(caught.value, lang) for lang in LANGUAGES)
                assert (await failure(backend)).code == "backend_auth_failed"


async def test_sampler_not_found_is_the_users_request_and_refreshes_the_samplers() -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        await backend.capabilities()
        fake.samplers = [s for s in SAMPLERS if s["name"] != "Heun"]  # the server restarted without it
        error = await failure(backend, draw(sampler_index="Heun"))
        assert (error.code, error.provider_code, error.user_fault) == (
            "backend_invalid_request",
            "sampler_not_found",
            True,
        )
        assert "Heun" in render_error(error, "en") and "Heun" in render_error(error, "zh")
        assert "Heun" not in (await backend.capabilities()).samplers
        assert fake.requests.count(("GET", "/sdapi/v1/samplers")) == 2


@pytest.mark.parametrize(
    ("plan", "code", "provider_code", "calls"),
    [
        (lambda f: f.push_status(422, [{"loc": ["body", "steps"], "msg": "bad", "type": "x"}]),
         "backend_invalid_request", "validation", 1),
        (lambda f: f.push_oom(), "backend_unavailable", "out_of_memory", 1),
        (lambda f: f.push_status(500, "boom"), "backend_unavailable", "http_500", 1),
        (lambda f: [f.push_status(503, "restarting") for _ in range(3)], "backend_unavailable", "http_503", 3),
        (lambda f: f.push_response(404, {"detail": "Not Found"}), "backend_config", "http_404", 1),
        (lambda f: f.push_response(403, "Forbidden"), "backend_auth_failed", "http_403", 1),
    ],
    ids=["422", "oom", "500", "503", "no-api", "403"],
)  # fmt: skip
async def test_http_errors_map_to_outcomes(plan: Any, code: str, provider_code: str, calls: int) -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        plan(fake)
        error = await failure(backend)
        assert len(fake.generate_calls) == calls  # only gateway errors are tried again (retries=2)
    assert (error.code, error.provider, error.provider_code) == (code, "a1111", provider_code)
    assert error.user_fault is (code == "backend_invalid_request")


async def test_out_of_memory_tells_the_user_what_to_change() -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        fake.push_oom()
        error = await failure(backend)
    assert "--size" in render_error(error, "en") and "--size" in render_error(error, "zh")


async def test_a_gateway_error_is_retried_then_succeeds() -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        fake.push_status(502, "bad gateway")
        assert len(await backend.generate(draw(), user="u1")) == 1
        assert len(fake.generate_calls) == 2


async def test_rate_limits_honour_retry_after() -> None:
    sleeps = Sleeps()
    async with FakeA1111() as fake, make(fake, retry=RetryPolicy(retries=2, sleep=sleeps)) as backend:
        fake.push_response(429, "slow down", headers={"Retry-After": "2"})
        assert len(await backend.generate(draw(), user="u1")) == 1
        assert sleeps.delays == [2.0] and len(fake.generate_calls) == 2

        fake.push_response(429, "slow down", headers={"Retry-After": "120"})  # longer than we hold a job
        error = await failure(backend)
    assert (error.code, error.retry_after, error.params["seconds"]) == ("backend_rate_limited", 120.0, 120)
    assert "120" in render_error(error, "en") and "120" in render_error(error, "zh")


async def test_connection_refused_is_unavailable_after_retries() -> None:
    async with FakeA1111() as fake:
        url = fake.url
    sleeps = Sleeps()
    async with A1111Backend(url, retry=RetryPolicy(retries=2, sleep=sleeps)) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(draw(), user="u1")
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_unavailable", "connect")
    assert len(sleeps.delays) == 2


async def test_slow_answer_past_the_timeout() -> None:
    async with FakeA1111() as fake, make(fake, timeout=0.2) as backend:
        fake.push_delay(3)
        started = time.monotonic()
        error = await failure(backend)
        assert time.monotonic() - started < 1.5
        assert len(fake.generate_calls) == 1
    assert error.code == "backend_timeout"


async def test_malformed_json_is_unavailable_and_not_repeated() -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        fake.push_malformed_json()
        error = await failure(backend)
        assert len(fake.generate_calls) == 1
    assert (error.code, error.params["reason"]) == ("backend_unavailable", "malformed_json")


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        (lambda f: f.push_not_an_image(), "not_an_image"),
        (lambda f: f.push_wrong_size(), "wrong_size"),
        (lambda f: f.push_bomb(), "not_an_image"),  # Pillow's DecompressionBombError, nothing decoded
        (lambda f: f.push_response(200, {"images": ["%%%not base64"], "info": "{}"}), "base64"),
        (lambda f: f.push_response(200, {"images": [], "info": "{}"}), "empty"),
    ],
    ids=["not-image", "wrong-size", "bomb", "base64", "none"],
)
async def test_bad_images_become_backend_bad_image_through_generation(plan: Any, reason: str) -> None:
    async with FakeA1111() as fake, make(fake) as backend:
        plan(fake)
        with pytest.raises(BackendError) as caught:
            await generate(backend, draw(), user="u1")
    assert (caught.value.code, caught.value.params["reason"]) == ("backend_bad_image", reason)


# -- check, configuration, secrets ------------------------------------------------------------------------


async def test_check_lists_models_without_generating() -> None:
    async with FakeA1111(auth=(USER, PASSWORD)) as fake:
        async with make(fake, auth=(USER, PASSWORD)) as backend:
            report = await backend.check()
        assert report.ok and fake.generate_calls == []
        found = {label.key: value for label, value in report.findings if isinstance(label, Msg)}
        models = found["check.label.models"]
        assert isinstance(models, Msg) and "sd_xl_base_1.0" in models.render("en") and models.params["count"] == 2
        assert isinstance(found["check.label.auth"], Msg) and USER in found["check.label.auth"].render("zh")
        assert found["check.label.active_model"] == "sd_xl_base_1.0.safetensors [31e35c80fc]"

        async with make(fake, auth=(USER, "not-the-password")) as backend:
            report = await backend.check()
        assert not report.ok
        problem = report.findings[-1][1]
        assert isinstance(problem, BackendError) and problem.code == "backend_auth_failed"


async def test_settings_configure_the_backend() -> None:
    base = {"SDBOT_BACKEND": "a1111"}
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env(base, env_file=None))
    assert (caught.value.code, caught.value.variable) == ("config_missing", "A1111_URL")

    secret = "onlyapasswordnocolon"
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env({**base, "A1111_URL": "http://127.0.0.1:9", "A1111_AUTH": secret}, None))
    assert (caught.value.code, caught.value.variable) == ("config_invalid", "A1111_AUTH")
    for lang in LANGUAGES:
        assert secret not in render_error(caught.value, lang) and "A1111_AUTH" in render_error(caught.value, lang)

    async with FakeA1111(auth=(USER, "pa:ss:word-123")) as fake:
        env = {**base, "A1111_URL": fake.url, "A1111_AUTH": f"{USER}:pa:ss:word-123", "SDBOT_BACKEND_TIMEOUT": "7"}
        async with create_backend(Settings.from_env(env, env_file=None)) as backend:
            assert isinstance(backend, A1111Backend)
            assert (await backend.check()).ok  # split at the first colon only


async def test_the_password_never_reaches_logs_errors_or_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    errors: list[BackendError] = []
    async with FakeA1111(auth=(USER, PASSWORD), duration=0.1) as fake:
        async with make(fake, auth=(USER, PASSWORD)) as backend:

            async def progress(fraction: float) -> None:
                pass

            await backend.generate(draw(n=2), user="u1", progress=progress)
            await backend.check()
            for plan in (fake.push_oom, fake.push_malformed_json, fake.push_not_an_image):
                plan()
                with pytest.raises(BackendError) as caught:
                    await generate(backend, draw(), user="u1")
                errors.append(caught.value)
        async with make(fake, auth=(USER, PASSWORD + "-wrong")) as backend:
            errors.append(await failure(backend))
            await backend.check()
    assert "HTTP Request" in caplog.text  # DEBUG records of httpx were really captured
    for secret in (PASSWORD, basic):
        assert secret not in caplog.text
        for error in errors:
            shown = [str(error), repr(error), str(error.as_dict()), *(render_error(error, lang) for lang in LANGUAGES)]
            assert not any(secret in text for text in shown)


async def test_sdbot_draw_writes_real_images_from_a1111(tmp_path: Path) -> None:
    async with FakeA1111(duration=0.01) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "A1111_", "MODELSLAB_"))}
        env.update({"SDBOT_BACKEND": "a1111", "A1111_URL": fake.url, "SDBOT_BACKEND_RETRIES": "0"})
        out = tmp_path / "imgs"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "draw", "--json", "--out", str(out),
            "harbour at night", "--size", "576x1024", "--n", "2", "--seed", "31", "--sampler", "DDIM",
            cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    data = json.loads(stdout)
    assert data["request"]["seed"] == 31 and data["request"]["sampler_index"] == "DDIM"
    paths = [Path(p) for p in data["images"]]
    assert len(paths) == 2
    for path in paths:
        path = path if path.is_absolute() else tmp_path / path
        assert size_of(path.read_bytes()) == (576, 1024)
    assert fake.generate_calls[0].body["sampler_name"] == "DDIM"
