"""AUTOMATIC1111 stable-diffusion-webui, started with ``--api``: reference/backends.md (sections 5.1-5.4).

Text-to-image is ``POST /sdapi/v1/txt2img``; drawing from a picture is ``POST /sdapi/v1/img2img`` with the same
fields plus ``init_images`` (the fitted picture, bare base64 PNG), ``resize_mode`` 0 and ``denoising_strength``
(``--strength``; A1111's own default 0.75 is ours). The Upscale button is ``POST /sdapi/v1/extra-single-image``
with ``upscaler_1`` = ``A1111_UPSCALER`` at ``upscaling_resize`` 2, the answer resized (off the loop) to exactly
twice the picture's sides if the server gave another size; it is offered when ``GET /sdapi/v1/upscalers`` lists
that upscaler."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx

from bot.backends import images
from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    Text,
    decode_b64,
    located,
    parse_json,
    provider_said,
    retry_after_header,
    send,
    wait_seconds,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.errors import BackendError, ConfigError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "a1111"
TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"
EXTRAS = "/sdapi/v1/extra-single-image"
UPSCALERS = "/sdapi/v1/upscalers"
PROGRESS = "/sdapi/v1/progress"
SAMPLERS = "/sdapi/v1/samplers"
MODELS = "/sdapi/v1/sd-models"
OPTIONS = "/sdapi/v1/options"
# A proxy in front of A1111 may rate limit without saying for how long.
DEFAULT_RATE_LIMIT_WAIT = 10.0
# A progress poll that takes longer than this is skipped; the next one will tell.
PROGRESS_TIMEOUT = 5.0
# Gateways in front of A1111 answer these when it is restarting or overloaded: the job did not run.
_TRANSIENT = frozenset({"http_502", "http_503", "http_504"})
# A1111's ``denoising_strength`` default (modules/processing.py): ours when --strength is not given.
DEFAULT_STRENGTH = 0.75
DEFAULT_UPSCALER = "R-ESRGAN 4x+"
# A1111_UPSCALER values that mean "no Upscale button" ("None" is A1111's upscaler that does not upscale).
_NO_UPSCALER = frozenset({"off", "none", "no", "false", "0"})
UPSCALE_FACTOR = 2
# An answer this far from the asked shape is not our picture upscaled: never stretched to fit.
_SHAPE_TOLERANCE = 0.02


def parse_auth(raw: str | None) -> tuple[str, str] | None:
    """``A1111_AUTH`` as (user, password). A1111 splits ``--api-auth`` entries at the colon, so one is required."""
    if raw is None or not raw.strip():
        return None
    user, sep, password = raw.strip().partition(":")
    if not sep or not user or not password:
        # Never echo the value: it is a secret, and without a colon it may be the password itself.
        raise ConfigError("config_invalid", variable="A1111_AUTH", value="***", expected=Msg("config.expect.user_pass"))
    return user, password


def parse_upscaler(raw: str | None) -> str | None:
    """``A1111_UPSCALER`` as the upscaler's name, or None for "no Upscale button"."""
    name = (raw or "").strip()
    return None if not name or name.casefold() in _NO_UPSCALER else name


def _retryable(exc: BackendError) -> bool:
    if exc.code == "backend_rate_limited":
        return True
    if exc.code != "backend_unavailable":
        return False
    return exc.params.get("reason") in RETRYABLE_TRANSPORT or exc.provider_code in _TRANSIENT


def _detail(answer: Any) -> Any:
    return answer.get("detail") if isinstance(answer, dict) else None


class A1111Backend(HttpBackend):
    name = "a1111"

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        progress_interval: float = 1.0,
        upscaler: str | None = DEFAULT_UPSCALER,
        upscaler_chosen: bool = False,
    ) -> None:
        if auth is not None:
            user, password = auth
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            redact.register(password, f"{user}:{password}", basic)
        # No capabilities yet: they are the server's samplers and models, asked for on first use.
        super().__init__(url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=None, auth=auth)
        self._url = url
        self._auth_user = auth[0] if auth else None
        self._progress_interval = progress_interval
        self._models: tuple[str, ...] = ()
        self._caps_lock = asyncio.Lock()
        self._upscaler = upscaler or None  # as configured (A1111_UPSCALER); None: no Upscale button
        # Set by the operator (not our default): then a server without it fails ``sdbot check``, like a typo would.
        self._upscaler_chosen = upscaler_chosen
        self._upscalers: tuple[str, ...] = ()  # the server's, fetched with the capabilities
        self._upscaler_name: str | None = None  # the configured one as the server spells it, when it has it

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "A1111_URL")
        return {
            "url": settings.a1111_url,
            "auth": parse_auth(settings.a1111_auth),
            "upscaler": parse_upscaler(settings.a1111_upscaler),
            "upscaler_chosen": "A1111_UPSCALER" in settings.explicit,
        }

    # -- capabilities ------------------------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        """Built from the server's samplers, models and (with ``A1111_UPSCALER`` set) upscalers once; concurrent
        first callers share one fetch. A failed fetch is not cached: the next call asks again. Drawing from pictures
        always (img2img is part of A1111's API); upscaling when the server lists the configured upscaler."""
        if self._caps is not None:
            return self._caps
        async with self._caps_lock:
            if self._caps is None:
                samplers = await self._samplers()
                self._models = await self._model_titles()
                if not self._models:
                    # No checkpoint: every txt2img would fail. The operator must install one.
                    raise BackendError("backend_config", provider=PROVIDER, provider_code="no_models")
                self._upscalers = await self._upscaler_names() if self._upscaler is not None else ()
                self._upscaler_name = _match(self._upscaler, self._upscalers)
                if self._upscaler is not None and self._upscaler_name is None:
                    log.warning("a1111 has no upscaler %r: no Upscale button (sdbot check lists them)", self._upscaler)
                self._caps = Capabilities(
                    backend=self.name,
                    samplers=samplers,
                    styles=(params.DEFAULT_STYLE,),
                    image_to_image=True,
                    strength=DEFAULT_STRENGTH,
                    upscale=self._upscaler_name is not None,
                )
                log.info("a1111 offers %d samplers and %d models", len(samplers), len(self._models))
        return self._caps

    async def _samplers(self) -> tuple[str, ...]:
        answer = await self._retry.run(functools.partial(self._get, SAMPLERS), _retryable)
        names = (
            [e["name"] for e in answer if isinstance(e, dict) and isinstance(e.get("name"), str)]
            if isinstance(answer, list)
            else []
        )
        if not names:
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="no_samplers")
        listed = set(names)
        ordered = [s for s in params.SAMPLERS if s in listed]
        return (*ordered, *(n for n in dict.fromkeys(names) if n not in ordered))

    async def _model_titles(self) -> tuple[str, ...]:
        answer = await self._retry.run(functools.partial(self._get, MODELS), _retryable)
        if not isinstance(answer, list):
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")
        return tuple(e["title"] for e in answer if isinstance(e, dict) and isinstance(e.get("title"), str))

    async def _upscaler_names(self) -> tuple[str, ...]:
        """The names ``GET /sdapi/v1/upscalers`` lists; none from a server without that route (an old fork)."""
        try:
            answer = await self._retry.run(functools.partial(self._get, UPSCALERS), _retryable)
        except BackendError as exc:
            if exc.provider_code != "http_404":
                raise
            log.warning("a1111 has no %s: no Upscale button", UPSCALERS)
            return ()
        if not isinstance(answer, list):
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")
        names = (e.get("name") for e in answer if isinstance(e, dict))
        return tuple(dict.fromkeys(n for n in names if isinstance(n, str) and n))

    async def _get(self, path: str) -> Any:
        return await self._answer(*await send(self._client, "GET", path, provider=PROVIDER))

    # -- generate ----------------------------------------------------------------------------------------

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        # ``user`` is not sent: a self-hosted A1111 has no notion of end users.
        if request.task == "upscale":
            return [await self._upscale(request, progress)]
        if request.style != params.DEFAULT_STYLE:
            # Validation against our capabilities makes this unreachable; never send a silent substitute.
            raise BackendError("backend_invalid_request", provider=PROVIDER, user_fault=True)
        body = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or "",
            "seed": request.seed if request.seed is not None else -1,
            "sampler_name": request.sampler_index,
            "steps": request.steps,
            "cfg_scale": request.cfg_scale,
            "width": request.width,
            "height": request.height,
            "batch_size": request.n,  # one batch: one pass on the GPU, seeds seed..seed+n-1
            "n_iter": 1,
            "send_images": True,
            "save_images": False,  # no copies on the server's disk, and no grid image in the answer
        }
        path, content = TXT2IMG, None
        if request.source is not None:
            # Drawing from the picture (fitted by the core to exactly width x height): resize_mode 0 ("just
            # resize") then changes nothing. Megabytes of base64 and JSON: built off the loop.
            path = IMG2IMG
            body["init_images"] = [await cpu.run(_b64, request.source.data)]
            body["resize_mode"] = 0
            body["denoising_strength"] = DEFAULT_STRENGTH if request.strength is None else request.strength
            content = await cpu.run(_json, body)
        reporter = _Progress(progress)
        watcher = asyncio.create_task(self._watch(reporter)) if progress is not None else None
        try:
            call = functools.partial(self._generate_call, path, body, content)
            answer = await self._retry.run(call, _retryable)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait([watcher])  # unlike awaiting it, never swallows our own cancellation
                if not watcher.cancelled() and watcher.exception() is not None:
                    log.warning("a1111 progress watcher failed: %s", type(watcher.exception()).__name__)
        out = await self._images(answer, request)
        await reporter.report(1.0)
        return out

    async def _generate_call(self, path: str, body: dict[str, Any], content: bytes | None) -> Any:
        """POST txt2img (``body`` as JSON) or img2img (``content``: ``body`` already serialized)."""
        if content is None:
            response, answer = await send(self._client, "POST", path, provider=PROVIDER, json=body)
        else:
            headers = {"Content-Type": "application/json"}
            response, answer = await send(
                self._client, "POST", path, provider=PROVIDER, content=content, headers=headers
            )
        if response.status_code == 404 and _detail(_quiet_json(response)) == "Sampler not found":
            # Our cached list is stale (the server restarted with other samplers): fetch it again next time.
            self._caps = None
            raise BackendError(
                "backend_invalid_request",
                provider=PROVIDER,
                provider_code="sampler_not_found",
                user_fault=True,
                sampler=body["sampler_name"],
            )
        return await self._answer(response, answer)

    async def _images(self, answer: Any, request: DrawRequest) -> list[GeneratedImage]:
        encoded = answer.get("images") if isinstance(answer, dict) else None
        if not isinstance(encoded, list) or not all(isinstance(item, str | memoryview) for item in encoded):
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")
        info = _info(answer.get("info"))
        first = info.get("index_of_first_image", 0)
        first = first if isinstance(first, int) and 0 <= first <= len(encoded) else 0
        encoded = encoded[first : first + request.n]  # skip a grid; extensions may append extra pictures
        if not encoded:
            raise BackendError("backend_bad_image", provider=PROVIDER, reason="empty")
        seeds = info.get("all_seeds")
        seeds = seeds if isinstance(seeds, list) else []
        # Decoding and inspecting megabytes is CPU work: off the event loop, every picture in one thread call.
        decoded = await cpu.run(_decode_all, encoded)
        out = []
        for i, (data, found) in enumerate(decoded):
            seed = seeds[i] if i < len(seeds) and isinstance(seeds[i], int) else None
            out.append(GeneratedImage(data, found.format, found.width, found.height, seed=seed))
        return out

    async def _upscale(self, request: DrawRequest, progress: ProgressCallback | None) -> GeneratedImage:
        """``request.source`` through ``A1111_UPSCALER`` at twice its sides (``/sdapi/v1/extra-single-image``),
        resized off the loop to exactly ``request.size`` when the server answered another size."""
        await self.capabilities()
        name, source = self._upscaler_name, request.source
        if source is None or name is None:  # the Upscale button is offered only with both
            raise BackendError(
                "backend_config", provider=PROVIDER, provider_code="no_upscaler", upscaler=self._upscaler
            )
        body = {
            "image": await cpu.run(_b64, source.data),
            "resize_mode": 0,  # scale by upscaling_resize
            "upscaling_resize": UPSCALE_FACTOR,
            "upscaler_1": name,
            "upscaler_2": "None",
            "extras_upscaler_2_visibility": 0,
            "gfpgan_visibility": 0,
            "codeformer_visibility": 0,
            "show_extras_results": True,
        }
        content = await cpu.run(_json, body)
        answer = await self._retry.run(functools.partial(self._extras, content, name), _retryable)
        encoded = answer.get("image") if isinstance(answer, dict) else None
        if not isinstance(encoded, str | memoryview) or not encoded:
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")
        data, found = await cpu.run(_to_size, encoded, request.width, request.height)
        await _Progress(progress).report(1.0)
        return GeneratedImage(data, found.format, found.width, found.height)

    async def _extras(self, content: bytes, name: str) -> Any:
        headers = {"Content-Type": "application/json"}
        response, answer = await send(self._client, "POST", EXTRAS, provider=PROVIDER, content=content, headers=headers)
        if response.status_code != 200 and _unknown_upscaler(response):
            # The server no longer has it (restarted with other models): ask for the list again next time.
            self._caps = None
            error = BackendError("backend_config", provider=PROVIDER, provider_code="unknown_upscaler", upscaler=name)
            raise located(provider_said(error, _detail(_quiet_json(response))), response)
        return await self._answer(response, answer)

    async def _watch(self, reporter: _Progress) -> None:
        """Poll the progress endpoint until cancelled. Best effort: a failed poll is skipped, never fatal."""
        while True:
            await asyncio.sleep(self._progress_interval)
            try:
                response = await self._client.get(
                    PROGRESS, params={"skip_current_image": "true"}, timeout=PROGRESS_TIMEOUT
                )
                answer = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("a1111 progress poll failed: %s", type(exc).__name__)
                continue
            if not isinstance(answer, dict):
                continue
            fraction = answer.get("progress")
            state = answer.get("state")
            jobs = state.get("job_count") if isinstance(state, dict) else None
            running = isinstance(jobs, int) and jobs > 0  # 0: idle, our request still waits for the queue lock
            if running and isinstance(fraction, int | float) and not isinstance(fraction, bool):
                # 1.0 is kept for "our images arrived"; the server says 1.0 while it still encodes them.
                await reporter.report(min(float(fraction), 0.99))

    # -- answers and errors ------------------------------------------------------------------------------

    async def _answer(self, response: httpx.Response, body: list[bytes]) -> Any:
        if response.status_code != 200:
            raise located(_http_error(response), response)
        try:
            return await parse_json(body)
        except ValueError:
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed_json") from None

    # -- check -------------------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """List the models (and samplers): proves the URL, ``--api`` and the credentials without generating. Then
        whether it draws from pictures, and whether the server has ``A1111_UPSCALER`` (listing the ones it has when
        not: a failed check when the operator set it, the Upscale button off when it is our default)."""
        auth = (
            Msg("check.a1111.auth_basic", {"user": self._auth_user})
            if self._auth_user
            else Msg("check.a1111.auth_none")
        )
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), self._url),
            (Msg("check.label.auth"), auth),
        ]
        try:
            self._caps = None  # a check always asks the server afresh
            caps = await self.capabilities()
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        shown = [*self._models[:5], *([f"+{len(self._models) - 5}"] if len(self._models) > 5 else [])]
        findings.append(
            (Msg("check.label.models"), Msg("check.a1111.models", {"count": len(self._models), "models": shown}))
        )
        findings.append((Msg("check.label.samplers"), ", ".join(caps.samplers)))
        try:
            options = await self._get(OPTIONS)
        except BackendError as exc:  # the model list already proved access; this is extra information
            findings.append((Msg("check.label.active_model"), exc))
        else:
            active = options.get("sd_model_checkpoint") if isinstance(options, dict) else None
            findings.append((Msg("check.label.active_model"), str(active or "?")))
        findings.append((Msg("check.label.img2img"), Msg("check.img2img_on", {"strength": caps.strength})))
        findings.append((Msg("check.label.upscale"), self._upscale_finding()))
        # A missing upscaler the operator named fails the check; our default missing only turns the button off.
        missing = self._upscaler is not None and self._upscaler_name is None
        return CheckReport(self.name, not (missing and self._upscaler_chosen), findings)

    def _upscale_finding(self) -> Msg:
        """Whether the Upscale button is offered, and if the configured upscaler is missing, what the server has."""
        if self._upscaler is None:
            return Msg("check.a1111.upscale_off")
        if self._upscaler_name is None:
            have = [name for name in self._upscalers if name != "None"]  # "None" does not upscale
            shown = [*have[:12], *([f"+{len(have) - 12}"] if len(have) > 12 else [])]
            return Msg("check.a1111.upscaler_missing", {"upscaler": self._upscaler, "upscalers": shown or ["-"]})
        return Msg("check.a1111.upscale_on", {"upscaler": self._upscaler_name})


class _Progress:
    """Forwards increasing fractions to the caller's callback; a failing callback (a chat edit that was
    refused) is logged and never fails the generation the user is waiting for."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0

    async def report(self, fraction: float) -> None:
        if self._callback is None or fraction <= self._last:
            return
        self._last = fraction
        try:
            await self._callback(fraction)
        except Exception as exc:
            log.warning("progress callback failed: %s", type(exc).__name__)


def _match(wanted: str | None, names: tuple[str, ...]) -> str | None:
    """``wanted`` as the server spells it among ``names`` (exactly, else ignoring case), or None."""
    if wanted is None:
        return None
    if wanted in names:
        return wanted
    return next((name for name in names if name.casefold() == wanted.casefold()), None)


def _unknown_upscaler(response: httpx.Response) -> bool:
    """Whether an error answer says the upscaler is unknown: 400/404 ``Invalid upscaler, needs to be one of
    these: ...`` (api.py), or a 500 whose ``errors`` is the postprocessing script's ``could not find upscaler``."""
    answer = _quiet_json(response)
    if not isinstance(answer, dict):
        return False
    words = " ".join(str(answer.get(key) or "") for key in ("detail", "errors")).casefold()
    return "invalid upscaler" in words or "could not find upscaler" in words


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _to_size(encoded: Text, width: int, height: int) -> tuple[bytes, images.ImageInfo]:
    """An upscaler's picture (base64) decoded, checked and brought to exactly ``width`` x ``height``: resized when
    the server gave another size of the same shape (a 4x model's, rounding), refused when of another shape."""
    ((data, found),) = _decode_all([encoded])
    if (found.width, found.height) == (width, height):
        return data, found
    if abs(found.width * height - found.height * width) > _SHAPE_TOLERANCE * width * found.height:
        raise BackendError(
            "backend_bad_image", provider=PROVIDER, reason="wrong_size", found=f"{found.width}x{found.height}"
        )
    resized, _ = images.resized(data, width, height)
    return resized, images.ImageInfo("PNG", width, height)


def _quiet_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _info(raw: Any) -> dict[str, Any]:
    """``info`` is a JSON string (a dict from some forks); {} when missing or broken: seeds then unknown."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    log.warning("a1111 answer without a readable info; seeds unknown")
    return {}


def _http_error(response: httpx.Response) -> BackendError:
    status = response.status_code
    answer = _quiet_json(response)
    code = f"http_{status}"
    if status in (401, 403):
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code)
    if status == 404:
        # Not our sampler (handled by the caller): A1111 runs without --api, or A1111_URL points elsewhere.
        return BackendError("backend_config", provider=PROVIDER, provider_code=code)
    if status == 422:
        detail = _detail(answer)
        fields = [e.get("loc") for e in detail if isinstance(e, dict)] if isinstance(detail, list) else []
        log.warning("a1111 rejected the request: %s", fields)
        return BackendError("backend_invalid_request", provider=PROVIDER, provider_code="validation", user_fault=True)
    if status == 429:
        wait = retry_after_header(response.headers)
        return BackendError(
            "backend_rate_limited",
            provider=PROVIDER,
            provider_code=code,
            retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT,
            seconds=wait_seconds(wait, DEFAULT_RATE_LIMIT_WAIT),
        )
    if status >= 500 and isinstance(answer, dict) and answer.get("error") == "OutOfMemoryError":
        # Repeating it would run out of memory again; the message suggests a smaller size or fewer images.
        return BackendError("backend_unavailable", provider=PROVIDER, provider_code="out_of_memory")
    return BackendError("backend_unavailable", provider=PROVIDER, provider_code=code)


def _decode_all(encoded: list[Text]) -> list[tuple[bytes, images.ImageInfo]]:
    """Each picture (bare base64 or a ``data:`` URL) decoded and inspected. Runs in a worker thread."""
    out = []
    for item in encoded:
        head = item[:100] if isinstance(item, str) else bytes(item[:100]).decode("ascii", "replace")
        data = decode_b64(item, PROVIDER, start=head.find(",") + 1 if head.startswith("data:") else 0)
        out.append((data, images.inspect(data)))
    return out
