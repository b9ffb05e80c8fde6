"""A fake AUTOMATIC1111 stable-diffusion-webui API (``--api``), on 127.0.0.1.

Wire format (reference: shared/reference/backends.md; A1111's ``modules/api/api.py``):

- ``POST /sdapi/v1/txt2img`` with ``{"prompt", "negative_prompt", "styles", "seed", "subseed",
  "sampler_name", "sampler_index", "scheduler", "steps", "cfg_scale", "width", "height", "batch_size",
  "n_iter", "override_settings", "send_images", "save_images", ...}`` blocks for ``duration`` seconds
  (one job at a time, like A1111's queue lock; a second request waits) and answers
  ``{"images": [b64 PNG...], "parameters": {...request with defaults}, "info": "<JSON string>"}``
  with ``batch_size * n_iter`` images (plus a grid first when ``save_images`` is true and there are 2+,
  as A1111 does; ``index_of_first_image`` in info says so). Images are real PNGs of width x height
  rounded down to multiples of 8, as the latent space does. ``info`` holds ``seed``, ``all_seeds``
  (``seed + i``), ``subseed``, ``all_subseeds``, ``infotexts``, ``sd_model_name``...; seed -1 draws one.
- ``POST /sdapi/v1/img2img``: the same fields, validation, queue lock, progress and answer as txt2img, plus
  ``init_images`` (a list of base64 pictures, a ``data:image/...;base64,`` prefix stripped; missing -> 404
  ``"Init image not found"``, not decodable as an image -> 500 ``"Invalid encoded image"``, as A1111's
  ``decode_base64_to_image``), ``resize_mode``, ``denoising_strength`` (default 0.75), ``image_cfg_scale``,
  ``include_init_images``, ``mask``... Images are width x height (rounded down to multiples of 8) whatever the
  init image's size. The decoded init images of each call are in ``img2img_inputs``.
- ``GET /sdapi/v1/upscalers`` -> ``[{"name", "model_name", "model_path", "model_url", "scale"}]``: ``None``,
  ``Lanczos``, ``Nearest``, then the constructor's ``upscalers`` (default ``R-ESRGAN 4x+``, ``ESRGAN_4x``).
- ``POST /sdapi/v1/extra-single-image`` with ``{"image", "resize_mode" (0: by ``upscaling_resize``, 1: to
  ``upscaling_resize_w`` x ``_h``), "upscaling_resize", "upscaler_1", "upscaler_2", ...}`` (under the same
  queue lock) -> ``{"html_info": "<p>...</p>", "image": "<b64 PNG>"}``: the input resized (Lanczos) to
  ``int(side * upscaling_resize)``. An upscaler name not listed -> 400 ``"Invalid upscaler, needs to be one of
  these: None , Lanczos , ..."`` (backends.md 5.2, some versions); a ``resize_mode`` other than 0/1 -> 422;
  a bad image -> 500 ``"Invalid encoded image"``. Recorded in ``extras_calls``.
- ``GET /sdapi/v1/progress`` -> ``{"progress", "eta_relative", "state": {"skipped", "interrupted",
  "stopping_generation", "job", "job_count", "job_timestamp", "job_no", "sampling_step",
  "sampling_steps"}, "current_image": null, "textinfo": null}`` computed like A1111 from the running
  job (progress 0 and job_count 0 when idle).
- ``POST /sdapi/v1/interrupt`` -> ``{}``: the running job stops at once and returns the images of the
  batches it started. ``GET /sdapi/v1/samplers`` -> ``[{"name", "aliases", "options"}]``;
  ``GET /sdapi/v1/sd-models`` -> ``[{"title", "model_name", "hash", "sha256", "filename", "config"}]``;
  ``GET /sdapi/v1/options`` -> ``{"sd_model_checkpoint", ...}``.
- Errors: A1111's handler shape ``{"error", "detail", "body", "errors"}``: unknown sampler -> 404
  ``detail: "Sampler not found"``; with ``auth`` set, every route needs HTTP Basic: missing -> 401
  ``"Not authenticated"``, wrong -> 401 ``"Incorrect username or password"`` (``WWW-Authenticate:
  Basic``). Wrong types -> 422 FastAPI/pydantic-v1 ``{"detail": [{"loc": ["body", field], "msg",
  "type"}]}`` (numbers in strings are coerced as pydantic v1 does); body not JSON -> 422
  ``value_error.jsondecode``.

Usage::

    async with FakeA1111(auth=("user", "pass"), duration=0.3) as fake:
        ...  # POST txt2img on one connection, GET progress on another
        fake.push_oom()
        fake.generate_calls[-1].body["sampler_name"]

Constructor: ``FakeA1111(auth=None, duration=0.05, models=MODELS, samplers=SAMPLERS, upscalers=UPSCALERS)``.

Planned faults (FIFO, one per authenticated txt2img, img2img or extra-single-image; the image faults change the
picture an extra-single-image answers with; common ones in ``tests.fakes.image_api``:
``push_delay`` (waits before the job starts), ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_response``):

- ``push_status(status, detail="", error="HTTPException", errors=None)``: an A1111-shaped error.
- ``push_oom()``: 500 ``{"error": "OutOfMemoryError", ..., "errors": "CUDA out of memory. ..."}``.

Recorded: ``generate_calls: list[Call]`` (txt2img and img2img), ``img2img_inputs: list[list[bytes]]``,
``extras_calls: list[Call]``, ``interrupts`` (count), ``max_concurrent_jobs``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import math
import re
import time
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
from tests.fakes.images import png_bytes

VERSION = "v1.10.1"
SAMPLERS: list[dict[str, Any]] = [
    {"name": "DPM++ 2M Karras", "aliases": ["k_dpmpp_2m_ka"], "options": {"scheduler": "karras"}},
    {
        "name": "DPM++ SDE Karras",
        "aliases": ["k_dpmpp_sde_ka"],
        "options": {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"},
    },
    {
        "name": "DPM++ 2M SDE Karras",
        "aliases": ["k_dpmpp_2m_sde_ka"],
        "options": {"scheduler": "karras", "brownian_noise": "True"},
    },
    {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"], "options": {"uses_ensd": "True"}},
    {"name": "Euler", "aliases": ["k_euler"], "options": {}},
    {"name": "LMS", "aliases": ["k_lms"], "options": {}},
    {"name": "Heun", "aliases": ["k_heun"], "options": {"second_order": "True"}},
    {"name": "DPM2", "aliases": ["k_dpm_2"], "options": {"discard_next_to_last_sigma": "True"}},
    {
        "name": "DPM2 a",
        "aliases": ["k_dpm_2_a"],
        "options": {"discard_next_to_last_sigma": "True", "uses_ensd": "True"},
    },
    {"name": "DPM++ 2S a", "aliases": ["k_dpmpp_2s_a"], "options": {"second_order": "True", "uses_ensd": "True"}},
    {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {}},
    {"name": "DPM++ SDE", "aliases": ["k_dpmpp_sde"], "options": {"second_order": "True", "brownian_noise": "True"}},
    {"name": "DPM++ 2M SDE", "aliases": ["k_dpmpp_2m_sde_ka"], "options": {"brownian_noise": "True"}},
    {"name": "LMS Karras", "aliases": ["k_lms_ka"], "options": {"scheduler": "karras"}},
    {
        "name": "DPM2 Karras",
        "aliases": ["k_dpm_2_ka"],
        "options": {"scheduler": "karras", "discard_next_to_last_sigma": "True"},
    },
    {
        "name": "DPM2 a Karras",
        "aliases": ["k_dpm_2_a_ka"],
        "options": {"scheduler": "karras", "discard_next_to_last_sigma": "True", "uses_ensd": "True"},
    },
    {"name": "DDIM", "aliases": [], "options": {}},
    {"name": "PLMS", "aliases": [], "options": {}},
    {"name": "UniPC", "aliases": [], "options": {}},
]
# (name, scale, model file): what an A1111 with its built-in and one downloaded ESRGAN model lists after the three
# non-model upscalers (None, Lanczos, Nearest).
UPSCALERS: list[tuple[str, float, str | None]] = [
    ("R-ESRGAN 4x+", 4, "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"),
    ("ESRGAN_4x", 4, "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"),
]
MODELS = ("sd_xl_base_1.0.safetensors [31e35c80fc]", "v1-5-pruned-emaonly.safetensors [6ce0161689]")
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.50 GiB (GPU 0; 7.79 GiB total capacity; 4.12 GiB already "
    "allocated; 1.20 GiB free; 4.30 GiB reserved in total by PyTorch)"
)

# field -> (pydantic-v1 kind, default). Every field is Optional: null means the default.
FIELDS: dict[str, tuple[str, Any]] = {
    "prompt": ("str", ""),
    "negative_prompt": ("str", ""),
    "styles": ("list", []),
    "seed": ("int", -1),
    "subseed": ("int", -1),
    "subseed_strength": ("float", 0.0),
    "sampler_name": ("str", None),
    "sampler_index": ("str", "Euler"),
    "scheduler": ("str", None),
    "batch_size": ("int", 1),
    "n_iter": ("int", 1),
    "steps": ("int", 50),
    "cfg_scale": ("float", 7.0),
    "width": ("int", 512),
    "height": ("int", 512),
    "restore_faces": ("bool", None),
    "tiling": ("bool", None),
    "enable_hr": ("bool", False),
    "denoising_strength": ("float", None),
    "override_settings": ("dict", None),
    "override_settings_restore_afterwards": ("bool", True),
    "send_images": ("bool", True),
    "save_images": ("bool", False),
    "script_args": ("list", []),
    "alwayson_scripts": ("dict", {}),
}
# img2img's fields beyond txt2img's (StableDiffusionProcessingImg2Img); its denoising_strength defaults to 0.75.
IMG2IMG_FIELDS: dict[str, tuple[str, Any]] = {
    **{k: v for k, v in FIELDS.items() if k != "enable_hr"},
    "init_images": ("list", None),
    "resize_mode": ("int", 0),
    "denoising_strength": ("float", 0.75),
    "image_cfg_scale": ("float", None),
    "mask": ("str", None),
    "mask_blur": ("int", 4),
    "inpainting_fill": ("int", 0),
    "inpaint_full_res": ("bool", True),
    "include_init_images": ("bool", False),
    "initial_noise_multiplier": ("float", None),
}
# ExtrasSingleImageRequest (resize_mode is Literal[0, 1], checked apart).
EXTRAS_FIELDS: dict[str, tuple[str, Any]] = {
    "image": ("str", ""),
    "resize_mode": ("int", 0),
    "show_extras_results": ("bool", True),
    "gfpgan_visibility": ("float", 0.0),
    "codeformer_visibility": ("float", 0.0),
    "codeformer_weight": ("float", 0.0),
    "upscaling_resize": ("float", 2.0),
    "upscaling_resize_w": ("int", 512),
    "upscaling_resize_h": ("int", 512),
    "upscaling_crop": ("bool", True),
    "upscaler_1": ("str", "None"),
    "upscaler_2": ("str", "None"),
    "extras_upscaler_2_visibility": ("float", 0.0),
    "upscale_first": ("bool", False),
}
_TYPE_ERRORS = {
    "int": ("value is not a valid integer", "type_error.integer"),
    "float": ("value is not a valid float", "type_error.float"),
    "str": ("str type expected", "type_error.str"),
    "bool": ("value could not be parsed to a boolean", "type_error.bool"),
    "list": ("value is not a valid list", "type_error.list"),
    "dict": ("value is not a valid dict", "type_error.dict"),
}
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _coerce(kind: str, value: Any) -> Any:
    """Pydantic v1 coercion of one value; ValueError when it would refuse it."""
    if kind == "int":
        if isinstance(value, bool | int):
            return int(value)
        if isinstance(value, float):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
    elif kind == "float":
        if isinstance(value, bool | int | float):
            return float(value)
        if isinstance(value, str):
            return float(value)  # raises ValueError by itself
    elif kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif kind == "list" and isinstance(value, list | tuple):
        return list(value)
    elif kind == "dict" and isinstance(value, dict):
        return value
    raise ValueError(kind)


def decode_image(encoding: str) -> bytes | None:
    """A1111's ``decode_base64_to_image``: the picture's bytes (a ``data:`` prefix stripped), or None when it is not
    base64 of an image."""
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1] if ";" in encoding and "," in encoding else ""
    try:
        data = base64.b64decode(encoding, validate=True)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception:
        return None
    return data


def a1111_error(status: int, detail: Any, error: str = "HTTPException", errors: str | None = None) -> dict[str, Any]:
    """A1111's exception-handler body."""
    return {
        "error": error,
        "detail": detail,
        "body": "",
        "errors": errors if errors is not None else f"{status}: {detail}",
    }


@dataclass
class _Job:
    """The running txt2img, as the progress endpoint sees it."""

    n_iter: int
    steps: int
    duration: float
    timestamp: str
    started: float = field(default_factory=time.monotonic)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False
    name: str = "scripts_txt2img"

    def position(self) -> tuple[int, int]:
        """(job_no, sampling_step) reached so far."""
        fraction = min(1.0, (time.monotonic() - self.started) / self.duration) if self.duration > 0 else 1.0
        done_batches = fraction * self.n_iter
        job_no = min(int(done_batches), self.n_iter - 1)
        step = min(int((done_batches - job_no) * self.steps), self.steps)
        return job_no, step


def _grid_size(count: int, width: int, height: int) -> tuple[int, int]:
    rows = max(1, min(count, round(math.sqrt(count))))
    cols = math.ceil(count / rows)
    return cols * width, rows * height


_RECORDED_FIRST = frozenset({"/sdapi/v1/txt2img", "/sdapi/v1/img2img"})


class FakeA1111(ImageApiFake):
    """AUTOMATIC1111 webui API: blocking txt2img with live progress (see module doc)."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        duration: float = 0.05,
        models: tuple[str, ...] | list[str] = MODELS,
        samplers: list[dict[str, Any]] | None = None,
        upscalers: list[tuple[str, float, str | None]] | None = None,
    ) -> None:
        super().__init__()
        self.auth = auth
        self.duration = duration
        self.models = list(models)
        self.samplers = SAMPLERS if samplers is None else samplers
        self.upscalers = UPSCALERS if upscalers is None else upscalers
        self.img2img_inputs: list[list[bytes]] = []
        self.extras_calls: list[Call] = []
        self.interrupts = 0
        self.max_concurrent_jobs = 0
        self.job: _Job | None = None
        self._lock = asyncio.Lock()
        self._running = 0
        self._last_timestamp = "0"

        @web.middleware
        async def _basic_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
            if request.path in _RECORDED_FIRST:  # it records the call first, then checks
                return await handler(request)
            denied = self._auth_error(request)
            return denied if denied is not None else await handler(request)

        self.app.middlewares.append(_basic_auth)
        self.app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
        self.app.router.add_post("/sdapi/v1/img2img", self._img2img)
        self.app.router.add_post("/sdapi/v1/extra-single-image", self._extras)
        self.app.router.add_get("/sdapi/v1/upscalers", self._upscalers)
        self.app.router.add_get("/sdapi/v1/progress", self._progress)
        self.app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        self.app.router.add_get("/sdapi/v1/samplers", self._samplers)
        self.app.router.add_get("/sdapi/v1/sd-models", self._sd_models)
        self.app.router.add_get("/sdapi/v1/options", self._options)

    # -- planned faults ----------------------------------------------------------------------------
    def push_status(
        self, status: int, detail: Any = "", error: str = "HTTPException", errors: str | None = None
    ) -> Fault:
        return self.push(Fault(RESPONSE, status=status, body=a1111_error(status, detail, error, errors)))

    def push_oom(self) -> Fault:
        return self.push_status(500, "", error="OutOfMemoryError", errors=OOM_MESSAGE)

    # -- helpers -----------------------------------------------------------------------------------
    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.auth is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            detail = "Not authenticated"
        else:
            try:
                user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", None
            if (user, password) == self.auth:
                return None
            detail = "Incorrect username or password" if password is not None else "Invalid authentication credentials"
        return web.json_response(a1111_error(401, detail), status=401, headers={"WWW-Authenticate": "Basic"})

    def _model_title(self, override: dict[str, Any] | None) -> str:
        wanted = (override or {}).get("sd_model_checkpoint")
        for title in self.models:
            if wanted and wanted in (title, title.split(" [")[0], title.split(".")[0]):
                return title
        return self.models[0]

    def _state(self) -> dict[str, Any]:
        job = self.job
        if job is None:
            return {
                "skipped": False,
                "interrupted": False,
                "stopping_generation": False,
                "job": "",
                "job_count": 0,
                "job_timestamp": self._last_timestamp,
                "job_no": 0,
                "sampling_step": 0,
                "sampling_steps": 0,
            }
        job_no, step = job.position()
        return {
            "skipped": False,
            "interrupted": job.interrupted,
            "stopping_generation": False,
            "job": f"Batch {job_no + 1} out of {job.n_iter}" if job.n_iter > 1 else job.name,
            "job_count": job.n_iter,
            "job_timestamp": job.timestamp,
            "job_no": job_no,
            "sampling_step": step,
            "sampling_steps": job.steps,
        }

    @staticmethod
    def _validate(
        body: Any, fields: dict[str, tuple[str, Any]] = FIELDS
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(body, dict):
            return {}, [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
        params: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for name, (kind, default) in fields.items():
            value = body.get(name)
            if value is None:
                params[name] = default
                continue
            try:
                params[name] = _coerce(kind, value)
            except ValueError:
                msg, error_type = _TYPE_ERRORS[kind]
                errors.append({"loc": ["body", name], "msg": msg, "type": error_type})
        return params, errors

    # -- handlers ----------------------------------------------------------------------------------
    @staticmethod
    def _body_error(call: Call) -> web.Response | None:
        """FastAPI's 422 for a missing or non-JSON body."""
        if not call.raw_body:
            detail = [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
            return web.json_response({"detail": detail}, status=422)
        if call.body is None:
            try:
                json.loads(call.raw_body)
            except ValueError as exc:
                position = getattr(exc, "pos", 0)
                error: dict[str, Any] = {"loc": ["body", position], "msg": str(exc), "type": "value_error.jsondecode"}
                return web.json_response({"detail": [error]}, status=422)
        return None

    async def _txt2img(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, img2img=False)

    async def _img2img(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, img2img=True)

    async def _generate(self, request: web.Request, *, img2img: bool) -> web.StreamResponse:
        call = await self.record_generate(request)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        refused = self._body_error(call)
        if refused is not None:
            return refused
        params, errors = self._validate(call.body, IMG2IMG_FIELDS if img2img else FIELDS)
        if img2img and isinstance(params.get("init_images"), list):
            errors += [
                {"loc": ["body", "init_images", i], "msg": "str type expected", "type": "type_error.str"}
                for i, item in enumerate(params["init_images"])
                if not isinstance(item, str)
            ]
        if errors:
            return web.json_response({"detail": errors}, status=422)
        sampler = params["sampler_name"] or params["sampler_index"]
        if sampler not in {entry["name"] for entry in self.samplers}:
            return web.json_response(a1111_error(404, "Sampler not found"), status=404)
        if img2img:
            if params["init_images"] is None:
                return web.json_response(a1111_error(404, "Init image not found"), status=404)
            decoded = [decode_image(item) for item in params["init_images"]]
            if any(data is None for data in decoded):
                return web.json_response(a1111_error(500, "Invalid encoded image"), status=500)
            self.img2img_inputs.append([data for data in decoded if data is not None])

        async with self._lock:
            return await self._run(params, sampler, fault, img2img=img2img)

    async def _run(
        self, params: dict[str, Any], sampler: str, fault: Fault | None, *, img2img: bool = False
    ) -> web.Response:
        batch_size, n_iter = max(1, params["batch_size"]), max(1, params["n_iter"])
        steps = max(1, params["steps"])
        width, height = max(8, params["width"] // 8 * 8), max(8, params["height"] // 8 * 8)
        job = _Job(
            n_iter=n_iter,
            steps=steps,
            duration=self.duration,
            timestamp=time.strftime("%Y%m%d%H%M%S"),
            name="scripts_img2img" if img2img else "scripts_txt2img",
        )
        self.job = job
        self._running += 1
        self.max_concurrent_jobs = max(self.max_concurrent_jobs, self._running)
        try:
            if not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.wake.wait(), job.duration)
            batches = job.position()[0] + 1 if job.interrupted else n_iter
        finally:
            self._running -= 1
            self.job = None
            self._last_timestamp = job.timestamp

        seed = params["seed"] if params["seed"] != -1 else self.rng.randrange(2**32)
        subseed = params["subseed"] if params["subseed"] != -1 else self.rng.randrange(2**32)
        count = self.image_count(fault, batch_size * batches)
        all_seeds = [seed + i for i in range(count)]
        title = self._model_title(params["override_settings"])
        model_name, model_hash = title.split(" [")[0].rsplit(".", 1)[0], title.rsplit("[", 1)[-1].rstrip("]")
        prompt, negative = params["prompt"], params["negative_prompt"]
        infotexts = [
            f"{prompt}\nNegative prompt: {negative}\nSteps: {steps}, Sampler: {sampler}, CFG scale: "
            f"{params['cfg_scale']:g}, Seed: {s}, Size: {width}x{height}, Model hash: {model_hash}, "
            f"Model: {model_name}, Version: {VERSION}"
            for s in all_seeds
        ]
        images = [self.image(fault, width, height, s) for s in all_seeds]
        first = 0
        if params["save_images"] and count >= 2:
            images.insert(0, png_bytes(*_grid_size(count, width, height), seed))
            infotexts.insert(0, infotexts[0])
            first = 1
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * count,
            "negative_prompt": negative,
            "all_negative_prompts": [negative] * count,
            "seed": seed,
            "all_seeds": all_seeds,
            "subseed": subseed,
            "all_subseeds": [subseed + i for i in range(count)],
            "subseed_strength": params["subseed_strength"],
            "width": width,
            "height": height,
            "sampler_name": sampler,
            "cfg_scale": params["cfg_scale"],
            "steps": steps,
            "batch_size": batch_size,
            "restore_faces": bool(params["restore_faces"]),
            "face_restoration_model": None,
            "sd_model_name": model_name,
            "sd_model_hash": model_hash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": params["denoising_strength"],
            "extra_generation_params": {},
            "index_of_first_image": first,
            "infotexts": infotexts,
            "styles": params["styles"],
            "job_timestamp": job.timestamp,
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        encoded = [base64.b64encode(image).decode() for image in images] if params["send_images"] else []
        return web.json_response({"images": encoded, "parameters": params, "info": json.dumps(info)})

    async def _progress(self, request: web.Request) -> web.StreamResponse:
        job = self.job
        if job is None:
            return web.json_response(
                {"progress": 0, "eta_relative": 0, "state": self._state(), "current_image": None, "textinfo": None}
            )
        state = self._state()
        progress = 0.01 + state["job_no"] / job.n_iter + state["sampling_step"] / (job.n_iter * job.steps)
        elapsed = time.monotonic() - job.started
        eta_relative = elapsed / progress - elapsed
        answer = {
            "progress": min(progress, 1.0),
            "eta_relative": eta_relative,
            "state": state,
            "current_image": None,
            "textinfo": None,
        }
        return web.json_response(answer)

    async def _upscalers(self, request: web.Request) -> web.StreamResponse:
        listed: list[dict[str, Any]] = [
            {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
            {"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
            {"name": "Nearest", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
        ]
        for name, scale, url in self.upscalers:
            model = name.split(" ")[0]
            path = f"/stable-diffusion-webui/models/ESRGAN/{model}.pth" if url else None
            listed.append({"name": name, "model_name": model, "model_path": path, "model_url": url, "scale": scale})
        return web.json_response(listed)

    def _upscaler_names(self) -> list[str]:
        return ["None", "Lanczos", "Nearest", *(name for name, _, _ in self.upscalers)]

    async def _extras(self, request: web.Request) -> web.StreamResponse:
        call = await Call.from_request(request)
        self.extras_calls.append(call)
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        refused = self._body_error(call)
        if refused is not None:
            return refused
        params, errors = self._validate(call.body, EXTRAS_FIELDS)
        if not errors and params["resize_mode"] not in (0, 1):
            errors.append(
                {
                    "loc": ["body", "resize_mode"],
                    "msg": "unexpected value; permitted: 0, 1",
                    "type": "value_error.const",
                    "ctx": {"given": params["resize_mode"], "permitted": [0, 1]},
                }
            )
        if errors:
            return web.json_response({"detail": errors}, status=422)
        names = self._upscaler_names()
        for key in ("upscaler_1", "upscaler_2"):
            if params[key] is not None and params[key].lower() not in {name.lower() for name in names}:
                detail = f"Invalid upscaler, needs to be one of these: {' , '.join(names)}"
                return web.json_response(a1111_error(400, detail), status=400)
        data = decode_image(params["image"])
        if data is None:
            return web.json_response(a1111_error(500, "Invalid encoded image"), status=500)
        async with self._lock:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if params["resize_mode"] == 1:
                    size = (params["upscaling_resize_w"], params["upscaling_resize_h"])
                else:
                    size = (int(width * params["upscaling_resize"]), int(height * params["upscaling_resize"]))
                kind = fault.kind if fault is not None else None
                if kind in (NOT_IMAGE, BOMB, WRONG_SIZE, TRUNCATED, CORRUPT_PIXELS):
                    out = self.image(fault, *size, 0)
                else:
                    buffer = io.BytesIO()
                    img.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buffer, "PNG", compress_level=1)
                    out = buffer.getvalue()
        html = (
            f"<p>Postprocess upscale by: {params['upscaling_resize']:g}, "
            f"Postprocess upscaler: {params['upscaler_1']}</p>"
        )
        return web.json_response({"html_info": html, "image": base64.b64encode(out).decode()})

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        self.interrupts += 1
        if self.job is not None:
            self.job.interrupted = True
            self.job.wake.set()
        return web.json_response({})

    async def _samplers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.samplers)

    async def _sd_models(self, request: web.Request) -> web.StreamResponse:
        models = []
        for title in self.models:
            filename = title.split(" [")[0]
            short_hash = title.rsplit("[", 1)[-1].rstrip("]")
            models.append(
                {
                    "title": title,
                    "model_name": filename.rsplit(".", 1)[0],
                    "hash": short_hash,
                    "sha256": (short_hash * 7)[:64],
                    "filename": f"/stable-diffusion-webui/models/Stable-diffusion/{filename}",
                    "config": None,
                }
            )
        return web.json_response(models)

    async def _options(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"sd_model_checkpoint": self.models[0], "samples_format": "png", "CLIP_stop_at_last_layers": 1}
        )

    async def stop(self) -> None:
        self._closing.set()
        if self.job is not None:
            self.job.wake.set()
        await super().stop()
