"""The fake ComfyUI (tests/fakes/comfyui.py), driven directly with httpx and aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from PIL import Image

from tests.fakes.comfyui import (
    OOM_TIPS,
    SAMPLERS,
    FakeComfyUI,
    img2img_graph,
    txt2img_graph,
    with_scale_by,
    with_upscale,
)
from tests.fakes.images import png_size

SMALL = {"width": 64, "height": 64, "steps": 3}


def http(fake: FakeComfyUI) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.url, timeout=httpx.Timeout(10.0))


def png(width: int, height: int, colour: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Feed:
    """What one websocket client received: JSON messages and binary frames, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages if m["type"] not in ("progress_state", "status")]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == kind]


@asynccontextmanager
async def websocket(fake: FakeComfyUI, client_id: str | None = None) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    query = f"?clientId={client_id}" if client_id else ""
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{fake.url}/ws{query}") as ws:
        yield ws


async def read_until_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str, limit: float = 5.0) -> Feed:
    """Messages up to ``executing`` with ``node: null`` for ``prompt_id`` (the end of the prompt)."""
    feed = Feed()
    async with asyncio.timeout(limit):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                feed.binary.append(message.data)
                continue
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = json.loads(message.data)
            feed.messages.append(event)
            data = event["data"]
            if event["type"] == "executing" and data["node"] is None and data.get("prompt_id") == prompt_id:
                return feed
    raise AssertionError(f"the websocket closed before {prompt_id} ended: {feed.types()}")


async def read_until(ws: aiohttp.ClientWebSocketResponse, kind: str, limit: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT and (event := json.loads(message.data))["type"] == kind:
                return event["data"]
    raise AssertionError(f"no {kind}")


async def submit(client: httpx.AsyncClient, graph: Any, client_id: str | None = None, **body: Any) -> httpx.Response:
    payload = {"prompt": graph, **body}
    if client_id is not None:
        payload["client_id"] = client_id
    return await client.post("/prompt", json=payload)


async def run(fake: FakeComfyUI, client: httpx.AsyncClient, graph: dict[str, Any], **body: Any) -> tuple[str, Feed]:
    """Submit ``graph`` with a websocket open and read it to its end."""
    client_id = uuid.uuid4().hex
    async with websocket(fake, client_id) as ws:
        status = await read_until(ws, "status")
        assert status["sid"] == client_id
        answer = await submit(client, graph, client_id, **body)
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        return prompt_id, await read_until_done(ws, prompt_id)


async def eventually(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` holds."""
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def history(client: httpx.AsyncClient, prompt_id: str) -> dict[str, Any]:
    return (await client.get(f"/history/{prompt_id}")).json()


async def pictures(client: httpx.AsyncClient, entry: dict[str, Any]) -> list[bytes]:
    out = []
    for output in entry["outputs"].values():
        for image in output["images"]:
            answer = await client.get("/view", params=image)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "image/png"
            out.append(answer.content)
    return out


# -- introspection ------------------------------------------------------------------------------------------------


async def test_object_info_has_the_real_shapes() -> None:
    async with FakeComfyUI(checkpoints=("a.safetensors", "b.safetensors")) as fake, http(fake) as client:
        everything = (await client.get("/api/object_info")).json()
        for name in ("KSampler", "CheckpointLoaderSimple", "EmptyLatentImage", "CLIPTextEncode", "VAEDecode"):
            assert everything[name]["name"] == name
        ksampler = (await client.get("/object_info/KSampler")).json()["KSampler"]
        required = ksampler["input"]["required"]
        assert required["sampler_name"][0] == list(SAMPLERS) and "euler" in required["sampler_name"][0]
        assert "karras" in required["scheduler"][0]
        assert required["seed"] == ["INT", {**required["seed"][1], "min": 0, "max": 2**64 - 1}]
        assert required["steps"][1]["min"] == 1 and required["cfg"][1]["max"] == 100.0
        assert ksampler["output"] == ["LATENT"] and ksampler["output_node"] is False
        assert ksampler["input_order"]["required"][0] == "model"
        loader = everything["CheckpointLoaderSimple"]
        assert loader["input"]["required"]["ckpt_name"][0] == ["a.safetensors", "b.safetensors"]
        assert loader["output"] == ["MODEL", "CLIP", "VAE"]
        assert everything["SaveImage"]["output_node"] is True
        assert everything["SaveImage"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
        upscaler = everything["UpscaleModelLoader"]  # a V3 node: the COMBO shape, every NodeInfoV1 field
        assert upscaler["input"]["required"]["model_name"] == [
            "COMBO",
            {"multiselect": False, "options": ["RealESRGAN_x2.pth"]},
        ]
        assert upscaler["price_badge"] is None and upscaler["python_module"] == "comfy_extras.nodes_upscale_model"
        assert (await client.get("/object_info/NoSuchNode")).json() == {}
        stats = (await client.get("/system_stats")).json()
        assert stats["system"]["comfyui_version"] and stats["devices"][0]["type"] == "cuda"
        assert (await client.get("/features")).json()["supports_preview_metadata"] is True
        assert (await client.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
        assert (await client.get("/models/checkpoints")).json() == ["a.safetensors", "b.safetensors"]
        assert (await client.get("/models/nope")).status_code == 404


# -- validation ---------------------------------------------------------------------------------------------------


async def test_submission_level_errors() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        answer = await client.post("/prompt", json={"client_id": "x"})
        assert answer.status_code == 400
        assert answer.json() == {
            "error": {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            },
            "node_errors": {},
        }

        for bad in ("abc", str(uuid.uuid4()).upper(), 12):
            answer = await submit(client, txt2img_graph(), prompt_id=bad)
            assert answer.status_code == 400
            assert answer.json()["error"]["type"] == "invalid_prompt_id"
            assert answer.json()["error"]["message"] == "prompt_id must be a valid UUID"

        graph = txt2img_graph()
        graph["20"] = {"class_type": "FancyUpscaler", "inputs": {}, "_meta": {"title": "Fancy"}}
        answer = await submit(client, graph)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["type"] == "missing_node_type"
        assert error["message"] == "Node 'Fancy' not found. The custom node may not be installed."
        assert error["details"] == "Node ID '#20'"
        assert error["extra_info"] == {"node_id": "20", "class_type": "FancyUpscaler", "node_title": "Fancy"}
        assert answer.json()["node_errors"] == {}

        graph = txt2img_graph()
        del graph["9"]
        answer = await submit(client, graph)
        assert answer.json()["error"]["type"] == "prompt_no_outputs"

        answer = await client.post("/prompt", content=b"{not json", headers={"Content-Type": "application/json"})
        assert answer.status_code == 500

        prompt_id = str(uuid.uuid4())
        answer = await submit(client, txt2img_graph(**SMALL), prompt_id=prompt_id)
        assert answer.status_code == 200
        assert answer.json() == {"prompt_id": prompt_id, "number": 6, "node_errors": {}}  # refused ones counted
        assert len(fake.generate_calls) == 8 and list(fake.prompts) == [prompt_id]


async def test_input_errors_in_node_errors() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        graph = txt2img_graph(sampler_name="DPM++ 2M Karras", steps=0, cfg=1000)
        graph["5"]["inputs"]["width"] = "wide"
        del graph["6"]["inputs"]["text"]
        graph["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
        answer = await submit(client, graph)
        assert answer.status_code == 400
        body = answer.json()
        assert body["error"]["type"] == "prompt_outputs_failed_validation"
        assert body["error"]["message"] == "Prompt outputs failed validation"
        assert body["error"]["details"] == ""  # SaveImage itself had nothing wrong: only the nodes it depends on
        errors = {node: [e["type"] for e in report["errors"]] for node, report in body["node_errors"].items()}
        assert errors == {
            "4": ["value_not_in_list"],
            "6": ["required_input_missing"],
            "5": ["invalid_input_type"],
            "3": ["value_smaller_than_min", "value_bigger_than_max", "value_not_in_list"],
        }
        sampler = body["node_errors"]["3"]
        assert sampler["class_type"] == "KSampler" and sampler["dependent_outputs"] == ["9"]
        steps, cfg, name = sampler["errors"]
        assert steps["message"] == "Value 0 smaller than min of 1" and steps["details"] == "steps"
        assert steps["extra_info"]["received_value"] == 0 and steps["extra_info"]["input_config"][0] == "INT"
        assert cfg["message"] == "Value 1000.0 bigger than max of 100.0"
        assert name["details"] == "sampler_name: 'DPM++ 2M Karras' not in (list of length 44)"
        assert name["extra_info"] == {
            "input_name": "sampler_name",
            "input_config": None,
            "received_value": "DPM++ 2M Karras",
        }
        checkpoint = body["node_errors"]["4"]["errors"][0]
        assert checkpoint["details"] == "ckpt_name: 'missing.safetensors' not in ['sd_xl_base_1.0.safetensors']"
        width = body["node_errors"]["5"]["errors"][0]
        assert width["message"] == "Failed to convert an input value to a INT value"
        assert width["details"] == "width, wide, invalid literal for int() with base 10: 'wide'"
        assert body["node_errors"]["6"]["errors"][0]["extra_info"] == {"input_name": "text"}

        # One output of two valid: the prompt runs that one, and the answer names the other's errors.
        graph = txt2img_graph(**SMALL)
        graph["20"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "other", "images": ["8", 0, 1]}}
        answer = await submit(client, graph)
        assert answer.status_code == 200
        assert answer.json()["node_errors"]["20"]["errors"][0]["type"] == "bad_linked_input"
        partial = answer.json()["prompt_id"]
        await eventually(lambda: partial in fake.history)
        assert fake.history[partial]["prompt"][4] == ["9"] and list(fake.history[partial]["outputs"]) == ["9"]

        # Numbers in strings are converted (and queued converted), as ComfyUI does.
        graph = txt2img_graph(**SMALL)
        graph["3"]["inputs"]["steps"] = "2"
        answer = await submit(client, graph)
        assert answer.status_code == 200
        assert fake.prompts[answer.json()["prompt_id"]]["3"]["inputs"]["steps"] == 2


async def test_bad_links_fail_as_comfyui_fails_them() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        graph = txt2img_graph()
        graph["3"]["inputs"]["model"] = ["4"]
        body = (await submit(client, graph)).json()
        assert body["node_errors"]["3"]["errors"][0]["type"] == "bad_linked_input"
        assert body["node_errors"]["3"]["errors"][0]["extra_info"]["received_value"] == ["4"]

        graph = txt2img_graph()  # a link to a node that is not there: a KeyError inside ComfyUI's validation
        graph["3"]["inputs"]["positive"] = ["99", 0]
        body = (await submit(client, graph)).json()
        report = body["node_errors"]["3"]
        assert report["errors"][0]["type"] == "exception_during_inner_validation"
        assert report["errors"][0]["details"] == "'99'"
        assert report["errors"][0]["extra_info"]["exception_type"] == "KeyError"
        assert report["errors"][0]["extra_info"]["linked_node"] == ["3", 0]  # the link that led to node 3

        graph = txt2img_graph()  # the same on the output node itself
        graph["9"]["inputs"]["images"] = ["8", 5]
        body = (await submit(client, graph)).json()
        assert body["error"]["details"] == "Exception when validating node: tuple index out of range"
        assert body["node_errors"]["9"]["errors"][0]["type"] == "exception_during_validation"

        graph = txt2img_graph()
        graph["3"]["inputs"]["positive"] = ["4", 0]  # MODEL into CONDITIONING
        error = (await submit(client, graph)).json()["node_errors"]["3"]["errors"][0]
        assert error["type"] == "return_type_mismatch"
        assert error["details"] == "positive, received_type(MODEL) mismatch input_type(CONDITIONING)"


# -- a run over the websocket -------------------------------------------------------------------------------------


async def test_full_run_messages_history_and_pictures() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        graph = txt2img_graph(seed=41, width=72, height=66, batch_size=2, steps=3, filename_prefix="sdbot/run")
        prompt_id, feed = await run(fake, client, graph)
        # History is written before `executing` null is sent: asked right after it, it is there.
        entry = (await history(client, prompt_id))[prompt_id]

        nodes = ["4", "5", "7", "6", "3", "8", "9"]  # ComfyUI's ExecutionList order for this graph
        progress = ["progress"] * 3
        expected = ["execution_start", "execution_cached"]
        for node in nodes:
            expected += ["executing", *(progress if node == "3" else []), *(["executed"] if node == "9" else [])]
        assert feed.types() == [*expected, "execution_success", "executing"]
        assert [m["node"] for m in feed.of("executing")] == [*nodes, None]
        assert feed.of("executing")[0] == {"node": "4", "display_node": "4", "prompt_id": prompt_id}
        assert feed.of("execution_cached")[0]["nodes"] == []
        assert [(p["value"], p["max"], p["node"]) for p in feed.of("progress")] == [
            (1, 3, "3"),
            (2, 3, "3"),
            (3, 3, "3"),
        ]
        assert feed.messages[-2]["type"] == "status"  # queue emptied, then the end
        assert all(m["data"].get("prompt_id") == prompt_id for m in feed.messages if m["type"] != "status")
        assert len(feed.binary) == 3  # one preview per step: PREVIEW_IMAGE, JPEG
        assert all(struct.unpack(">II", frame[:8]) == (1, 1) and frame[8:10] == b"\xff\xd8" for frame in feed.binary)
        states = feed.of("progress_state")
        assert states[-1]["nodes"]["9"]["state"] == "finished" and len(states[-1]["nodes"]) == 7

        executed = feed.of("executed")[0]
        images = [
            {"filename": "run_00001_.png", "subfolder": "sdbot", "type": "output"},
            {"filename": "run_00002_.png", "subfolder": "sdbot", "type": "output"},
        ]
        assert executed == {"node": "9", "display_node": "9", "output": {"images": images}, "prompt_id": prompt_id}
        assert entry["outputs"] == {"9": {"images": images}}
        assert entry["meta"] == {"9": {"node_id": "9", "display_node": "9", "parent_node": None, "real_node_id": "9"}}
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
        assert [m[0] for m in entry["status"]["messages"]] == [
            "execution_start",
            "execution_cached",
            "execution_success",
        ]
        number, stored_id, stored_graph, extra_data, outputs = entry["prompt"]
        assert (number, stored_id, stored_graph, outputs) == (0, prompt_id, graph, ["9"])
        assert set(extra_data) == {"client_id", "create_time"}

        data = await pictures(client, entry)
        assert [png_size(picture) for picture in data] == [(72, 64), (72, 64)]  # latent space: multiples of 8
        assert data[0] != data[1]  # seeds 41 and 42
        with Image.open(io.BytesIO(data[0])) as picture:
            assert json.loads(picture.info["prompt"]) == graph  # ComfyUI's metadata
        assert (await client.get("/api/history")).json().keys() == {prompt_id}
        assert (await client.get("/queue")).json() == {"queue_running": [], "queue_pending": []}


async def test_an_identical_prompt_is_served_from_the_cache() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        first, _ = await run(fake, client, txt2img_graph(seed=1, **SMALL))
        again, feed = await run(fake, client, txt2img_graph(seed=1, **SMALL))
        assert feed.of("execution_cached")[0]["nodes"] == ["3", "4", "5", "6", "7", "8", "9"]
        assert feed.types() == ["execution_start", "execution_cached", "executed", "execution_success", "executing"]
        outputs = (await history(client, first))[first]["outputs"]
        assert (await history(client, again))[again]["outputs"] == outputs  # the same files

        reseeded, feed = await run(fake, client, txt2img_graph(seed=2, **SMALL))
        assert feed.of("execution_cached")[0]["nodes"] == ["4", "5", "6", "7"]
        assert [m["node"] for m in feed.of("executing")] == ["3", "8", "9", None]
        images = (await history(client, reseeded))[reseeded]["outputs"]["9"]["images"]
        assert images[0]["filename"] == "ComfyUI_00002_.png"


async def test_prompts_run_one_at_a_time_in_order() -> None:
    async with FakeComfyUI(step_delay=0.01) as fake, http(fake) as client:
        ids = []
        for seed in range(3):
            answer = await submit(client, txt2img_graph(seed=seed, **SMALL))
            ids.append(answer.json()["prompt_id"])
        await eventually(lambda: len(fake.history) == 3)
        assert fake.started == ids
        assert [entry["prompt"][0] for entry in fake.history.values()] == [0, 1, 2]


# -- control ------------------------------------------------------------------------------------------------------


async def test_interrupt_stops_the_running_prompt_mid_run() -> None:
    async with FakeComfyUI(step_delay=0.02) as fake, http(fake) as client:
        client_id = uuid.uuid4().hex
        async with websocket(fake, client_id) as ws:
            answer = await submit(client, txt2img_graph(steps=200, width=64, height=64), client_id)
            prompt_id = answer.json()["prompt_id"]
            await read_until(ws, "progress")
            other = str(uuid.uuid4())
            assert (await client.post("/interrupt", json={"prompt_id": other})).status_code == 200  # not running
            assert (await client.post("/interrupt", json={"prompt_id": prompt_id})).status_code == 200
            feed = await read_until_done(ws, prompt_id)
        assert fake.interrupts == [{"prompt_id": other}, {"prompt_id": prompt_id}]
        assert feed.types()[-2:] == ["execution_interrupted", "executing"]
        interrupted = feed.of("execution_interrupted")[0]
        assert interrupted["node_id"] == "3" and interrupted["node_type"] == "KSampler"
        assert interrupted["executed"] == ["4", "5", "7", "6"] and interrupted["prompt_id"] == prompt_id
        assert len(feed.of("progress")) < 150
        entry = (await history(client, prompt_id))[prompt_id]
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1] == ["execution_interrupted", interrupted]
        assert entry["outputs"] == {}

        # An interrupt with no body stops whatever runs; one while idle is forgotten by the next prompt.
        assert (await client.post("/interrupt")).status_code == 200
        prompt_id, feed = await run(fake, client, txt2img_graph(seed=5, **SMALL))
        assert feed.types()[-2] == "execution_success"
        assert fake.interrupts[-1] is None


async def test_queue_delete_and_clear_take_pending_prompts_off() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        fake.push_hang()
        running = (await submit(client, txt2img_graph(seed=1, **SMALL))).json()["prompt_id"]
        waiting = [(await submit(client, txt2img_graph(seed=s, **SMALL))).json()["prompt_id"] for s in (2, 3, 4)]
        await eventually(lambda: bool(fake.started))
        queue = (await client.get("/queue")).json()
        assert [item[1] for item in queue["queue_running"]] == [running]
        assert sorted(item[1] for item in queue["queue_pending"]) == sorted(waiting)
        assert (await client.get("/prompt")).json()["exec_info"]["queue_remaining"] == 4

        assert (await client.post("/queue", json={"delete": [waiting[0], running]})).status_code == 200
        queue = (await client.get("/queue")).json()
        assert [item[1] for item in queue["queue_running"]] == [running]  # the running one is not deleted
        assert sorted(item[1] for item in queue["queue_pending"]) == sorted(waiting[1:])
        assert (await client.post("/queue", json={"clear": True})).status_code == 200
        assert (await client.get("/queue")).json()["queue_pending"] == []

        await client.post("/interrupt", json={"prompt_id": running})
        await eventually(lambda: running in fake.history)
        await asyncio.sleep(0.05)
        assert list(fake.history) == [running] and fake.started == [running]
        assert (await history(client, waiting[0])) == {}


# -- files ---------------------------------------------------------------------------------------------------------


async def test_upload_then_img2img_from_the_picture() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:

        async def upload(data: bytes, name: str = "photo.png", **fields: str) -> httpx.Response:
            return await client.post("/upload/image", files={"image": (name, data, "image/png")}, data=fields)

        answer = await upload(png(100, 75))
        assert answer.json() == {"name": "photo.png", "subfolder": "", "type": "input"}
        assert (await upload(png(100, 75))).json()["name"] == "photo.png"  # the same bytes: reused
        assert (await upload(png(50, 50))).json()["name"] == "photo (1).png"  # other bytes: renamed
        assert (await upload(png(50, 50, (1, 2, 3)), overwrite="true")).json()["name"] == "photo.png"
        assert (await upload(png(100, 75), subfolder="sdbot")).json()["subfolder"] == "sdbot"
        assert fake.uploads == ["photo.png", "photo.png", "photo (1).png", "photo.png", "photo.png"]
        assert (await client.post("/upload/image", data={"overwrite": "true"})).status_code == 400
        assert (await upload(png(8, 8), name="../escape.png")).status_code == 400
        assert (await upload(png(8, 8), type="elsewhere")).status_code == 500

        info = (await client.get("/object_info/LoadImage")).json()["LoadImage"]["input"]["required"]["image"]
        assert info == [["photo (1).png", "photo.png"], {"image_upload": True}]
        viewed = await client.get("/view", params={"filename": "photo (1).png", "type": "input"})
        assert viewed.status_code == 200 and png_size(viewed.content) == (50, 50)

        answer = await submit(client, img2img_graph("nope.png"))
        error = answer.json()["node_errors"]["10"]["errors"][0]
        assert error == {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "image - Invalid image file: nope.png",
            "extra_info": {"input_name": "image"},
        }

        await upload(png(100, 75), name="big.png")
        prompt_id, feed = await run(fake, client, img2img_graph("sdbot/photo.png", denoise=0.5, steps=4))
        assert [m["node"] for m in feed.of("executing")][:3] == ["4", "10", "11"]
        assert len(feed.of("progress")) == 4
        entry = (await history(client, prompt_id))[prompt_id]
        assert [png_size(p) for p in await pictures(client, entry)] == [(96, 72)]  # VAEEncode: multiples of 8

        fake.add_input("broken.png", b"not a picture")
        _, feed = await run(fake, client, img2img_graph("broken.png"))
        error = feed.of("execution_error")[0]
        assert error["exception_type"] == "PIL.UnidentifiedImageError" and error["node_id"] == "10"


async def test_upscale_and_scale_by_graphs() -> None:
    async with FakeComfyUI(upscale_models=("RealESRGAN_x2.pth", "4x-UltraSharp.pth")) as fake, http(fake) as client:
        prompt_id, feed = await run(fake, client, with_upscale(txt2img_graph(**SMALL)))
        entry = (await history(client, prompt_id))[prompt_id]
        assert [png_size(p) for p in await pictures(client, entry)] == [(128, 128)]
        assert [p["node"] for p in feed.of("progress")][-1] == "13"  # a tile of the upscaler

        graph = with_scale_by(with_upscale(txt2img_graph(seed=3, **SMALL), "4x-UltraSharp.pth"), 0.75)
        prompt_id, _ = await run(fake, client, graph)
        entry = (await history(client, prompt_id))[prompt_id]
        assert [png_size(p) for p in await pictures(client, entry)] == [(192, 192)]

        answer = await submit(client, with_upscale(txt2img_graph(), "nope.pth"))
        error = answer.json()["node_errors"]["12"]["errors"][0]
        assert error["details"] == "model_name: 'nope.pth' not in ['RealESRGAN_x2.pth', '4x-UltraSharp.pth']"
        assert error["extra_info"]["input_config"][0] == "COMBO"


async def test_view_refuses_bad_names() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        fake.add_input("a.png", png(8, 8))
        assert (await client.get("/view", params={"filename": "a.png", "type": "input"})).status_code == 200
        assert (await client.get("/view", params={"filename": "a.png [input]"})).status_code == 200
        assert (await client.get("/view", params={"filename": "a.png"})).status_code == 404  # type output
        assert (await client.get("/view", params={"filename": "../input/a.png"})).status_code == 400
        assert (await client.get("/view", params={"filename": "/etc/passwd"})).status_code == 400
        assert (await client.get("/view", params={"filename": ""})).status_code == 400
        assert (await client.get("/view", params={"filename": "a.png", "type": "secret"})).status_code == 400
        forbidden = {"filename": "a.png", "type": "input", "subfolder": "../output"}
        assert (await client.get("/view", params=forbidden)).status_code == 403
        assert (await client.get("/view")).status_code == 404
        preview = await client.get("/view", params={"filename": "a.png", "type": "input", "preview": "jpeg;80"})
        assert preview.headers["content-type"] == "image/jpeg" and preview.content[:2] == b"\xff\xd8"


# -- origin check and faults ----------------------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        answer = await client.post(
            "/prompt", json={"prompt": txt2img_graph(**SMALL)}, headers={"Origin": "http://evil.example"}
        )
        assert answer.status_code == 403 and answer.content == b""
        assert fake.generate_calls == []
        refused = await client.get("/queue", headers={"Origin": f"http://127.0.0.1:{fake.port + 1}"})
        assert refused.status_code == 403
        assert (await client.get("/queue", headers={"Sec-Fetch-Site": "cross-site"})).status_code == 403
        same = await client.get("/queue", headers={"Origin": fake.url})
        assert same.status_code == 200
        assert (await client.get("/queue", headers={"Origin": "http://127.0.0.1"})).status_code == 200  # no port
    async with FakeComfyUI(require_origin_match=False) as fake, http(fake) as client:
        assert (await client.get("/queue", headers={"Origin": "http://evil.example"})).status_code == 200


async def test_execution_error_fault() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        fake.push_execution_error(at_step=2)
        prompt_id, feed = await run(fake, client, txt2img_graph(**SMALL))
        assert feed.types()[-2:] == ["execution_error", "executing"]
        assert len(feed.of("progress")) == 2
        error = feed.of("execution_error")[0]
        assert set(error) == {
            "prompt_id",
            "node_id",
            "node_type",
            "executed",
            "exception_message",
            "exception_type",
            "traceback",
            "current_inputs",
            "current_outputs",
            "timestamp",
        }
        assert (error["node_id"], error["node_type"]) == ("3", "KSampler")
        assert error["exception_type"] == "torch.OutOfMemoryError"
        assert error["exception_message"].startswith("CUDA out of memory.") and error["exception_message"].endswith(
            OOM_TIPS
        )
        assert error["current_inputs"]["seed"] == [0] and error["current_inputs"]["model"][0].startswith("<comfy.")
        assert error["executed"] == ["4", "5", "7", "6"]
        entry = (await history(client, prompt_id))[prompt_id]
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1] == ["execution_error", error]

        fake.push_execution_error("boom", "RuntimeError", node_type="VAEDecode")
        _, feed = await run(fake, client, txt2img_graph(seed=9, **SMALL))
        error = feed.of("execution_error")[0]
        assert (error["node_type"], error["exception_message"]) == ("VAEDecode", "boom\n")


async def test_submission_and_picture_faults() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        fake.push_response(503, "busy")
        answer = await submit(client, txt2img_graph(**SMALL))
        assert (answer.status_code, answer.text) == (503, "busy")
        assert fake.prompts == {}

        fake.push_wrong_size()
        prompt_id, _ = await run(fake, client, txt2img_graph(**SMALL))
        entry = (await history(client, prompt_id))[prompt_id]
        assert [png_size(p) for p in await pictures(client, entry)] == [(32, 32)]

        fake.push_count(3)
        prompt_id, _ = await run(fake, client, txt2img_graph(seed=8, **SMALL))
        assert len((await history(client, prompt_id))[prompt_id]["outputs"]["9"]["images"]) == 3


async def test_feature_flags_and_metadata_previews() -> None:
    async with FakeComfyUI() as fake, http(fake) as client:
        client_id = uuid.uuid4().hex
        async with websocket(fake, client_id) as ws:
            await read_until(ws, "status")
            await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            flags = await read_until(ws, "feature_flags")
            assert flags["supports_preview_metadata"] is True and "max_upload_size" in flags
            prompt_id = (await submit(client, txt2img_graph(steps=2, width=64, height=64), client_id)).json()[
                "prompt_id"
            ]
            feed = await read_until_done(ws, prompt_id)
        assert len(feed.binary) == 2
        kind, size = struct.unpack(">II", feed.binary[0][:8])
        metadata = json.loads(feed.binary[0][8 : 8 + size])
        assert kind == 4 and metadata["prompt_id"] == prompt_id and metadata["image_type"] == "image/jpeg"
        assert feed.binary[0][8 + size : 10 + size] == b"\xff\xd8"
        # Without a client id: no per-client messages at all, only the broadcast ones.
        async with websocket(fake) as ws:
            sid = (await read_until(ws, "status"))["sid"]
            assert len(sid) == 32
            answer = await submit(client, txt2img_graph(seed=4, **SMALL))
            await eventually(lambda: answer.json()["prompt_id"] in fake.history)
            assert fake.ws_clients[-1] == sid


async def test_a_restarted_server_forgets_its_queue_and_history() -> None:
    fake = FakeComfyUI()
    async with fake, http(fake) as client:
        prompt_id, _ = await run(fake, client, txt2img_graph(**SMALL))
        port = fake.port
    async with fake, http(fake) as client:
        assert fake.port == port
        assert (await history(client, prompt_id)) == {}
        assert fake.file("ComfyUI_00001_.png") is not None  # files on disk survive
        prompt_id, feed = await run(fake, client, txt2img_graph(**SMALL))
        assert feed.of("execution_cached")[0]["nodes"] == []  # cold cache
        assert (await history(client, prompt_id))[prompt_id]["outputs"]["9"]["images"][0]["filename"] == (
            "ComfyUI_00002_.png"
        )
