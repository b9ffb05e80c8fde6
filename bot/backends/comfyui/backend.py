"""ComfyUI's server API: ``POST /prompt`` with the filled workflow, its progress and end over the ``/ws``
websocket (``/history`` polled when no websocket can be had), the pictures from ``/history`` and ``/view``. A job
cancelled or out of time is interrupted on the server, so the GPU does not keep drawing for nobody.

A picture to draw from (image-to-image) or to upscale is first sent with ``POST /upload/image`` (a name of its own
per job, in the input folder's ``sdbot`` subfolder), then read by the graph's LoadImage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx

from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.batch import one_per_call
from bot.backends.comfyui import samplers
from bot.backends.comfyui.workflow import (
    DEFAULT_STRENGTH,
    Graph,
    Workflow,
    derive_img2img,
    load,
    load_img2img,
    repeated,
    upscale_graph,
)
from bot.backends.download import download
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    located,
    parse_json,
    provider_said,
    send,
    sniff_format,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.config import redact_url
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.errors import BackendError
from bot.messages.i18n import Msg
from bot.process import cpu

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "comfyui"
SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
# A1111 names offered where the server has their sampler and scheduler: the seed's, then ComfyUI's others.
CANDIDATE_SAMPLERS = (*params.SAMPLERS, "DPM++ 2S a", "DPM++ 3M SDE", "DPM++ 3M SDE Karras", "DDIM", "UniPC", "LCM")
POLL_INTERVAL = 0.5  # seconds between /history polls when no websocket can be had
CONTROL_TIMEOUT = 5.0  # an interrupt or a queue deletion: best effort, never a long wait
WS_MAX_MESSAGE = 64 * 1024 * 1024  # previews ride the websocket as binary frames
UPLOAD_FOLDER = "sdbot"  # the input folder's subfolder pictures to draw from go to (one file per job)
IMG2IMG_NODES = ("LoadImage", "VAEEncode")  # what image-to-image needs on the server
BATCH_NODE = "RepeatLatentBatch"  # --n pictures from one picture in one prompt (else one prompt per picture)
UPSCALE_NODES = ("LoadImage", "UpscaleModelLoader", "ImageUpscaleWithModel", "ImageScale")
_TRANSIENT = frozenset({"http_502", "http_503", "http_504"})


def _retryable(exc: BackendError) -> bool:
    # Only what surely never reached the queue: a submitted prompt is not submitted twice.
    return exc.params.get("reason") in RETRYABLE_TRANSPORT or exc.provider_code in _TRANSIENT


def combo(spec: Any) -> list[str]:
    """A combo input's values from ``/object_info``: the legacy ``[[values], {...}]`` or ``["COMBO", {"options"}]``."""
    if isinstance(spec, list) and spec:
        if isinstance(spec[0], list):
            return [str(value) for value in spec[0]]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return [str(value) for value in spec[1].get("options") or []]
    return []


class ComfyUIBackend(HttpBackend):
    name = PROVIDER

    def __init__(
        self,
        url: str,
        *,
        workflow: Workflow | None = None,
        img2img: Workflow | None = None,
        upscale_model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_download: int = 20 * 1024 * 1024,
    ) -> None:
        # No capabilities yet: the samplers are the server's, asked for on first use.
        super().__init__(url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=None)
        self._url = url.rstrip("/")
        self._workflow = workflow or load(None)
        # Image-to-image: the operator's workflow, else the shipped one's (none from an operator's own workflow).
        if img2img is None and self._workflow.source == "default":
            img2img = derive_img2img(self._workflow)
        self._img2img = img2img
        self._upscale_model = upscale_model or None
        self._batch_node = False  # whether the server has RepeatLatentBatch: known with the capabilities
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_download = max_download
        self._session: aiohttp.ClientSession | None = None
        self._caps_lock = asyncio.Lock()

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "COMFYUI_URL")
        workflow = load(settings.comfyui_workflow, settings.comfyui_bindings).with_checkpoint(
            settings.comfyui_checkpoint
        )
        img2img = load_img2img(settings.comfyui_img2img_workflow, settings.comfyui_bindings, workflow)
        return {
            "url": settings.comfyui_url,
            "workflow": workflow,
            "img2img": img2img.with_checkpoint(settings.comfyui_checkpoint) if img2img is not None else None,
            "upscale_model": settings.comfyui_upscale_model or None,
            "max_download": settings.max_download,
        }

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().aclose()

    # -- capabilities ------------------------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        """The samplers the server has (``/object_info``), once; a failed fetch is asked again next time. Drawing
        from a picture when there is an image-to-image workflow and the server has LoadImage and VAEEncode;
        upscaling when ``COMFYUI_UPSCALE_MODEL`` is set and among UpscaleModelLoader's models."""
        if self._caps is not None:
            return self._caps
        async with self._caps_lock:
            if self._caps is None:
                names, schedulers = await self._sampler_lists()
                wanted: set[str] = set()
                if self._img2img is not None:
                    wanted |= {*IMG2IMG_NODES, BATCH_NODE}
                if self._upscale_model is not None:
                    wanted |= set(UPSCALE_NODES)
                nodes = await self._node_inputs(sorted(wanted))
                image_to_image = self._img2img is not None and all(node in nodes for node in IMG2IMG_NODES)
                self._batch_node = BATCH_NODE in nodes
                upscale = self._upscale_model is not None and all(node in nodes for node in UPSCALE_NODES)
                if upscale:
                    upscale = self._upscale_model in combo(nodes["UpscaleModelLoader"].get("model_name"))
                bound = self._workflow.bindings
                if "scheduler" not in bound:
                    schedulers = frozenset({samplers.DEFAULT_SCHEDULER})  # the workflow's own stays as it is
                offered = samplers.offered(CANDIDATE_SAMPLERS, names, schedulers) if "sampler" in bound else ()
                unsupported = set(self._workflow.unsupported) | {"style"}
                if "sampler" in bound and not offered:
                    unsupported.add("sampler")
                self._caps = Capabilities(
                    backend=self.name,
                    samplers=offered,
                    styles=(params.DEFAULT_STYLE,),
                    unsupported=frozenset(unsupported),
                    negative_prompt="negative" in bound,
                    seed="seed" in bound,
                    image_to_image=image_to_image,
                    strength=DEFAULT_STRENGTH,
                    upscale=upscale,
                )
        return self._caps

    async def _node_inputs(self, classes: list[str]) -> dict[str, dict[str, Any]]:
        """The required inputs of each of ``classes`` the server has (``/object_info/{class}``: ``{}`` when not)."""
        answers = await asyncio.gather(*(self._get_json(f"/object_info/{node}") for node in classes))
        found: dict[str, dict[str, Any]] = {}
        for node, info in zip(classes, answers, strict=True):
            spec = info.get(node) if isinstance(info, dict) else None
            if isinstance(spec, dict):
                inputs = spec.get("input")
                required = inputs.get("required") if isinstance(inputs, dict) else None
                found[node] = required if isinstance(required, dict) else {}
        return found

    async def _sampler_lists(self) -> tuple[frozenset[str], frozenset[str]]:
        bound = self._workflow.bindings.get("sampler")
        node = self._workflow.graph[bound[0]]["class_type"] if bound else "KSampler"
        info = await self._get_json(f"/object_info/{node}")
        required = info.get(node, {}).get("input", {}).get("required", {}) if isinstance(info, dict) else {}
        names, schedulers = combo(required.get("sampler_name")), combo(required.get("scheduler"))
        if not names:
            raise BackendError("backend_config", provider=PROVIDER, provider_code="missing_node_type", node=node)
        return frozenset(names), frozenset(schedulers)

    async def _get_json(self, path: str, **params: Any) -> Any:
        async def attempt() -> Any:
            response, body = await send(self._client, "GET", path, provider=PROVIDER, params=params or None)
            if response.status_code != 200:
                raise located(_http_error(response), response)
            try:
                return await parse_json(body)
            except ValueError:
                raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed") from None

        return await self._retry.run(attempt, _retryable)

    # -- generate ----------------------------------------------------------------------------------------

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        if request.task == "upscale":
            return await self._upscale(request, progress)
        assert request.seed is not None, "the caller draws the seed"
        if request.source is None:
            return await self._draw(self._workflow, request, request.seed, progress)
        workflow = self._img2img
        if workflow is None:  # validation refuses a picture first (capabilities say no image-to-image)
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_img2img_workflow")
        await self.capabilities()  # whether the server has RepeatLatentBatch
        image = await self._upload(request.source.data)
        sampler = workflow.sampler()
        if request.n > 1 and "batch" not in workflow.bindings and self._batch_node and sampler is not None:
            graph = repeated(workflow.fill(request, seed=request.seed, image=image), sampler, request.n)
            if graph is not None:
                return await self._run(graph, request, request.seed, progress)
        return await self._draw(workflow, request, request.seed, progress, image=image)

    async def _draw(
        self,
        workflow: Workflow,
        request: DrawRequest,
        seed: int,
        progress: ProgressCallback | None,
        *,
        image: str | None = None,
    ) -> list[GeneratedImage]:
        if request.n == 1 or "batch" in workflow.bindings:
            graph = workflow.fill(request, seed=seed, image=image)
            return await self._run(graph, request, seed, progress)

        # No batch input: one prompt per picture, with consecutive seeds, queued together.
        async def one(seed: int) -> list[GeneratedImage]:
            return await self._run(workflow.fill(request, seed=seed, image=image), request, seed, None)

        return await one_per_call(request.n, seed, one, provider=PROVIDER, progress=progress)

    async def _upscale(self, request: DrawRequest, progress: ProgressCallback | None) -> list[GeneratedImage]:
        """The picture at ``request``'s size (twice its sides): the upscale model, then scaled to exactly that."""
        if request.source is None or self._upscale_model is None:  # the Upscale button is offered only with both
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_upscale_model")
        image = await self._upload(request.source.data)
        graph = upscale_graph(image, self._upscale_model, request.width, request.height)
        return await self._run(graph, request, None, progress)

    async def _upload(self, data: bytes) -> str:
        """``POST /upload/image`` of the picture under a name of its own (overwriting: a retried upload is the
        same file); the name LoadImage reads it by (``subfolder/name``)."""
        filename = f"{uuid.uuid4().hex}.png"
        form = {"type": "input", "subfolder": UPLOAD_FOLDER, "overwrite": "true"}

        async def attempt() -> str:
            files = {"image": (filename, data, "image/png")}
            response, body = await send(
                self._client, "POST", "/upload/image", provider=PROVIDER, files=files, data=form
            )
            if response.status_code != 200:
                raise located(_http_error(response), response)
            try:
                answer = await parse_json(body)
            except ValueError:
                answer = None
            name = answer.get("name") if isinstance(answer, dict) else None
            if not isinstance(name, str) or not name:
                raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed")
            subfolder = answer.get("subfolder") if isinstance(answer, dict) else None
            return f"{subfolder}/{name}" if isinstance(subfolder, str) and subfolder else name

        return await self._retry.run(attempt, _retryable)

    async def _run(
        self, graph: Graph, request: DrawRequest, seed: int | None, progress: ProgressCallback | None
    ) -> list[GeneratedImage]:
        client_id = uuid.uuid4().hex
        prompt_id = str(uuid.uuid4())
        ws = await self._open_ws(client_id)
        try:
            async with asyncio.timeout(self._timeout):
                await self._retry.run(lambda: self._submit(graph, client_id, prompt_id), _retryable)
                try:
                    entry = await self._until_done(ws, prompt_id, progress)
                except BaseException:
                    await self._abandon(prompt_id)
                    raise
        except TimeoutError:
            raise BackendError("backend_timeout", provider=PROVIDER, reason="queue") from None
        finally:
            if ws is not None:
                await ws.close()
        files = _output_files(entry)
        if not files:
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="no_images")
        pictures = await asyncio.gather(*(self._view(file) for file in files))
        return [
            GeneratedImage(data, sniff_format(data), request.width, request.height, seed=seed if i == 0 else None)
            for i, data in enumerate(pictures)
        ]

    async def _open_ws(self, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
        """The websocket for ``client_id``'s messages, or None (a proxy without websockets): then /history is
        polled."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(connect=self._connect_timeout))
        url = httpx.URL(self._url).copy_with(scheme="wss" if self._url.startswith("https") else "ws")
        target = url.join("ws").copy_merge_params({"clientId": client_id})
        try:
            return await self._session.ws_connect(str(target), heartbeat=30, max_msg_size=WS_MAX_MESSAGE)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("comfyui websocket unavailable (%s); polling /history instead", type(exc).__name__)
            return None

    async def _submit(self, graph: Graph, client_id: str, prompt_id: str) -> None:
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response, _ = await send(self._client, "POST", "/prompt", provider=PROVIDER, json=body)
        if response.status_code == 400:
            raise _rejected(response)
        if response.status_code != 200:
            raise located(_http_error(response), response)

    async def _until_done(
        self, ws: aiohttp.ClientWebSocketResponse | None, prompt_id: str, progress: ProgressCallback | None
    ) -> dict[str, Any]:
        """The prompt's history entry once it ended well; its error as a BackendError otherwise."""
        if ws is not None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue  # previews (binary frames), pings
                try:
                    event = json.loads(message.data)
                except ValueError:
                    continue
                data = event.get("data") if isinstance(event, dict) else None
                if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
                    continue
                kind = event.get("type")
                if kind == "progress" and progress is not None:
                    value, most = data.get("value"), data.get("max")
                    if isinstance(value, int | float) and isinstance(most, int | float) and most > 0:
                        await progress(min(1.0, value / most))
                elif kind == "execution_error":
                    raise _execution_error(data)
                elif kind == "execution_interrupted":
                    raise BackendError("backend_unavailable", provider=PROVIDER, provider_code="interrupted")
                elif kind == "executing" and data.get("node") is None:
                    break  # the end: the history entry is written before this message
            else:
                log.warning("comfyui websocket closed before the prompt ended; polling /history")
        while True:
            entry = await self._history(prompt_id)
            if entry is not None:
                return _finished(entry)
            await asyncio.sleep(POLL_INTERVAL)

    async def _history(self, prompt_id: str) -> dict[str, Any] | None:
        answer = await self._get_json(f"/history/{prompt_id}")
        entry = answer.get(prompt_id) if isinstance(answer, dict) else None
        return entry if isinstance(entry, dict) else None

    async def _abandon(self, prompt_id: str) -> None:
        """Stop the prompt whether it runs or waits: interrupt it, and take it off the queue. Best effort, briefly,
        and shielded: it runs while the job itself is being cancelled."""

        async def stop() -> None:
            for path, body in (("/interrupt", {"prompt_id": prompt_id}), ("/queue", {"delete": [prompt_id]})):
                try:
                    await self._client.post(path, json=body, timeout=CONTROL_TIMEOUT)
                except httpx.HTTPError as exc:
                    log.warning("comfyui %s failed: %s", path, type(exc).__name__)
            log.info("comfyui prompt %s interrupted", prompt_id)

        with contextlib.suppress(Exception):
            await asyncio.shield(stop())

    async def _view(self, file: dict[str, str]) -> bytes:
        url = self._client.base_url.join("view").copy_merge_params(file)
        cap, budget = self._max_download, self._timeout
        chunks = await download(self._client, str(url), provider=PROVIDER, max_bytes=cap, budget=budget, missing="view")
        return await cpu.run(b"".join, chunks)  # megabytes: one copy holding the GIL, off the loop

    # -- check -------------------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """The server's version and devices (``/system_stats``), then the workflows against ``/object_info``: every
        node class installed and every listed value (the checkpoint) present, the image-to-image workflow's too, and
        ``COMFYUI_UPSCALE_MODEL`` among the server's upscale models. Nothing is queued."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), redact_url(self._url)),
            (Msg("check.label.workflow"), self._workflow.source),
        ]
        try:
            stats = await self._get_json("/system_stats")
            system = stats.get("system", {}) if isinstance(stats, dict) else {}
            devices = [d.get("name") for d in stats.get("devices", []) if isinstance(d, dict)] if system else []
            shown = {"version": system.get("comfyui_version") or "?", "devices": devices or ["?"]}
            findings.append((Msg("check.label.server"), Msg("check.comfyui.server", shown)))
            info = await self._get_json("/object_info")
            info = info if isinstance(info, dict) else {}
            problems = workflow_problems(self._workflow.graph, info)
            if self._img2img is not None:
                image = self._img2img.bindings.get("image")
                own = workflow_problems(self._img2img.graph, info, filled=[image] if image else [])
                if self._img2img.source == "default":
                    problems += [problem for problem in own if problem not in problems]
                else:
                    problems += [f"COMFYUI_IMG2IMG_WORKFLOW ({self._img2img.source}): {problem}" for problem in own]
            if self._upscale_model is not None:
                problems += upscale_problems(self._upscale_model, info)
            if problems:
                error = BackendError("backend_config", provider=PROVIDER, provider_code="workflow_rejected")
                raise provider_said(error, "; ".join(problems))
            self._caps = None  # a check always asks the server afresh
            caps = await self.capabilities()
            findings.append(
                (Msg("check.label.samplers"), Msg("check.comfyui.workflow_ok", {"count": len(caps.samplers)}))
            )
            if caps.image_to_image and self._img2img is not None:
                shown = {"workflow": self._img2img.source, "strength": caps.strength}
                findings.append((Msg("check.label.img2img"), Msg("check.comfyui.img2img_on", shown)))
            else:
                findings.append((Msg("check.label.img2img"), Msg("check.comfyui.img2img_off")))
            if caps.upscale:
                shown = {"model": self._upscale_model}
                findings.append((Msg("check.label.upscale"), Msg("check.comfyui.upscale_on", shown)))
            else:
                findings.append((Msg("check.label.upscale"), Msg("check.comfyui.upscale_off")))
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)


def workflow_problems(graph: Graph, info: dict[str, Any], filled: list[tuple[str, str]] | None = None) -> list[str]:
    """What ComfyUI would refuse in ``graph``, by ``/object_info``: node classes not installed, and values of
    list inputs (checkpoints, samplers...) the server does not have. ``filled``: ``(node, input)`` pairs each job
    fills (a LoadImage's picture, uploaded then), not checked."""
    skipped = set(filled or ())
    problems = []
    for node_id, node in graph.items():
        spec = info.get(node["class_type"])
        if not isinstance(spec, dict):
            problems.append(f"node {node_id}: {node['class_type']} is not installed")
            continue
        inputs = spec.get("input", {})
        declared = {**inputs.get("required", {}), **inputs.get("optional", {})} if isinstance(inputs, dict) else {}
        for name, value in node["inputs"].items():
            if (node_id, name) in skipped:
                continue
            values = combo(declared.get(name))
            if values and isinstance(value, str) and value not in values:
                problems.append(f"node {node_id} ({node['class_type']}): {name} {value!r} is not on the server")
    return problems


def upscale_problems(model: str, info: dict[str, Any]) -> list[str]:
    """Why the Upscale button cannot work with ``COMFYUI_UPSCALE_MODEL`` ``model`` on the server of ``info``."""
    missing = [node for node in UPSCALE_NODES if not isinstance(info.get(node), dict)]
    problems = [f"COMFYUI_UPSCALE_MODEL needs the {node} node, which is not installed" for node in missing]
    loader = info.get("UpscaleModelLoader")
    if isinstance(loader, dict):
        inputs = loader.get("input")
        required = inputs.get("required") if isinstance(inputs, dict) else None
        models = combo(required.get("model_name")) if isinstance(required, dict) else []
        if model not in models:
            have = ", ".join(models) or "none"
            problems.append(
                f"COMFYUI_UPSCALE_MODEL {model!r} is not in the server's models/upscale_models (it has: {have})"
            )
    return problems


def _output_files(entry: dict[str, Any]) -> list[dict[str, str]]:
    """The saved pictures of a history entry (``type`` output; previews only when nothing was saved)."""
    found: list[dict[str, str]] = []
    outputs = entry.get("outputs")
    for output in outputs.values() if isinstance(outputs, dict) else ():
        for image in output.get("images", []) if isinstance(output, dict) else ():
            if isinstance(image, dict) and isinstance(image.get("filename"), str):
                kind = str(image.get("type") or "output")
                found.append(
                    {"filename": image["filename"], "subfolder": str(image.get("subfolder") or ""), "type": kind}
                )
    saved = [file for file in found if file["type"] == "output"]
    return saved or found


def _finished(entry: dict[str, Any]) -> dict[str, Any]:
    found = entry.get("status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    if status.get("status_str") == "error" or status.get("completed") is False:
        for kind, data in reversed(status.get("messages") or []):
            if kind == "execution_error" and isinstance(data, dict):
                raise _execution_error(data)
            if kind == "execution_interrupted":
                raise BackendError("backend_unavailable", provider=PROVIDER, provider_code="interrupted")
        raise BackendError("backend_unavailable", provider=PROVIDER, provider_code="execution_error")
    return entry


def _execution_error(data: dict[str, Any]) -> BackendError:
    """A node failed while drawing (out of memory, a missing file): the exception's words go to the operator."""
    kind, said = str(data.get("exception_type") or ""), str(data.get("exception_message") or "")
    log.warning("comfyui node %s (%s) failed: %s %s", data.get("node_id"), data.get("node_type"), kind, said[:200])
    error = BackendError("backend_unavailable", provider=PROVIDER, provider_code="execution_error")
    return provider_said(error, f"{data.get('node_type')}: {kind}: {said}")


def _rejected(response: httpx.Response) -> BackendError:
    """``POST /prompt`` 400: ComfyUI refused the workflow (``node_errors``), which the operator must mend."""
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    error = answer.get("error") if isinstance(answer, dict) else None
    kind = str(error.get("type") or "invalid_prompt") if isinstance(error, dict) else "invalid_prompt"
    lines = [str(error.get("message") or "")] if isinstance(error, dict) else []
    node_errors = answer.get("node_errors") if isinstance(answer, dict) else None
    for node_id, report in (node_errors or {}).items() if isinstance(node_errors, dict) else ():
        for item in report.get("errors", []) if isinstance(report, dict) else ():
            if isinstance(item, dict):
                said = item.get("details") or item.get("message")
                lines.append(f"node {node_id} ({report.get('class_type')}): {said}")
    said = "; ".join(line for line in lines if line)
    log.warning("comfyui refused the workflow: %s: %s", kind, said[:300])
    return provider_said(BackendError("backend_config", provider=PROVIDER, provider_code=kind, status=400), said)


def _http_error(response: httpx.Response) -> BackendError:
    status = response.status_code
    log.warning("comfyui answered HTTP %s", status)
    if status in (401, 403):
        # 403 is also ComfyUI's answer to an Origin that is not its host (a proxy that sets one).
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=f"http_{status}")
    return BackendError("backend_unavailable", provider=PROVIDER, provider_code=f"http_{status}")
