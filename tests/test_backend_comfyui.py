"""ComfyUI through the real httpx and aiohttp clients against the fake ComfyUI on 127.0.0.1: the filled workflow,
progress over the websocket (and /history polled without it), pictures from /view, samplers from /object_info,
a cancelled or late prompt interrupted and dequeued, node_errors and execution errors as outcomes with zh/en words,
check, sdbot draw, and /cancel of a job being drawn through the core."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image

from bot.backends.comfyui.backend import ComfyUIBackend
from bot.backends.comfyui.workflow import load
from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.draw.validation import parse_request
from bot.errors import BackendError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from tests.backend_support import fast_retry, sdbot
from tests.fakes.comfyui import FakeComfyUI
from tests.pipeline_support import RecordingSink, make_settings

USER = user_key("telegram", 4)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until the fake has done something it records in a list."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the fake records into plain lists
            await asyncio.sleep(0.01)


ANN = UserRef("telegram", "1", "en", "Ann")
DM = ChatRef("telegram", "1", False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as server:
        yield server


def make(fake: FakeComfyUI, timeout: float = 10.0, **kwargs: object) -> ComfyUIBackend:
    return ComfyUIBackend(fake.url, timeout=timeout, connect_timeout=2.0, retry=fast_retry()[0], **kwargs)  # type: ignore[arg-type]


async def test_a_batch_is_drawn_with_progress_and_fetched_from_view(fake: FakeComfyUI) -> None:
    seen: list[float] = []

    async def progress(fraction: float) -> None:
        seen.append(fraction)

    async with make(fake) as backend:
        caps = await backend.capabilities()
        text = 'a fox --size 768x1024 --n 2 --steps 12 --cfg 6.5 --sampler "DPM++ 2M Karras" --negative fog --seed 77'
        generation = await generate(backend, parse_request(text, caps), user=USER, progress=progress)
    (graph,) = fake.prompts.values()
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (77, 12, 6.5)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert graph["5"]["inputs"] == {"width": 768, "height": 1024, "batch_size": 2}
    assert (graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"]) == ("a fox", "fog")
    assert [(i.width, i.height) for i in generation.images] == [(768, 1024)] * 2
    assert generation.images[0].seed == 77 and seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert "DPM++ 2M Karras" in caps.samplers and "style" in caps.unsupported and caps.seed


async def test_without_a_websocket_the_history_is_polled(fake: FakeComfyUI, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_socket(self: ComfyUIBackend, client_id: str) -> None:
        return None

    monkeypatch.setattr(ComfyUIBackend, "_open_ws", no_socket)
    async with make(fake) as backend:
        generation = await generate(backend, parse_request("a fox --seed 3", await backend.capabilities()), user=USER)
    assert len(generation.images) == 1


async def test_a_workflow_without_batch_runs_one_prompt_per_picture(fake: FakeComfyUI, tmp_path: Path) -> None:
    graph = json.loads(json.dumps(load(None).graph))
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph), encoding="utf-8")
    workflow = load(path, "prompt=6.text,seed=3.seed,width=5.width,height=5.height")
    async with make(fake, workflow=workflow) as backend:
        caps = await backend.capabilities()
        assert {"steps", "cfg", "sampler", "negative"} <= caps.unsupported and "n" not in caps.unsupported
        generation = await generate(backend, parse_request("a fox --seed 10 --n 2", caps), user=USER)
    assert len(generation.images) == 2
    assert sorted(g["3"]["inputs"]["seed"] for g in fake.prompts.values()) == [10, 11]
    assert all(g["5"]["inputs"]["batch_size"] == 1 for g in fake.prompts.values())


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_an_out_of_memory_error_is_an_outcome_for_the_user_and_words_for_the_operator(
    fake: FakeComfyUI, lang: str
) -> None:
    fake.push_execution_error()
    async with make(fake) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("a fox --seed 5", await backend.capabilities()), user=USER)
    error = caught.value
    assert (error.code, error.provider_code) == ("backend_unavailable", "execution_error")
    assert "OutOfMemoryError" in error.params["provider_message"]
    assert "GPU" in render_error(error, lang) or "显存" in render_error(error, lang)


async def test_a_missing_checkpoint_is_a_configuration_error_and_check_names_it(fake: FakeComfyUI) -> None:
    workflow = load(None).with_checkpoint("missing.safetensors")
    async with make(fake, workflow=workflow) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("a fox --seed 5", await backend.capabilities()), user=USER)
        report = await backend.check()
    assert (caught.value.code, caught.value.provider_code) == ("backend_config", "prompt_outputs_failed_validation")
    assert "missing.safetensors" in caught.value.params["provider_message"]
    assert not report.ok and "missing.safetensors" in report.findings[-1][1].params["provider_message"]  # type: ignore[union-attr]
    assert "sdbot check" in render_error(caught.value, "en") and "sdbot check" in render_error(caught.value, "zh")


async def test_check_shows_the_server_and_queues_nothing(fake: FakeComfyUI) -> None:
    async with make(fake) as backend:
        report = await backend.check()
    assert report.ok and fake.generate_calls == []
    rendered = [value.render("en") for _, value in report.findings if hasattr(value, "render")]
    assert any("ComfyUI" in text for text in rendered)


async def test_a_cancelled_prompt_is_interrupted_and_a_late_one_too(fake: FakeComfyUI) -> None:
    fake.push_hang()
    async with make(fake) as backend:
        task = asyncio.create_task(generate(backend, parse_request("a fox --seed 1"), user=USER))
        await until(lambda: bool(fake.started))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.interrupts and fake.interrupts[0] == {"prompt_id": fake.started[0]}
    fake.push_hang()
    async with make(fake, timeout=0.5) as backend:
        with pytest.raises(BackendError) as caught:
            await generate(backend, parse_request("a fox --seed 2"), user=USER)
    assert caught.value.code == "backend_timeout" and fake.interrupts[-1] == {"prompt_id": fake.started[-1]}


async def test_cancel_of_a_job_being_drawn_interrupts_comfyui(fake: FakeComfyUI, tmp_path: Path) -> None:
    fake.push_hang()
    backend = make(fake)
    async with backend:
        core = await Core.open(make_settings(tmp_path / "db", rate_per_minute=0), backend)
        sink = RecordingSink()
        core.register_sink("telegram", sink)
        await core.start()
        try:
            job = await core.submit(ANN, DM, "/draw a fox", {})
            await until(lambda: bool(fake.started))
            assert [j.id for j in await core.cancel(ANN, job.id)] == [job.id]
            await core.wait_idle()
            await until(lambda: bool(fake.interrupts))
            cancelled = await core.get_job(job.id)
            assert cancelled is not None and (cancelled.status, cancelled.charged) == ("cancelled", 0)
            assert fake.interrupts == [{"prompt_id": fake.started[0]}] and job.id not in sink.generations
        finally:
            await core.close()


async def test_sdbot_draw_on_comfyui(fake: FakeComfyUI, tmp_path: Path) -> None:
    env = {"SDBOT_BACKEND": "comfyui", "COMFYUI_URL": fake.url}
    code, out, err = await sdbot(
        "draw", "--json", "--out", str(tmp_path), "a cat --size 1024x576 --n 2", env=env, cwd=tmp_path
    )
    assert code == 0, err
    paths = json.loads(out)["images"]
    assert len(paths) == 2
    with Image.open(paths[0]) as img:
        assert img.size == (1024, 576)
    code, out, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 0, out + err
    code, _, err = await sdbot("draw", "x", env={**env, "COMFYUI_BINDINGS": "prompt=99.text"}, cwd=tmp_path)
    assert code == 3 and "COMFYUI_BINDINGS" in err
