"""ComfyUI drawing from a picture and upscaling, through the real httpx and aiohttp clients against the fake ComfyUI on
127.0.0.1: the picture uploaded (``/upload/image``) and read by LoadImage, the shipped workflow's empty latent
replaced by LoadImage -> VAEEncode with ``denoise`` the strength, --n as RepeatLatentBatch (or one prompt per
picture without it), an operator's COMFYUI_IMG2IMG_WORKFLOW with COMFYUI_BINDINGS, the Upscale button's graph and
its exact 2x picture, upscaling off without the model, and sdbot check naming a missing upscale model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.backends.comfyui.backend import ComfyUIBackend
from bot.backends.comfyui.workflow import load, load_img2img
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import ConfigError, DrawError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import assert_image, fast_retry, photo, pixels, sdbot, source
from tests.fakes.comfyui import FakeComfyUI, img2img_graph

USER = user_key("telegram", 8)
UPSCALER = "RealESRGAN_x2.pth"


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(upscale_models=(UPSCALER, "4x-UltraSharp.pth")) as server:
        yield server


def make(fake: FakeComfyUI, **kwargs: Any) -> ComfyUIBackend:
    return ComfyUIBackend(fake.url, timeout=10.0, connect_timeout=2.0, retry=fast_retry()[0], **kwargs)


def without(fake: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, *classes: str) -> None:
    """The fake as a server that lacks the node classes ``classes`` (in /object_info and in validation)."""
    specs = fake._specs
    monkeypatch.setattr(fake, "_specs", lambda: {k: v for k, v in specs().items() if k not in classes})


def nodes_of(graph: dict[str, Any], class_type: str) -> list[str]:
    return [node_id for node_id, node in graph.items() if node["class_type"] == class_type]


def from_picture(caps: Any, text: str, width: int, height: int) -> DrawRequest:
    request = parse_request(text, caps, picture=(width, height))
    assert (request.width, request.height) == (width, height)
    return request.with_source(source(width, height))


# -- image-to-image with the shipped workflow ---------------------------------------------------------------------


async def test_the_picture_is_uploaded_and_the_shipped_workflow_draws_from_it(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and caps.strength == 0.6
        request = from_picture(caps, "a fox in snow --size 1024x576 --strength 0.35 --seed 7 --negative fog", 1024, 576)
        generation = await generate(backend, request, user=USER)

    (name,) = fake.uploads
    uploaded = fake.file(name, subfolder="sdbot", type="input")
    assert uploaded is not None
    size, uploaded_pixels = pixels(uploaded)
    assert size == (1024, 576)
    assert request.source is not None and uploaded_pixels == pixels(request.source.data)[1]
    assert len(set(uploaded_pixels)) > 100  # a real picture, not a blank: the comparison means something

    (graph,) = fake.prompts.values()
    assert nodes_of(graph, "EmptyLatentImage") == []
    (load_node,) = nodes_of(graph, "LoadImage")
    (encode,) = nodes_of(graph, "VAEEncode")
    assert graph[load_node]["inputs"]["image"] == f"sdbot/{name}"
    assert graph[encode]["inputs"] == {"pixels": [load_node, 0], "vae": ["4", 2]}  # the checkpoint's VAE
    sampler = graph["3"]["inputs"]
    assert sampler["latent_image"] == [encode, 0] and sampler["denoise"] == 0.35 and sampler["seed"] == 7
    assert (graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"]) == ("a fox in snow", "fog")

    (image,) = generation.images
    assert_image(image, 1024, 576)
    assert image.seed == 7


async def test_without_strength_the_default_is_used(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        caps = await backend.capabilities()
        await generate(backend, from_picture(caps, "a fox --size 768x768", 768, 768), user=USER)
    (graph,) = fake.prompts.values()
    assert graph["3"]["inputs"]["denoise"] == caps.strength == 0.6


async def test_n_pictures_from_one_picture_in_one_prompt_with_repeat_latent_batch(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        caps = await backend.capabilities()
        generation = await generate(backend, from_picture(caps, "a fox --n 3 --seed 40", 1024, 768), user=USER)
    assert len(fake.uploads) == 1
    (graph,) = fake.prompts.values()
    (repeat,) = nodes_of(graph, "RepeatLatentBatch")
    (encode,) = nodes_of(graph, "VAEEncode")
    assert graph[repeat]["inputs"] == {"samples": [encode, 0], "amount": 3}
    assert graph["3"]["inputs"]["latent_image"] == [repeat, 0]
    assert len(generation.images) == 3
    for image in generation.images:
        assert_image(image, 1024, 768)
    assert len({image.data for image in generation.images}) == 3  # three pictures, not one thrice


async def test_without_repeat_latent_batch_each_picture_is_a_prompt_of_its_own(
    fake: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(fake, monkeypatch, "RepeatLatentBatch")
    async with make(fake) as backend:
        caps = await backend.capabilities()
        generation = await generate(backend, from_picture(caps, "a fox --n 2 --seed 10", 768, 1024), user=USER)
    assert len(generation.images) == 2 and len(fake.uploads) == 1  # one upload, read by both prompts
    graphs = list(fake.prompts.values())
    assert sorted(g["3"]["inputs"]["seed"] for g in graphs) == [10, 11]
    assert all(not nodes_of(g, "RepeatLatentBatch") and not nodes_of(g, "EmptyLatentImage") for g in graphs)
    assert {g[nodes_of(g, "LoadImage")[0]]["inputs"]["image"] for g in graphs} == {f"sdbot/{fake.uploads[0]}"}
    for image in generation.images:
        assert_image(image, 768, 1024)


async def test_each_job_uploads_under_a_name_of_its_own(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        caps = await backend.capabilities()
        for seed in (1, 2):
            await generate(backend, from_picture(caps, f"a fox --seed {seed}", 1024, 1024), user=USER)
    assert len(set(fake.uploads)) == 2


async def test_without_load_image_or_vae_encode_there_is_no_image_to_image(
    fake: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(fake, monkeypatch, "VAEEncode")
    async with make(fake) as backend:
        caps = await backend.capabilities()
    assert not caps.image_to_image
    with pytest.raises(DrawError) as caught:
        parse_request("a fox", caps, picture=(1024, 1024))
    assert caught.value.code == "picture_unsupported"


async def test_an_operators_own_text_to_image_workflow_alone_draws_from_no_picture(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(load(None).graph), encoding="utf-8")
    workflow = load(path)
    assert load_img2img(None, None, workflow) is None
    async with make(fake, workflow=workflow) as backend:
        assert not (await backend.capabilities()).image_to_image


# -- an operator's image-to-image workflow ------------------------------------------------------------------------


def _operators_graph() -> dict[str, Any]:
    """An exported image-to-image graph with two LoadImage nodes (a second one for a mask nobody wired yet), so
    nothing can be found: the operator names the inputs in COMFYUI_BINDINGS."""
    graph = img2img_graph("example.png", denoise=0.75, ckpt_name="sd_xl_base_1.0.safetensors")
    graph["20"] = {"class_type": "LoadImage", "inputs": {"image": "mask.png"}}
    graph["9"]["inputs"]["filename_prefix"] = "mine"
    return graph


async def test_an_operators_img2img_workflow_with_bindings(fake: FakeComfyUI, tmp_path: Path) -> None:
    path = tmp_path / "img2img.json"
    path.write_text(json.dumps(_operators_graph()), encoding="utf-8")
    bindings = "prompt=6.text,seed=3.seed,steps=3.steps,width=5.width,height=5.height,image=10.image,denoise=3.denoise"
    settings = Settings.from_env(
        {
            "SDBOT_BACKEND": "comfyui",
            "COMFYUI_URL": fake.url,
            "COMFYUI_IMG2IMG_WORKFLOW": str(path),
            "COMFYUI_BINDINGS": bindings,
        },
        env_file=None,
    )
    options = ComfyUIBackend.options(settings)
    assert options["img2img"].source == str(path) and options["img2img"].bindings["image"] == ("10", "image")
    async with make(fake, workflow=options["workflow"], img2img=options["img2img"]) as backend:
        caps = await backend.capabilities()
        assert caps.image_to_image and "size" not in caps.unsupported and "steps" not in caps.unsupported
        text_only = await generate(backend, parse_request("a blue barn --size 768x1024 --seed 2", caps), user=USER)
        assert_image(text_only.images[0], 768, 1024)  # the same bindings serve the text-to-image workflow
        fake.prompts.clear()
        request = from_picture(caps, "a red barn --strength 0.5 --seed 3 --steps 12", 1024, 1024)
        generation = await generate(backend, request, user=USER)
        report = await backend.check()  # example.png and mask.png are not on the server: the picture is uploaded
    (graph,) = fake.prompts.values()
    assert graph["10"]["inputs"]["image"] == f"sdbot/{fake.uploads[0]}"
    assert graph["20"]["inputs"]["image"] == "mask.png"  # the other LoadImage is left as it was
    assert (graph["3"]["inputs"]["denoise"], graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"]) == (
        0.5,
        3,
        12,
    )
    assert graph["6"]["inputs"]["text"] == "a red barn" and graph["9"]["inputs"]["filename_prefix"] == "mine"
    assert_image(generation.images[0], 1024, 1024)
    assert report.ok, report.findings
    rendered = [v.render("en") for _, v in report.findings if hasattr(v, "render")]
    assert any(str(path) in text and "0.6" in text for text in rendered)


async def test_an_operators_img2img_workflow_is_read_from_its_sampler_and_load_image(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    graph = img2img_graph("example.png")
    graph["30"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["11", 0], "amount": 1}}
    graph["3"]["inputs"]["latent_image"] = ["30", 0]
    path = tmp_path / "img2img.json"
    path.write_text(json.dumps(graph), encoding="utf-8")
    workflow = load_img2img(path, None, load(None))
    assert workflow is not None
    assert workflow.bindings["image"] == ("10", "image") and workflow.bindings["denoise"] == ("3", "denoise")
    assert workflow.bindings["batch"] == ("30", "amount")
    async with make(fake, img2img=workflow) as backend:
        caps = await backend.capabilities()
        generation = await generate(backend, from_picture(caps, "a fox --n 2", 576, 1024), user=USER)
    (queued,) = fake.prompts.values()
    assert queued["30"]["inputs"]["amount"] == 2 and len(nodes_of(queued, "RepeatLatentBatch")) == 1
    assert len(generation.images) == 2


@pytest.mark.parametrize(
    ("change", "bindings", "said"),
    [
        ("no_load_image", None, "LoadImage"),
        ("advanced", None, "denoise"),
        (None, "prompt=6.text,image=10.image", "denoise"),
        (None, "prompt=6.text,denoise=3.denoise,image=99.image", "99.image"),
    ],
)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_an_img2img_workflow_without_its_inputs_is_a_clear_error(
    tmp_path: Path, change: str | None, bindings: str | None, said: str, lang: str
) -> None:
    graph = img2img_graph("example.png")
    if change == "no_load_image":
        graph["10"]["class_type"] = "LoadImageFromUrl"
    if change == "advanced":
        graph["3"]["class_type"] = "KSamplerAdvanced"
        graph["3"]["inputs"]["noise_seed"] = graph["3"]["inputs"].pop("seed")
        del graph["3"]["inputs"]["denoise"]
    path = tmp_path / "img2img.json"
    path.write_text(json.dumps(graph), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_img2img(path, bindings, load(None))
    text = render_error(caught.value, lang)
    assert caught.value.code == "workflow_invalid" and said in text and str(path) in text
    assert caught.value.variable == ("COMFYUI_BINDINGS" if bindings else "COMFYUI_IMG2IMG_WORKFLOW")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_image_bindings_without_an_img2img_workflow_are_refused(lang: str) -> None:
    bindings = "prompt=6.text,image=10.image"
    workflow = load(None, bindings)  # the text-to-image workflow leaves image= to the image-to-image one
    assert "image" not in workflow.bindings
    with pytest.raises(ConfigError) as caught:
        load_img2img(None, bindings, workflow)
    assert caught.value.variable == "COMFYUI_BINDINGS"
    assert "COMFYUI_IMG2IMG_WORKFLOW" in render_error(caught.value, lang)


# -- upscale --------------------------------------------------------------------------------------------------------


def upscale_request(width: int, height: int) -> DrawRequest:
    return DrawRequest(
        prompt="a fox", size=f"{2 * width}x{2 * height}", n=1, task="upscale", source=source(width, height)
    )


@pytest.mark.parametrize("model", [UPSCALER, "4x-UltraSharp.pth"])
async def test_upscale_gives_exactly_twice_the_sides(fake: FakeComfyUI, model: str) -> None:
    async with make(fake, upscale_model=model) as backend:
        caps = await backend.capabilities()
        assert caps.upscale
        request = upscale_request(512, 384)
        generation = await generate(backend, request, user=USER)
    (name,) = fake.uploads
    uploaded = fake.file(name, subfolder="sdbot", type="input")
    assert uploaded is not None and request.source is not None
    assert pixels(uploaded) == pixels(request.source.data)
    (graph,) = fake.prompts.values()
    assert sorted(node["class_type"] for node in graph.values()) == [
        "ImageScale",
        "ImageUpscaleWithModel",
        "LoadImage",
        "SaveImage",
        "UpscaleModelLoader",
    ]
    (load_node,) = nodes_of(graph, "LoadImage")
    (loader,) = nodes_of(graph, "UpscaleModelLoader")
    (upscale,) = nodes_of(graph, "ImageUpscaleWithModel")
    (scale,) = nodes_of(graph, "ImageScale")
    (save,) = nodes_of(graph, "SaveImage")
    assert graph[load_node]["inputs"]["image"] == f"sdbot/{name}" and graph[loader]["inputs"]["model_name"] == model
    assert graph[upscale]["inputs"] == {"upscale_model": [loader, 0], "image": [load_node, 0]}
    scaled = graph[scale]["inputs"]
    assert (scaled["image"], scaled["width"], scaled["height"]) == ([upscale, 0], 1024, 768)
    assert scaled["upscale_method"] == "lanczos" and graph[save]["inputs"]["images"] == [scale, 0]
    (image,) = generation.images
    assert_image(image, 1024, 768)


async def test_upscale_is_off_without_the_model_or_when_the_server_lacks_it(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        assert not (await backend.capabilities()).upscale
    async with make(fake, upscale_model="") as backend:
        assert not (await backend.capabilities()).upscale
    async with make(fake, upscale_model="nowhere_x2.pth") as backend:
        caps = await backend.capabilities()
        assert not caps.upscale and caps.image_to_image  # drawing from pictures does not depend on it


async def test_upscale_is_off_when_the_server_lacks_an_upscale_node(
    fake: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(fake, monkeypatch, "ImageUpscaleWithModel")
    async with make(fake, upscale_model=UPSCALER) as backend:
        assert not (await backend.capabilities()).upscale
        report = await backend.check()
    assert not report.ok and "ImageUpscaleWithModel" in report.findings[-1][1].params["provider_message"]  # type: ignore[union-attr]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_check_names_a_missing_upscale_model(fake: FakeComfyUI, lang: str) -> None:
    async with make(fake, upscale_model="4x_foolhardy_Remacri.pth") as backend:
        report = await backend.check()
    assert not report.ok
    problem = report.findings[-1][1]
    said = problem.params["provider_message"]  # type: ignore[union-attr]
    assert "COMFYUI_UPSCALE_MODEL" in said and "4x_foolhardy_Remacri.pth" in said and UPSCALER in said
    assert "sdbot check" in render_error(problem, lang)  # type: ignore[arg-type]


async def test_check_reports_image_to_image_and_upscale(fake: FakeComfyUI) -> None:
    async with make(fake, upscale_model=UPSCALER) as backend:
        report = await backend.check()
    assert report.ok and fake.generate_calls == [] and fake.uploads == []
    rendered = {label.render("en"): value.render("en") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert "default" in rendered["Image-to-image"] and UPSCALER in rendered["Upscale"]
    async with make(fake) as backend:
        report = await backend.check()
    rendered = {label.render("zh"): value.render("zh") for label, value in report.findings if hasattr(value, "render")}  # type: ignore[union-attr]
    assert report.ok and "COMFYUI_UPSCALE_MODEL" in rendered["放大"]


# -- the operator's way in ------------------------------------------------------------------------------------------


async def test_sdbot_draw_from_a_picture_and_check_with_a_missing_upscale_model(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(photo(900, 600))
    env = {"SDBOT_BACKEND": "comfyui", "COMFYUI_URL": fake.url}
    code, out, err = await sdbot(
        "draw", "--json", "--out", str(tmp_path), "--image", str(picture), "a cat --strength 0.3", env=env, cwd=tmp_path
    )
    assert code == 0, err
    (graph,) = fake.prompts.values()
    assert graph["3"]["inputs"]["denoise"] == 0.3 and not nodes_of(graph, "EmptyLatentImage")
    (name,) = fake.uploads
    uploaded = fake.file(name, subfolder="sdbot", type="input")
    assert uploaded is not None
    (path,) = json.loads(out)["images"]
    with Image.open(path) as drawn:
        assert pixels(uploaded)[0] == drawn.size  # drawn at the size the picture was fitted to

    code, out, err = await sdbot("check", env={**env, "COMFYUI_UPSCALE_MODEL": "missing_x4.pth"}, cwd=tmp_path)
    assert code != 0 and "missing_x4.pth" in out + err and "COMFYUI_UPSCALE_MODEL" in out + err
    code, out, err = await sdbot("check", env={**env, "COMFYUI_UPSCALE_MODEL": UPSCALER}, cwd=tmp_path)
    assert code == 0, out + err
