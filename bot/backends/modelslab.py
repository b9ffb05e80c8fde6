"""ModelsLab (stablediffusionapi.com): seed 001 and reference/backends.md (section 6).

Text-to-image is ``POST /api/v6/images/text2img`` with ``base64: "no"``: the pictures come back as links,
downloaded with a size cap. Drawing from a picture is ``POST /api/v6/images/img2img`` with the same fields plus
``init_image`` and ``strength`` (``--strength``; backends.md gives it as 0-1 with no default, so ours is 0.7). The
picture goes inline, as a ``data:image/png;base64,...`` string with ``base64: "yes"``: backends.md 6.1 says
``init_image`` takes a public URL and that "Input images can also be base64" (the spec's ``base64`` field; the model
pages say to pass init_image as base64 to get a base64 answer), so no upload through
``/api/v6/image_editing/base64_to_url`` is needed. With ``base64: "yes"`` the answer's pictures are base64 too: links
to ``.base64`` text files (downloaded with the cap, decoded off the loop) or the base64 itself in ``output``; a link
that serves the picture as such is taken as it is. Both answers may be ``processing``, polled through
``/api/v6/images/fetch`` alike. No upscale: backends.md documents only ``/api/v6/image_editing/super_resolution``,
which takes a URL, answers through another fetch route and has no exact 2x guarantee."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import logging
import math
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from bot.backends import images
from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.download import download
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    Text,
    decode_b64,
    parse_json,
    retry_after_header,
    send,
    wait_seconds,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.errors import BackendError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "modelslab"
TEXT2IMG = "/api/v6/images/text2img"
IMG2IMG = "/api/v6/images/img2img"
FETCH = "/api/v6/images/fetch"
MAX_SIDE = 1024
MAX_SAMPLES = 4
CFG_RANGE = (1.0, 20.0)
# The default --strength: backends.md 6.1 documents none (0-1, "how far from init image").
DEFAULT_STRENGTH = 0.7
SCHEDULERS = {"Euler a": "EulerAncestralDiscreteScheduler"}
# The spam filter's own tip: "please wait for 30 seconds and try again".
RATE_LIMIT_WAIT = 30.0
# Provider messages that mean the account cannot pay; ModelsLab documents none, so match the words such
# answers use ("insufficient credits", "balance is low", "subscription expired") rather than exact texts.
_QUOTA_WORDS = ("credit", "balance", "subscription", "upgrade your plan", "limit reached")
# Worth another attempt: ModelsLab's own "Failed, Try Again", a gateway that had no answer, an output file
# not uploaded yet.
_TRANSIENT = frozenset({"failed", "http_502", "http_503", "http_504", "not_ready"})
# What a fetch of a bogus job id answers once the key is accepted: "Request not found", or a generic error.
_ANSWERED_ABOUT_THE_ID = frozenset({"request_not_found", "error", "failed"})


def _fits(size: str) -> bool:
    return all(int(side) <= MAX_SIDE for side in size.split("x"))


SIZES: tuple[str, ...] = tuple(size for size in params.SIZES if _fits(size))


def _retryable(exc: BackendError) -> bool:
    # Rate limits are not retried here: ModelsLab's spam filter answers "Rate limit exceeded" to a repeat of
    # the same body within 30 s, and our retry would be exactly that repeat.
    if exc.code != "backend_unavailable":
        return False
    return exc.params.get("reason") in RETRYABLE_TRANSPORT or exc.provider_code in _TRANSIENT


def _retryable_poll(exc: BackendError) -> bool:
    # A poll that says "failed" reports the job's end: asking again would only hear it again.
    return _retryable(exc) and exc.provider_code != "failed"


@dataclass(frozen=True, slots=True)
class _Download:
    data: bytes
    info: images.ImageInfo
    blank: bool


def _examine(chunks: list[bytes], encoded: bool = False) -> tuple[bytes, images.ImageInfo, bool]:
    """A downloaded image joined (here, off the loop), Pillow's view of it and whether it is blank (every pixel
    black), which is how the NSFW checker answers. ``inspect`` runs first, so a decompression bomb is refused
    before any decoding. ``encoded``: asked for with ``base64: "yes"``, so it may be the picture's base64 text."""
    data = b"".join(chunks)
    if encoded and not _is_picture(data):
        data = _unbase64(data)
    info = images.inspect(data)
    with Image.open(io.BytesIO(data)) as img:
        blank = img.convert("RGB").getbbox() is None
    return data, info, blank


def _is_picture(data: bytes) -> bool:
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _unbase64(text: bytes | Text) -> bytes:
    """The picture a ``base64: "yes"`` answer carries as text (bare base64 or a ``data:`` URL, maybe between
    blanks), decoded in slices (``decode_b64``); ``backend_bad_image`` (reason ``base64``) when it is neither."""
    view = memoryview(text.encode("ascii", "replace") if isinstance(text, str) else text)
    head = bytes(view[:200])
    start = len(head) - len(head.lstrip())
    if head[start : start + 5] == b"data:":
        start = head.find(b",") + 1
    end = len(view)
    while end > start and bytes(view[end - 1 : end]).isspace():
        end -= 1
    return decode_b64(view[start:end], PROVIDER)


def _inline(text: Text) -> tuple[bytes, images.ImageInfo, bool]:
    """An ``output`` entry that is the picture's base64 itself, not a link."""
    return _examine([_unbase64(text)])


async def _all(calls: Iterable[Awaitable[_Download]]) -> list[_Download]:
    """Run ``calls`` concurrently; the first failure is raised as itself and the others are cancelled."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # no-op for finished ones
        await asyncio.gather(*tasks, return_exceptions=True)


def _message(answer: dict[str, Any]) -> Any:
    # Legacy answers spell the key "messege"; read both.
    return answer["message"] if "message" in answer else answer.get("messege")


def _answer_error(answer: dict[str, Any]) -> BackendError:
    """Our outcome for an ``error``/``failed`` answer (or one with no usable status)."""
    status = answer.get("status")
    message = _message(answer)
    if status == "failed":
        return BackendError("backend_unavailable", provider=PROVIDER, provider_code="failed")
    if isinstance(message, dict):
        # Laravel validation: {"field": ["The field ..."]}. Log the field names only; the texts may quote input.
        log.warning("modelslab rejected fields %s", sorted(str(k) for k in message))
        return BackendError("backend_invalid_request", provider=PROVIDER, provider_code="validation", user_fault=True)
    text = str(message or "").strip().casefold()
    if text == "invalid api key":
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code="invalid_api_key")
    if text == "rate limit exceeded":
        return BackendError(
            "backend_rate_limited",
            provider=PROVIDER,
            provider_code="rate_limit_exceeded",
            retry_after=RATE_LIMIT_WAIT,
            seconds=wait_seconds(RATE_LIMIT_WAIT, RATE_LIMIT_WAIT),
        )
    if text == "model id not found":
        return BackendError("backend_config", provider=PROVIDER, provider_code="model_not_found")
    if text == "request not found":
        return BackendError("backend_unavailable", provider=PROVIDER, provider_code="request_not_found")
    if any(word in text for word in _QUOTA_WORDS):
        return BackendError("backend_quota_exhausted", provider=PROVIDER, provider_code="quota")
    if status == "error":
        log.warning("modelslab error %r", redact.scrub(str(message))[:200])
        return BackendError("backend_unavailable", provider=PROVIDER, provider_code="error")
    return BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")


def _http_error(response: httpx.Response) -> BackendError:
    """Errors ModelsLab itself answers with 200; these are its gateway's or a proxy's."""
    status = response.status_code
    code = f"http_{status}"
    if status in (401, 403):
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code)
    if status == 429:
        wait = retry_after_header(response.headers)
        return BackendError(
            "backend_rate_limited",
            provider=PROVIDER,
            provider_code=code,
            retry_after=wait if wait is not None else RATE_LIMIT_WAIT,
            seconds=wait_seconds(wait, RATE_LIMIT_WAIT),
        )
    if status in (404, 405):
        # The API path does not exist there: MODELSLAB_BASE_URL points somewhere else.
        return BackendError("backend_config", provider=PROVIDER, provider_code=code)
    return BackendError("backend_unavailable", provider=PROVIDER, provider_code=code)


class ModelsLabBackend(HttpBackend):
    name = "modelslab"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://modelslab.com",
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        poll_deadline: float = 300.0,
        max_download: int = 20 * 1024 * 1024,
        model_id: str | None = None,
        retry: RetryPolicy | None = None,
        poll_min: float = 1.0,
        poll_max: float = 30.0,
    ) -> None:
        redact.register(api_key)
        caps = Capabilities(
            backend=self.name,
            sizes=SIZES,
            samplers=tuple(SCHEDULERS),
            styles=(params.DEFAULT_STYLE,),
            max_n=MAX_SAMPLES,
            cfg=CFG_RANGE,
            image_to_image=True,
            strength=DEFAULT_STRENGTH,
        )
        headers = {"Accept": "application/json"}
        super().__init__(
            base_url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps, headers=headers
        )
        self._key = api_key
        self._base_url = base_url
        self._timeout = timeout  # also the budget of a whole download (the client's restarts with every chunk)
        self._poll_deadline = poll_deadline
        self._max_download = max_download
        self._model_id = model_id  # unset: the endpoint's default model
        # ``eta`` is the provider's estimate; clamp it so a 0 does not spin and a 600 does not stall.
        self._poll_min, self._poll_max = poll_min, poll_max

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "MODELSLAB_API_KEY")
        return {
            "api_key": settings.modelslab_api_key,
            "base_url": settings.modelslab_base_url,
            "poll_deadline": settings.modelslab_poll_deadline,
            "max_download": settings.modelslab_max_download,
            "model_id": settings.modelslab_model_id,
        }

    # -- generate ----------------------------------------------------------------------------------------

    def _body(self, request: DrawRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "key": self._key,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "samples": request.n,
            "num_inference_steps": request.steps,
            "guidance_scale": request.cfg_scale,
            "seed": request.seed,
            "scheduler": SCHEDULERS[request.sampler_index],
            "safety_checker": "yes",
            "base64": "no",  # URLs: downloaded with a size cap instead of one unbounded JSON body
            "webhook": None,
            "track_id": None,
        }
        if self._model_id:
            body["model_id"] = self._model_id
        return body

    async def _img2img_body(self, request: DrawRequest) -> dict[str, Any]:
        """The text-to-image body plus the picture (fitted to exactly width x height, which is also what ModelsLab
        draws at: its output follows the init image) inline in base64, and the strength."""
        assert request.source is not None
        body = self._body(request)
        body["init_image"] = await cpu.run(_data_url, request.source.data)  # megabytes: off the loop
        body["strength"] = DEFAULT_STRENGTH if request.strength is None else request.strength
        body["base64"] = "yes"  # the picture is base64 (and so are the answer's: decoded on arrival)
        return body

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        # ``user`` is not sent: ModelsLab has no end-user field, and track_id is meant for webhooks. Nor is
        # ``progress`` called: ModelsLab only says "processing", with no fraction to show.
        if request.task != "draw":  # capabilities offer no upscale: the core never sends one here
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_upscale")
        if request.sampler_index not in SCHEDULERS or not _fits(request.size):
            # Validation against our capabilities makes this unreachable; never send a silent substitute.
            raise BackendError("backend_invalid_request", provider=PROVIDER, user_fault=True)
        content = None
        if request.source is None:
            path, body = TEXT2IMG, self._body(request)
        else:
            path, body = IMG2IMG, await self._img2img_body(request)
            content = await cpu.run(_json, body)  # megabytes of JSON: serialized off the loop
        encoded = body["base64"] == "yes"
        answer = await self._retry.run(functools.partial(self._call, path, body, content), _retryable)
        answer = await self._until_done(answer)
        urls = answer.get("output")
        # Links; with base64 answers maybe the pictures themselves (long ones parsed as memoryviews: Text).
        kinds = (str, memoryview) if encoded else (str,)
        if not isinstance(urls, list) or not urls or not all(isinstance(u, kinds) for u in urls):
            raise BackendError("backend_bad_image", provider=PROVIDER, reason="no_output")
        if len(urls) != request.n:
            log.warning("modelslab returned %d images for %d requested", len(urls), request.n)
        seed = _answer_seed(answer, request)
        flagged = answer.get("nsfw_content_detected") is True  # some answers carry it; blank images always do
        downloads = await _all([self._download_checked(url, encoded) for url in urls[: request.n]])
        out = [
            GeneratedImage(
                d.data,
                d.info.format,
                d.info.width,
                d.info.height,
                seed=seed if i == 0 else None,
                filtered=d.blank or flagged,
            )
            for i, d in enumerate(downloads)
        ]
        return out

    async def _call(self, path: str, body: dict[str, Any], serialized: bytes | None = None) -> dict[str, Any]:
        """POST ``body`` (or ``serialized``: it as JSON already) to ``path`` on the base URL; the answer's JSON object
        (any ``status``)."""
        if serialized is None:
            response, content = await send(self._client, "POST", path, provider=PROVIDER, json=body)
        else:
            headers = {"Content-Type": "application/json"}
            response, content = await send(
                self._client, "POST", path, provider=PROVIDER, content=serialized, headers=headers
            )
        if response.status_code != 200:
            raise _http_error(response)
        try:
            answer = await parse_json(content)
        except ValueError:
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed_json") from None
        if not isinstance(answer, dict):
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="unexpected_answer")
        if answer.get("status") not in ("success", "processing"):
            raise _answer_error(answer)
        return answer

    async def _until_done(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Poll a ``processing`` job until it succeeds, fails, or MODELSLAB_POLL_DEADLINE passes."""
        deadline = time.monotonic() + self._poll_deadline
        while answer.get("status") == "processing":
            job_id = answer.get("id")
            if isinstance(job_id, bool) or not isinstance(job_id, int | str) or not str(job_id).strip():
                raise BackendError("backend_unavailable", provider=PROVIDER, reason="no_job_id")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError("backend_timeout", provider=PROVIDER, reason="poll_deadline")
            await self._retry.sleep(min(self._poll_wait(answer.get("eta")), remaining))
            body = {"key": self._key, "request_id": str(job_id)}
            answer = await self._retry.run(functools.partial(self._call, FETCH, body), _retryable_poll)
        return answer

    def _poll_wait(self, eta: Any) -> float:
        try:
            seconds = float(eta)
        except (TypeError, ValueError):
            seconds = self._poll_min
        if math.isnan(seconds):
            seconds = self._poll_min
        return min(max(seconds, self._poll_min), self._poll_max)

    async def _download_checked(self, url: Text, encoded: bool = False) -> _Download:
        """An ``output`` entry's picture, checked: downloaded from its link, or (``encoded``: an answer to
        ``base64: "yes"``) decoded from the entry itself when it is not a link."""
        if not isinstance(url, str) or (encoded and not url.startswith(("http://", "https://"))):
            data, info, blank = await cpu.run(_inline, url)
            return _Download(data, info, blank)
        chunks = await self._retry.run(functools.partial(self._download, url, encoded), _retryable)
        data, info, blank = await cpu.run(_examine, chunks, encoded)
        return _Download(data, info, blank)

    async def _download(self, url: str, encoded: bool = False) -> list[bytes]:
        """GET an output URL; the seed's "future links" answer 404 until the file is uploaded (``not_ready``). A
        ``.base64`` file is a third larger than the picture it carries: so is its cap."""
        cap, budget = self._max_download, self._timeout
        if encoded:
            cap = cap * 4 // 3 + 4096
        return await download(self._client, url, provider=PROVIDER, max_bytes=cap, budget=budget, missing="not_ready")

    # -- check -------------------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Fetch a job id that cannot exist: free, generates nothing, and ModelsLab checks the key before the
        id, so "Invalid Api Key" tells a refused key from an accepted one (answered "not found")."""
        findings: list[tuple[str | Msg, Finding]] = [(Msg("check.label.endpoint"), f"{self._base_url}{FETCH}")]
        try:
            await self._call(FETCH, {"key": self._key, "request_id": "0"})
        except BackendError as exc:
            if exc.provider_code not in _ANSWERED_ABOUT_THE_ID:
                findings.append((Msg("check.label.problem"), exc))
                return CheckReport(self.name, False, findings)
        findings.append((Msg("check.label.api_key"), Msg("check.modelslab.key_accepted")))
        limits = {"side": MAX_SIDE, "count": MAX_SAMPLES, "bytes": self._max_download}
        findings.append((Msg("check.label.limits"), Msg("check.modelslab.limits", limits)))
        strength = (await self.capabilities()).strength
        findings.append((Msg("check.label.img2img"), Msg("check.img2img_on", {"strength": strength})))
        return CheckReport(self.name, True, findings)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _answer_seed(answer: dict[str, Any], request: DrawRequest) -> int | None:
    """The seed ModelsLab reports in ``meta`` (the one we sent, as a number or a string).

    ModelsLab draws a whole batch from this one seed, so only the first image is the one that seed gives on
    its own; the others are reported without a seed rather than with one that would not reproduce them."""
    meta = answer.get("meta")
    raw = meta.get("seed") if isinstance(meta, dict) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return request.seed
