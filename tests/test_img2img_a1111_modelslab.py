"""Drawing from a picture and upscaling on AUTOMATIC1111, ModelsLab and the offline placeholder, through the real
backend classes and httpx against the fakes on 127.0.0.1: A1111's ``/sdapi/v1/img2img`` body (the picture, the
strength, the size), its progress and errors, the Upscale button through ``/sdapi/v1/extra-single-image`` at exactly
twice the sides, upscaling off when the server lacks ``A1111_UPSCALER`` and ``sdbot check`` saying so; ModelsLab's
``/api/v6/images/img2img`` with the picture inline in base64 and its base64 answers; the placeholder's mix and
resize."""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from bot.backends import create_backend
from bot.backends.a1111 import A1111Backend
from bot.backends.base import GeneratedImage
from bot.backends.modelslab import ModelsLabBackend
from bot.backends.placeholder import PlaceholderBackend
from bot.config import Settings
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import Msg, render_error
from tests.backend_support import assert_image, fast_retry, sdbot, source
from tests.fakes.a1111 import FakeA1111
from tests.fakes.modelslab import FakeModelsLab, StoredImage

USER = user_key("telegram", 11)
KEY = "ml-key-img2img-5c1e"


# -- pictures ---------------------------------------------------------------------------------------------------


def from_picture(caps: Capabilities, text: str, width: int, height: int) -> DrawRequest:
    """``text`` drawn from a picture, validated as the core does (the default strength comes from ``caps``)."""
    request = parse_request(text, caps, picture=(width, height))
    assert (request.width, request.height) == (width, height)
    return request.with_source(source(width, height))


def upscale(width: int, height: int, **fields: Any) -> DrawRequest:
    """The Upscale button's request for a ``width`` x ``height`` picture, as ``Core.upscale`` builds it."""
    values: dict[str, Any] = {
        "prompt": "a fox",
        "seed": 5,
        "n": 1,
        "task": "upscale",
        "size": f"{2 * width}x{2 * height}",
    }
    values.update(fields)
    return DrawRequest(**values, source=source(width, height))


def rgb(data: bytes, size: tuple[int, int] | None = None) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        picture = img.convert("RGB")
    return picture if size is None or picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference per channel (0-255) between two pictures, ``b`` brought to ``a``'s size."""
    first = rgb(a)
    diff = ImageChops.difference(first, rgb(b, first.size))
    return sum(ImageStat.Stat(diff).mean) / 3


def assert_real_picture(data: bytes) -> None:
    """Not a blank: comparisons with it mean something."""
    assert len(rgb(data).getcolors(maxcolors=1 << 24) or ()) > 100


# -- AUTOMATIC1111 ----------------------------------------------------------------------------------------------


def a1111(fake: FakeA1111, **kwargs: Any) -> A1111Backend:
    options: dict[str, Any] = {"timeout": 10.0, "connect_timeout": 2.0, "retry": fast_retry()[0]}
    options.update({"progress_interval": 0.02, **kwargs})
    return A1111Backend(fake.url, **options)


async def test_a1111_draws_from_the_picture_through_img2img() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and caps.strength == 0.75
        text = "a fox in snow --size 1024x576 --strength 0.35 --seed 7 --negative fog --n 2 --steps 12"
        request = from_picture(caps, text, 1024, 576)
        generation = await generate(backend, request, user=USER)

    (call,) = fake.generate_calls
    assert call.path == "/sdapi/v1/img2img"
    body = call.body
    (init,) = body["init_images"]
    assert request.source is not None and base64.b64decode(init, validate=True) == request.source.data
    assert_real_picture(fake.img2img_inputs[0][0])
    assert rgb(fake.img2img_inputs[0][0]).size == (1024, 576)
    assert body["denoising_strength"] == 0.35 and body["resize_mode"] == 0
    assert (body["width"], body["height"], body["batch_size"], body["n_iter"]) == (1024, 576, 2, 1)
    assert (body["prompt"], body["negative_prompt"], body["seed"], body["steps"]) == ("a fox in snow", "fog", 7, 12)
    assert body["sampler_name"] == request.sampler_index and body["save_images"] is False
    assert "styles" not in body and "enable_hr" not in body  # as txt2img sends: no style, no hires pass
    assert [image.seed for image in generation.images] == [7, 8]
    for image in generation.images:
        assert_image(image, 1024, 576)
    assert generation.drawn.vary and generation.drawn.upscale  # the result offers Variations and Upscale


async def test_a1111_uses_its_own_default_strength_and_txt2img_without_a_picture() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        caps = await backend.capabilities()
        await generate(backend, from_picture(caps, "a fox --size 768x768", 768, 768), user=USER)
        await generate(backend, parse_request("a fox --size 768x768", caps), user=USER)
    drawn_from, plain = fake.generate_calls
    assert drawn_from.path == "/sdapi/v1/img2img" and drawn_from.body["denoising_strength"] == 0.75
    assert plain.path == "/sdapi/v1/txt2img"
    assert not {"init_images", "denoising_strength", "resize_mode"} & set(plain.body)


async def test_a1111_img2img_reports_progress_like_txt2img() -> None:
    seen: list[float] = []

    async def progress(fraction: float) -> None:
        seen.append(fraction)

    async with FakeA1111(duration=0.4) as fake, a1111(fake) as backend:
        caps = await backend.capabilities()
        request = from_picture(caps, "a fox --size 768x768 --seed 3", 768, 768)
        (image,) = await backend.generate(request, user=USER, progress=progress)
    assert_image(image, 768, 768)
    assert seen[-1] == 1.0
    assert any(0 < f < 1 for f in seen[:-1]), seen  # polled while the server was drawing
    assert seen == sorted(seen)


async def test_a1111_img2img_errors_map_like_txt2img() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        caps = await backend.capabilities()
        request = from_picture(caps, "a fox --size 768x768", 768, 768).with_seed(1)
        detail = [
            {"loc": ["body", "denoising_strength"], "msg": "value is not a valid float", "type": "type_error.float"}
        ]
        fake.push_response(422, {"detail": detail})
        with pytest.raises(BackendError) as invalid:
            await backend.generate(request, user=USER)
        assert (invalid.value.code, invalid.value.provider_code, invalid.value.user_fault) == (
            "backend_invalid_request",
            "validation",
            True,
        )
        fake.push_oom()
        with pytest.raises(BackendError) as oom:
            await backend.generate(request, user=USER)
        assert oom.value.provider_code == "out_of_memory"
        assert "--size" in render_error(oom.value, "en")


async def test_the_fake_a1111_validates_img2img_like_fastapi() -> None:
    async with FakeA1111() as fake, httpx.AsyncClient(base_url=fake.url) as client:
        wrong = await client.post("/sdapi/v1/img2img", json={"init_images": "abc", "denoising_strength": "x"})
        assert wrong.status_code == 422
        locations = sorted(tuple(e["loc"]) for e in wrong.json()["detail"])
        assert locations == [("body", "denoising_strength"), ("body", "init_images")]
        not_image = await client.post("/sdapi/v1/img2img", json={"init_images": [base64.b64encode(b"hi").decode()]})
        assert not_image.status_code == 500 and not_image.json()["detail"] == "Invalid encoded image"
        missing = await client.post("/sdapi/v1/img2img", json={"prompt": "x"})
        assert missing.status_code == 404 and missing.json()["detail"] == "Init image not found"
        picture = source(256, 192).data
        data_url = "data:image/png;base64," + base64.b64encode(picture).decode()
        ok = await client.post("/sdapi/v1/img2img", json={"init_images": [data_url], "width": 300, "height": 200})
        assert ok.status_code == 200
        (out,) = ok.json()["images"]
        assert rgb(base64.b64decode(out)).size == (296, 200)  # width x height, in multiples of 8
        assert fake.img2img_inputs[-1] == [picture]


async def test_a1111_upscales_through_extra_single_image_to_exactly_twice_the_sides() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        assert (await backend.capabilities()).upscale
        request = upscale(384, 256)
        generation = await generate(backend, request, user=USER)

    (call,) = fake.extras_calls
    body = call.body
    assert request.source is not None and base64.b64decode(body["image"], validate=True) == request.source.data
    assert (body["resize_mode"], body["upscaling_resize"], body["upscaler_1"]) == (0, 2, "R-ESRGAN 4x+")
    assert fake.generate_calls == []  # nothing drawn: only the picture enlarged
    (image,) = generation.images
    assert_image(image, 768, 512)
    assert_real_picture(image.data)
    assert distance(image.data, request.source.data) < 4  # the same picture, larger
    assert not generation.drawn.upscale and not generation.drawn.vary  # an upscale is an end


async def test_a1111_upscale_answers_of_another_factor_are_resized_and_other_shapes_refused() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        request = upscale(320, 240)
        assert request.source is not None
        four_times = rgb(request.source.data).resize((1280, 960))
        out = io.BytesIO()
        four_times.save(out, "PNG")
        fake.push_response(200, {"html_info": "<p></p>", "image": base64.b64encode(out.getvalue()).decode()})
        (image,) = await backend.generate(request, user=USER)
        assert_image(image, 640, 480)  # the 4x answer brought to exactly 2x, off the loop
        assert distance(image.data, request.source.data) < 4

        square = io.BytesIO()
        Image.new("RGB", (960, 960), "teal").save(square, "PNG")
        fake.push_response(200, {"html_info": "", "image": base64.b64encode(square.getvalue()).decode()})
        with pytest.raises(BackendError) as stretched:
            await backend.generate(request, user=USER)
        assert (stretched.value.code, stretched.value.params["reason"]) == ("backend_bad_image", "wrong_size")


async def test_a1111_without_the_upscaler_offers_no_upscale_and_check_lists_what_it_has() -> None:
    async with FakeA1111() as fake:
        async with a1111(fake, upscaler="4x-UltraSharp") as backend:
            caps = await backend.capabilities()
            assert caps.image_to_image and not caps.upscale
            report = await backend.check()
        assert report.ok  # our default turning off is a finding; an operator's choice fails (below)
        found = {label.key: value for label, value in report.findings if isinstance(label, Msg)}
        missing = found["check.label.upscale"]
        assert isinstance(missing, Msg) and missing.key == "check.a1111.upscaler_missing"
        for lang in ("en", "zh"):
            text = missing.render(lang)
            assert "4x-UltraSharp" in text and "R-ESRGAN 4x+" in text and "A1111_UPSCALER" in text
        assert isinstance(found["check.label.img2img"], Msg) and "0.75" in found["check.label.img2img"].render("en")

        async with a1111(fake, upscaler="4x-UltraSharp", upscaler_chosen=True) as backend:
            assert not (await backend.check()).ok

        async with a1111(fake, upscaler="r-esrgan 4X+") as backend:  # A1111's own spelling is sent
            assert (await backend.capabilities()).upscale
            await backend.generate(upscale(128, 128), user=USER)
        assert fake.extras_calls[-1].body["upscaler_1"] == "R-ESRGAN 4x+"

        async with a1111(fake, upscaler=None) as backend:
            assert not (await backend.capabilities()).upscale
            report = await backend.check()
        assert report.ok
        off = dict((label.key, value) for label, value in report.findings if isinstance(label, Msg))
        assert (
            isinstance(off["check.label.upscale"], Msg) and off["check.label.upscale"].key == "check.a1111.upscale_off"
        )


async def test_a1111_upscaler_gone_since_the_capabilities_is_an_operator_error_and_turns_upscale_off() -> None:
    async with FakeA1111() as fake, a1111(fake) as backend:
        assert (await backend.capabilities()).upscale
        fake.upscalers = []  # the server restarted without the ESRGAN models
        with pytest.raises(BackendError) as gone:
            await backend.generate(upscale(256, 256), user=USER)
        assert (gone.value.code, gone.value.provider_code) == ("backend_config", "unknown_upscaler")
        assert "Invalid upscaler" in gone.value.params["provider_message"]
        assert "R-ESRGAN 4x+" in render_error(gone.value, "en") and "A1111_UPSCALER" in render_error(gone.value, "zh")
        assert not (await backend.capabilities()).upscale  # asked afresh


async def test_the_fake_a1111_lists_upscalers_and_refuses_unknown_ones() -> None:
    async with FakeA1111() as fake, httpx.AsyncClient(base_url=fake.url) as client:
        listed = (await client.get("/sdapi/v1/upscalers")).json()
        assert [u["name"] for u in listed][:3] == ["None", "Lanczos", "Nearest"]
        assert {"name": "R-ESRGAN 4x+", "scale": 4}.items() <= listed[3].items()
        picture = base64.b64encode(source(100, 60).data).decode()
        unknown = await client.post("/sdapi/v1/extra-single-image", json={"image": picture, "upscaler_1": "x"})
        assert unknown.status_code == 400 and unknown.json()["detail"].startswith("Invalid upscaler")
        bad_mode = await client.post("/sdapi/v1/extra-single-image", json={"image": picture, "resize_mode": 3})
        assert bad_mode.status_code == 422 and bad_mode.json()["detail"][0]["loc"] == ["body", "resize_mode"]
        answer = await client.post(
            "/sdapi/v1/extra-single-image", json={"image": picture, "upscaler_1": "Lanczos", "upscaling_resize": 3}
        )
        assert rgb(base64.b64decode(answer.json()["image"])).size == (300, 180)
        assert isinstance(answer.json()["html_info"], str)


async def test_a1111_upscaler_setting_and_sdbot_check(tmp_path: Path) -> None:
    async with FakeA1111() as fake:
        env = {"SDBOT_BACKEND": "a1111", "A1111_URL": fake.url}
        settings = Settings.from_env({**env, "A1111_UPSCALER": "off"}, env_file=None)
        async with create_backend(settings) as backend:
            assert not (await backend.capabilities()).upscale
        async with create_backend(Settings.from_env({**env, "A1111_UPSCALER": "ESRGAN_4x"}, env_file=None)) as backend:
            assert (await backend.capabilities()).upscale
            await backend.generate(upscale(64, 64), user=USER)
        assert fake.extras_calls[-1].body["upscaler_1"] == "ESRGAN_4x"

        code, out, err = await sdbot("check", env=env, cwd=tmp_path)
        assert code == 0, out + err
        assert "R-ESRGAN 4x+" in out
        code, out, err = await sdbot("check", env={**env, "A1111_UPSCALER": "SwinIR_4x"}, cwd=tmp_path)
        assert code != 0 and "SwinIR_4x" in out and "A1111_UPSCALER" in out and "ESRGAN_4x" in out


# -- ModelsLab --------------------------------------------------------------------------------------------------


def modelslab(fake: FakeModelsLab, **kwargs: Any) -> ModelsLabBackend:
    options: dict[str, Any] = {"base_url": fake.url, "timeout": 10.0, "connect_timeout": 2.0, "poll_deadline": 5.0}
    options.update({"retry": fast_retry()[0], "poll_min": 0.0, "poll_max": 0.05, **kwargs})
    return ModelsLabBackend(KEY, **options)


async def test_modelslab_draws_from_the_picture_inline_in_base64() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, modelslab(fake) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and caps.strength == 0.7 and not caps.upscale
        request = from_picture(caps, "a fox --size 768x1024 --strength 0.2 --seed 9 --n 2 --negative fog", 768, 1024)
        generation = await generate(backend, request, user=USER)

    (call,) = fake.generate_calls
    assert call.path == "/api/v6/images/img2img"
    body = call.body
    prefix, _, encoded = body["init_image"].partition(",")
    assert prefix == "data:image/png;base64"
    assert request.source is not None and base64.b64decode(encoded, validate=True) == request.source.data
    assert fake.img2img_inputs == [request.source.data]
    assert (body["strength"], body["base64"], body["key"]) == (0.2, "yes", KEY)
    assert (body["width"], body["height"], body["samples"], body["seed"]) == (768, 1024, 2, 9)
    assert (body["prompt"], body["negative_prompt"]) == ("a fox", "fog")
    assert all(name.endswith(".base64") for name in fake.image_gets)  # base64 answers, decoded on arrival
    assert len(generation.images) == 2 and generation.images[0].seed == 9
    for image in generation.images:
        assert_image(image, 768, 1024)
        assert distance(image.data, request.source.data) < 40  # strength 0.2: still mostly the picture


async def test_modelslab_default_strength_polling_and_text2img_unchanged() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, modelslab(fake) as backend:
        caps = await backend.capabilities()
        fake.push_processing(pending_fetches=2)
        request = from_picture(caps, "a fox --size 768x768", 768, 768).with_seed(4)
        (image,) = (await generate(backend, request, user=USER)).images
        assert_image(image, 768, 768)
        assert len(fake.fetch_calls) == 3  # two "processing", then the answer
        await generate(backend, parse_request("a fox --size 768x768", caps), user=USER)
    drawn_from, plain = fake.generate_calls
    assert drawn_from.body["strength"] == 0.7
    assert plain.path == "/api/v6/images/text2img" and plain.body["base64"] == "no"
    assert "init_image" not in plain.body and "strength" not in plain.body


async def test_modelslab_img2img_answers_with_inline_base64_or_plain_links() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, modelslab(fake) as backend:
        caps = await backend.capabilities()
        request = from_picture(caps, "a fox --size 576x1024", 576, 1024).with_seed(2)
        assert request.source is not None
        inline = base64.b64encode(request.source.data).decode()
        meta = {"seed": 2}
        fake.push_response(200, {"status": "success", "id": 1, "output": [inline], "meta": meta})
        (image,) = await backend.generate(request, user=USER)
        assert image.data == request.source.data

        fake.stored["plain.png"] = StoredImage(request.source.data, "image/png")
        link = f"{fake.url}/generations/plain.png"
        fake.push_response(200, {"status": "success", "id": 2, "output": [link], "meta": meta})
        (image,) = await backend.generate(request, user=USER)
        assert image.data == request.source.data

        fake.stored["junk.base64"] = StoredImage(b"<html>not base64</html>", "text/plain")
        fake.push_response(200, {"status": "success", "id": 3, "output": [f"{fake.url}/generations/junk.base64"]})
        with pytest.raises(BackendError) as junk:
            await backend.generate(request, user=USER)
        assert (junk.value.code, junk.value.params["reason"]) == ("backend_bad_image", "base64")


async def test_modelslab_img2img_refusals() -> None:
    async with FakeModelsLab(api_key=KEY) as fake, modelslab(fake) as backend:
        caps = await backend.capabilities()
        request = from_picture(caps, "a fox --size 768x768", 768, 768).with_seed(1)
        fake.push_error({"init_image": ["The init image must be a valid image."]})
        with pytest.raises(BackendError) as invalid:
            await backend.generate(request, user=USER)
        assert (invalid.value.code, invalid.value.user_fault) == ("backend_invalid_request", True)
        with pytest.raises(BackendError) as no_upscale:
            await backend.generate(dataclasses.replace(request, task="upscale", size="1536x1536"), user=USER)
        assert no_upscale.value.code == "backend_config"
    async with FakeModelsLab(api_key=KEY) as fake, httpx.AsyncClient(base_url=fake.url) as client:
        picture = base64.b64encode(source(64, 64).data).decode()
        plain = {"key": KEY, "prompt": "a fox", "init_image": picture}
        no_flag = (await client.post("/api/v6/images/img2img", json=plain)).json()
        assert no_flag["status"] == "error" and "init_image" in no_flag["message"]
        missing = (await client.post("/api/v6/images/img2img", json={"key": KEY, "prompt": "x", "strength": 2})).json()
        assert set(missing["message"]) == {"init_image", "strength"}
        url = {**plain, "init_image": "https://example.com/fox.png", "width": 256, "height": 256}
        assert (await client.post("/api/v6/images/img2img", json=url)).json()["status"] == "success"


# -- the placeholder --------------------------------------------------------------------------------------------


async def test_the_placeholder_draws_from_pictures_by_strength() -> None:
    backend = PlaceholderBackend()
    caps = await backend.capabilities()
    assert caps.image_to_image and caps.strength == 0.6 and caps.upscale
    near = await generate(
        backend, from_picture(caps, "a fox --size 1024x576 --strength 0.1 --n 2 --seed 3", 1024, 576), user=USER
    )
    # The same seed throughout: the same gradient mixed in, so only the strength tells the three apart.
    far = await generate(
        backend, from_picture(caps, "a fox --size 1024x576 --strength 0.9 --seed 3", 1024, 576), user=USER
    )
    default = await generate(backend, from_picture(caps, "a fox --size 1024x576 --seed 3", 1024, 576), user=USER)
    assert default.request.strength == 0.6
    assert near.request.source is not None
    picture = near.request.source.data
    images: list[GeneratedImage] = [*near.images, *far.images, *default.images]
    for image in images:
        assert_image(image, 1024, 576)
    assert near.images[0].seed is not None and near.images[1].seed == near.images[0].seed + 1
    assert distance(near.images[0].data, picture) < distance(default.images[0].data, picture)
    assert distance(default.images[0].data, picture) < distance(far.images[0].data, picture)
    assert near.drawn.upscale and near.drawn.vary


async def test_the_placeholder_upscales_to_exactly_twice_the_sides() -> None:
    backend = PlaceholderBackend()
    request = upscale(300, 200)
    generation = await generate(backend, request, user=USER)
    (image,) = generation.images
    assert_image(image, 600, 400)
    assert request.source is not None
    assert distance(image.data, request.source.data) < 25  # the same picture (a band marks it a placeholder)
