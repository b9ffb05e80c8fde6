"""A fake ModelsLab (stablediffusionapi.com) text-to-image and image-to-image API, on 127.0.0.1.

Wire format (reference: shared/reference/backends.md, seed 001). Every answer is HTTP 200 JSON; the
outcome is in ``status``:

- ``POST /api/v6/images/text2img`` (also legacy ``/api/v3/text2img``) with JSON
  ``{"key", "prompt", "negative_prompt", "width", "height", "samples", "num_inference_steps",
  "guidance_scale", "seed", "safety_checker", "base64", "webhook", "track_id", "model_id"}``;
  numbers may be strings (``"512"``, ``"7.5"``), ``seed`` null (or absent) means random.
  -> ``{"status": "success", "generationTime", "id", "output": [URL...], "proxy_links", "meta": {...,
  "seed"}}``. The URLs point at the fake itself (``{url}/generations/<uuid>-<i>.png``, served by
  ``GET /generations/{name}``) and return a real PNG of width x height. With ``"base64": "yes"``/true
  the URLs end in ``.base64`` and serve the base64 text of the PNG.
- ``POST /api/v6/images/img2img`` (backends.md 6.1): the same fields, answers, queueing and faults, plus
  ``init_image`` (required: "The init image field is required.") and ``strength`` (a number 0-1, default 0.7).
  ``init_image`` is an http(s) URL (not fetched: the pictures are then width x height) or, only with a truthy
  ``base64``, the picture's base64 (bare or a ``data:image/...;base64,`` URL): not a URL without ``base64`` ->
  ``{"init_image": ["The init image must be a valid URL."]}``, not base64 of a picture -> ``{"init_image":
  ["The init image must be a valid image."]}`` (the wording of both is the fake's: ModelsLab documents none).
  The pictures then take the init image's size ("output follows init_image dims"), each a mix of it and the
  seed's gradient. Decoded init images are in ``img2img_inputs``.
- Queued jobs: ``{"status": "processing", "id", "eta", "message": "Try to fetch request after given
  estimated time", "fetch_result": "{url}/api/v6/images/fetch/{id}", "future_links": [URL...],
  "output": [], "meta"}``; the future links answer 404 until the job is done. Poll with
  ``POST /api/v6/images/fetch/{id}`` ``{"key"}`` (also ``POST /api/v6/images/fetch``
  ``{"key", "request_id"}`` and legacy ``/api/v3/fetch/{id}``): the job answers ``processing``
  ``pending_fetches`` times, then ``success`` with ``output`` (or ``failed``).
- Errors: ``{"status": "error", "message": "Invalid Api Key", "tip": ...}``;
  ``{"status": "error", "message": "Rate limit exceeded", "tips": ...}``; validation
  ``{"status": "error", "message": {"prompt": ["The prompt field is required."], ...}}`` (width/height
  at most 1024, samples 1-4, num_inference_steps 1-50, guidance_scale 1-20, integers where expected);
  ``{"status": "error", "message": "Model id not found"}`` when ``model_ids`` is set and the body's
  ``model_id`` is not in it; ``{"status": "failed", "id": "", "message": "Failed, Try Again",
  "output": ""}``. With ``legacy_spelling=True`` every ``message`` key is spelled ``messege``.

Usage::

    async with FakeModelsLab(api_key="k", queue_all=True, pending_fetches=2) as fake:
        fake.push_rate_limited()
        fake.generate_calls[-1].body["width"]   # exactly what was sent, "512" or 512
        fake.fetch_calls                         # the polls

Constructor: ``FakeModelsLab(api_key="test-key", legacy_spelling=False, queue_all=False,
pending_fetches=1, eta=0.05, spam_filter_seconds=0.0, model_ids=None)``. ``queue_all`` answers every
generate with ``processing``; ``spam_filter_seconds`` > 0 answers "Rate limit exceeded" to a body
identical to one received within that many seconds, as the real spam filter does.

Planned faults (FIFO, one per generate request with the right key; common ones in
``tests.fakes.image_api``: ``push_delay``, ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_response``; the image faults change
what the output URLs serve):

- ``push_error(message, **extra)``: ``{"status": "error", "message": message, **extra}``.
- ``push_invalid_key()``, ``push_rate_limited()``, ``push_failed()``: the documented answers above.
- ``push_processing(pending_fetches=None, eta=None, outcome="success")``: queue this job; ``outcome``
  ``"failed"`` makes its last fetch answer ``{"status": "failed", ...}``.
- ``push_content_filtered()``: success, but the images are blank (black), as the NSFW checker does.
- ``push_late_image(gets=1)``: success, but each output URL answers 404 for its first ``gets`` GETs.

Recorded: ``generate_calls`` (text2img and img2img), ``fetch_calls`` (``list[Call]``), ``image_gets`` (names
fetched), ``img2img_inputs`` (the init images' bytes, one per img2img call that carried one in base64).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.image_api import (
    BOMB,
    CORRUPT_PIXELS,
    NOT_IMAGE,
    RESPONSE,
    TRUNCATED,
    WRONG_SIZE,
    Call,
    Fault,
    ImageApiFake,
)
from tests.fakes.images import blank_png, png_bytes

PROCESSING = "processing"
CONTENT_FILTERED = "content_filtered"
LATE_IMAGE = "late_image"

INVALID_KEY_TIP = (
    "1. Make sure you are passing Content-Type: application/json in header. 2. Make sure you are doing "
    "POST request with valid JSON. 3. Make sure your JSON does not have error, use jsonlint to validate "
    "json array. 4. Make sure you have valid API key."
)
RATE_LIMIT_TIPS = (
    "you are sending same request multiple times, spam filter is enabled, please wait for 30 seconds and try again"
)
PROCESSING_TIP = (
    "Your image is processing in background, you can get this image using fetch API: here is link for "
    "fetch api : https://modelslab.com/docs/community-models-api-v6/dreambooth-fetch-queue-image"
)
FETCH_LATER = "Try to fetch request after given estimated time"

# Faults that change the pictures served: an img2img answer then serves theirs, not the init picture mixed.
_IMAGE_FAULTS = frozenset({NOT_IMAGE, BOMB, WRONG_SIZE, TRUNCATED, CORRUPT_PIXELS})
_INT_RE = re.compile(r"^[+-]?\d+$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


@dataclass
class StoredImage:
    """A file the fake serves under ``/generations/``."""

    data: bytes
    content_type: str
    ready: bool = True
    not_found_left: int = 0  # GETs still answered 404 even when ready


@dataclass
class Job:
    """A queued generation, polled through the fetch endpoint."""

    id: int
    urls: list[str]
    names: list[str]
    meta: dict[str, Any]
    pending_fetches: int
    outcome: str = "success"
    eta: float = 0.05
    done: bool = field(default=False)


def _label(name: str) -> str:
    return name.replace("_", " ")


def _coerce(
    body: dict[str, Any], name: str, default: float | None, low: float, high: float, integer: bool
) -> tuple[Any, str | None]:
    """Laravel-style numeric rule: value (numbers or numeric strings) and an error message or None."""
    value = body.get(name)
    if value is None or value == "":
        return default, None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, str) and (_INT_RE.match(value) or (not integer and _NUMBER_RE.match(value))):
        number = int(value) if _INT_RE.match(value) else float(value)
    else:
        number = None
    if number is None or (integer and isinstance(number, float) and not number.is_integer()):
        return default, f"The {_label(name)} must be {'an integer' if integer else 'a number'}."
    if number < low:
        return default, f"The {_label(name)} must be at least {low:g}."
    if number > high:
        return default, f"The {_label(name)} must not be greater than {high:g}."
    return (int(number) if integer else number), None


def _mixed(init: bytes, drawn: bytes, strength: float) -> bytes:
    """The init picture moved ``strength`` of the way towards ``drawn`` (both the same size), as PNG."""
    with Image.open(io.BytesIO(init)) as a, Image.open(io.BytesIO(drawn)) as b:
        out = io.BytesIO()
        Image.blend(a.convert("RGB"), b.convert("RGB"), strength).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in {"yes", "true", "1"})


class FakeModelsLab(ImageApiFake):
    """ModelsLab text2img with queued jobs and self-hosted output URLs (see module doc)."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        legacy_spelling: bool = False,
        queue_all: bool = False,
        pending_fetches: int = 1,
        eta: float = 0.05,
        spam_filter_seconds: float = 0.0,
        model_ids: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.legacy_spelling = legacy_spelling
        self.queue_all = queue_all
        self.pending_fetches = pending_fetches
        self.eta = eta
        self.spam_filter_seconds = spam_filter_seconds
        self.model_ids = model_ids
        self.fetch_calls: list[Call] = []
        self.image_gets: list[str] = []
        self.jobs: dict[int, Job] = {}
        self.stored: dict[str, StoredImage] = {}
        self.img2img_inputs: list[bytes] = []
        self._next_id = 12202888
        self._seen_bodies: dict[str, float] = {}
        for path in ("/api/v6/images/text2img", "/api/v3/text2img"):
            self.app.router.add_post(path, self._text2img)
        self.app.router.add_post("/api/v6/images/img2img", self._img2img)
        for path in ("/api/v6/images/fetch/{id}", "/api/v6/images/fetch", "/api/v3/fetch/{id}"):
            self.app.router.add_post(path, self._fetch)
        self.app.router.add_get("/generations/{name}", self._get_image)

    # -- planned faults ----------------------------------------------------------------------------
    @property
    def message_key(self) -> str:
        return "messege" if self.legacy_spelling else "message"

    def _error_body(self, message: Any, **extra: Any) -> dict[str, Any]:
        return {"status": "error", self.message_key: message, **extra}

    def _failed_body(self) -> dict[str, Any]:
        return {"status": "failed", "id": "", self.message_key: "Failed, Try Again", "output": ""}

    def push_error(self, message: Any, **extra: Any) -> Fault:
        return self.push(Fault(RESPONSE, body=self._error_body(message, **extra)))

    def push_invalid_key(self) -> Fault:
        return self.push_error("Invalid Api Key", tip=INVALID_KEY_TIP)

    def push_rate_limited(self) -> Fault:
        return self.push_error("Rate limit exceeded", tips=RATE_LIMIT_TIPS)

    def push_failed(self) -> Fault:
        return self.push(Fault(RESPONSE, body=self._failed_body()))

    def push_processing(
        self, pending_fetches: int | None = None, eta: float | None = None, outcome: str = "success"
    ) -> Fault:
        options = {"pending_fetches": pending_fetches, "eta": eta, "outcome": outcome}
        return self.push(Fault(PROCESSING, options=options))

    def push_content_filtered(self) -> Fault:
        return self.push(Fault(CONTENT_FILTERED))

    def push_late_image(self, gets: int = 1) -> Fault:
        return self.push(Fault(LATE_IMAGE, options={"gets": gets}))

    # -- generate ----------------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors["prompt"] = ["The prompt field is required."]
        params: dict[str, Any] = {"prompt": prompt, "negative_prompt": body.get("negative_prompt") or ""}
        rules = (
            ("width", 512, 1, 1024, True),
            ("height", 512, 1, 1024, True),
            ("samples", 1, 1, 4, True),
            ("num_inference_steps", 30, 1, 50, True),
            ("guidance_scale", 7.5, 1, 20, False),
            ("seed", None, 0, 2**64, True),
        )
        for name, default, low, high, integer in rules:
            params[name], problem = _coerce(body, name, default, low, high, integer)
            if problem:
                errors[name] = [problem]
        return params, errors

    def _spam(self, call: Call) -> bool:
        if self.spam_filter_seconds <= 0:
            return False
        canonical = json.dumps(call.body, sort_keys=True)
        now = time.monotonic()
        last = self._seen_bodies.get(canonical)
        self._seen_bodies[canonical] = now
        return last is not None and now - last < self.spam_filter_seconds

    def _init_image(self, body: dict[str, Any], errors: dict[str, list[str]]) -> tuple[bytes | None, float]:
        """img2img's own fields: the init image's bytes (None for a URL) and the strength; problems into ``errors``."""
        strength, problem = _coerce(body, "strength", 0.7, 0, 1, False)
        if problem:
            errors["strength"] = [problem]
        value = body.get("init_image")
        if not isinstance(value, str) or not value.strip():
            errors["init_image"] = ["The init image field is required."]
            return None, strength
        if value.startswith(("http://", "https://")):
            return None, strength
        if not _truthy(body.get("base64")):
            errors["init_image"] = ["The init image must be a valid URL."]
            return None, strength
        encoded = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
        try:
            data = base64.b64decode(encoded, validate=True)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
        except (binascii.Error, ValueError, OSError):
            errors["init_image"] = ["The init image must be a valid image."]
            return None, strength
        return data, strength

    async def _text2img(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, img2img=False)

    async def _img2img(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, img2img=True)

    async def _generate(self, request: web.Request, *, img2img: bool) -> web.StreamResponse:
        call = await self.record_generate(request)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("key") != self.api_key:
            return web.json_response(self._error_body("Invalid Api Key", tip=INVALID_KEY_TIP))
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        if self._spam(call):
            return web.json_response(self._error_body("Rate limit exceeded", tips=RATE_LIMIT_TIPS))
        if self.model_ids is not None and body.get("model_id") not in self.model_ids:
            return web.json_response(self._error_body("Model id not found"))
        params, errors = self._validate(body)
        init, strength = self._init_image(body, errors) if img2img else (None, None)
        if errors:
            return web.json_response(self._error_body(errors))
        if init is not None:
            self.img2img_inputs.append(init)
            with Image.open(io.BytesIO(init)) as img:  # the output follows the init image's size
                params["width"], params["height"] = img.size

        job_id = self._next_id
        self._next_id += 1
        seed = params["seed"] if params["seed"] is not None else self.draw_seed()
        width, height = params["width"], params["height"]
        as_base64 = _truthy(body.get("base64"))
        prefix = str(uuid.UUID(int=self.rng.getrandbits(128)))
        names, urls = [], []
        for i in range(params["samples"]):
            if fault is not None and fault.kind == CONTENT_FILTERED:
                image = blank_png(width, height)
            elif init is not None and strength is not None and (fault is None or fault.kind not in _IMAGE_FAULTS):
                image = _mixed(init, png_bytes(width, height, seed + i), strength)
            else:
                image = self.image(fault, width, height, seed + i)
            name = f"{prefix}-{i}.base64" if as_base64 else f"{prefix}-{i}.png"
            stored = (
                StoredImage(base64.b64encode(image), "text/plain") if as_base64 else StoredImage(image, "image/png")
            )
            if fault is not None and fault.kind == LATE_IMAGE:
                stored.not_found_left = fault.options["gets"]
            self.stored[name] = stored
            names.append(name)
            urls.append(f"{self.url}/generations/{name}")
        meta = {
            "prompt": params["prompt"],
            "negative_prompt": params["negative_prompt"],
            "width": width,
            "height": height,
            "n_samples": params["samples"],
            "num_inference_steps": params["num_inference_steps"],
            "guidance_scale": params["guidance_scale"],
            "seed": seed,
            "model_id": body.get("model_id"),
            "safety_checker": body.get("safety_checker", "no"),
            "base64": "yes" if as_base64 else "no",
            "file_prefix": prefix,
            "outdir": "out",
            "webhook": body.get("webhook"),
            "track_id": body.get("track_id"),
        }
        if img2img:
            meta["strength"] = strength

        queued = self.queue_all or (fault is not None and fault.kind == PROCESSING)
        if not queued:
            return web.json_response(self._success(job_id, urls, meta))
        options = fault.options if fault is not None and fault.kind == PROCESSING else {}
        pending = options.get("pending_fetches")
        eta = options.get("eta")
        job = Job(
            id=job_id,
            urls=urls,
            names=names,
            meta=meta,
            pending_fetches=self.pending_fetches if pending is None else pending,
            outcome=options.get("outcome", "success"),
            eta=self.eta if eta is None else eta,
        )
        self.jobs[job_id] = job
        for name in names:
            self.stored[name].ready = False
        return web.json_response(
            {
                "status": "processing",
                "tip": PROCESSING_TIP,
                "eta": job.eta,
                self.message_key: FETCH_LATER,
                "fetch_result": f"{self.url}/api/v6/images/fetch/{job_id}",
                "id": job_id,
                "output": [],
                "meta": meta,
                "future_links": urls,
            }
        )

    def _success(self, job_id: int, urls: list[str], meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": "success",
            "generationTime": round(0.5 + self.rng.random() * 2, 2),
            "id": job_id,
            "output": urls,
            "proxy_links": urls,
            "meta": meta,
        }

    # -- fetch and images --------------------------------------------------------------------------
    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        call = await Call.from_request(request)
        self.fetch_calls.append(call)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("key") != self.api_key:
            return web.json_response(self._error_body("Invalid Api Key", tip=INVALID_KEY_TIP))
        raw_id = request.match_info.get("id", body.get("request_id"))
        try:
            job = self.jobs[int(str(raw_id))]
        except (KeyError, ValueError):
            return web.json_response(self._error_body("Request not found"))
        if job.pending_fetches > 0:
            job.pending_fetches -= 1
            return web.json_response(
                {
                    "status": "processing",
                    "id": job.id,
                    "eta": job.eta,
                    self.message_key: FETCH_LATER,
                    "fetch_result": f"{self.url}/api/v6/images/fetch/{job.id}",
                    "output": [],
                    "future_links": job.urls,
                }
            )
        if job.outcome != "success":
            return web.json_response(
                {"status": "failed", "id": job.id, self.message_key: "Failed, Try Again", "output": []}
            )
        job.done = True
        for name in job.names:
            self.stored[name].ready = True
        return web.json_response(self._success(job.id, job.urls, job.meta))

    async def _get_image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.image_gets.append(name)
        stored = self.stored.get(name)
        if stored is not None and stored.ready and stored.not_found_left > 0:
            stored.not_found_left -= 1
            stored_now = None
        else:
            stored_now = stored if stored is not None and stored.ready else None
        if stored_now is None:
            text = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>"
            return web.Response(status=404, text=text, content_type="application/xml")
        return web.Response(body=stored_now.data, content_type=stored_now.content_type)
