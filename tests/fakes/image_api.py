"""What the five image-API fakes share: recorded calls, a FIFO of planned faults, image bodies.

Every image fake (``qianfan``, ``stability``, ``modelslab``, ``bedrock``, ``a1111``) subclasses
``ImageApiFake`` and therefore has:

- ``fake.generate_calls: list[Call]``: one ``Call`` per generate request, in arrival order, with the
  method, path, query, headers (case-insensitive), raw body and parsed JSON body (``None`` if not JSON).
- ``fake.faults: deque[Fault]``: planned answers. Each generate request that passes the provider's
  credential check (token, key, signature, Basic auth) pops at most one, FIFO, before the normal
  behaviour; a rejected request never eats one, and other endpoints (tokens, balance, progress,
  fetch...) never consume faults.
- These push methods, identical in every fake (each returns the queued ``Fault``):

  - ``push_delay(seconds)``: answer normally, but only after ``seconds`` (keep it short).
  - ``push_disconnect()``: read the request, then close the connection without any answer.
  - ``push_malformed_json()``: HTTP 200, ``Content-Type: application/json``, a truncated JSON body.
  - ``push_not_an_image()``: a normal success whose image bytes are an HTML page.
  - ``push_bomb()``: a normal success whose image is a 30000x30000 PNG (decompression bomb).
  - ``push_wrong_size()``: a normal success whose images are half the requested width and height.
  - ``push_truncated()``: a normal success whose images are JPEGs cut short (``verify()`` passes).
  - ``push_corrupt_pixels()``: a normal success whose images are PNGs with damaged pixel data and valid CRCs.
  - ``push_trickle(seconds_per_byte)``: HTTP 200 with its headers at once, then a JSON body one byte every
    ``seconds_per_byte`` (a stalled proxy or an overloaded server): every byte arrives well inside a read
    timeout, the whole answer never in time.
  - ``push_count(n)``: a normal success with ``n`` images whatever was asked (fewer or more); the fakes
    whose answers carry a list of pictures (qianfan, a1111) play it.
  - ``push_response(status, body, headers=None)``: exactly this answer (dict/list -> JSON, str/bytes raw).

  Each fake adds provider-specific ones (``push_error``, ``push_status``, ``push_content_filtered``...),
  documented in its module docstring.

Stopping a fake (leaving ``async with``) cuts every pending delay short, so a test whose client gave up
early does not wait for the server's sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.images import NOT_AN_IMAGE, bomb_png, corrupt_deflate_png, png_bytes, truncated_jpeg
from tests.fakes.server import FakeServer

# Fault kinds handled by ImageApiFake itself; providers add their own (e.g. "content_filtered").
DELAY = "delay"
DISCONNECT = "disconnect"
RESPONSE = "response"
MALFORMED_JSON = "malformed_json"
NOT_IMAGE = "not_an_image"
BOMB = "bomb"
WRONG_SIZE = "wrong_size"
TRUNCATED = "truncated"
CORRUPT_PIXELS = "corrupt_pixels"
COUNT = "count"
TRICKLE = "trickle"

MALFORMED_JSON_BODY = '{"status": "success", "data": [{"b64_image": "iVBORw0KGgoAAAANSUhEUgAA'


@dataclass(frozen=True)
class Call:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    raw_body: bytes
    body: Any  # the parsed JSON body, or None when the body is empty or not JSON

    @classmethod
    async def from_request(cls, request: web.Request) -> Call:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return cls(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            raw_body=raw,
            body=body,
        )


@dataclass
class Fault:
    """A planned answer. ``kind`` says what to do; the other fields are its parameters."""

    kind: str
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """An answer with ``body`` as JSON (dict, list, number, None) or raw (str, bytes)."""
    if isinstance(body, bytes):
        return web.Response(status=status, body=body, headers=headers)
    if isinstance(body, str):
        return web.Response(status=status, text=body, headers=headers)
    return web.json_response(body, status=status, headers=headers)


class ImageApiFake(FakeServer):
    """Base of the image-API fakes: call recording, the fault FIFO and image bodies (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.generate_calls: list[Call] = []
        self.faults: deque[Fault] = deque()
        self.rng = random.Random(0x5D)  # draws "random" seeds and ids; seeded so runs repeat
        self._closing = asyncio.Event()

    # -- planning faults ---------------------------------------------------------------------------
    def push(self, fault: Fault) -> Fault:
        """Queue ``fault`` for a later generate request and return it."""
        self.faults.append(fault)
        return fault

    def push_delay(self, seconds: float) -> Fault:
        return self.push(Fault(DELAY, seconds=seconds))

    def push_disconnect(self) -> Fault:
        return self.push(Fault(DISCONNECT))

    def push_malformed_json(self) -> Fault:
        return self.push(Fault(MALFORMED_JSON))

    def push_not_an_image(self) -> Fault:
        return self.push(Fault(NOT_IMAGE))

    def push_bomb(self) -> Fault:
        return self.push(Fault(BOMB))

    def push_wrong_size(self) -> Fault:
        return self.push(Fault(WRONG_SIZE))

    def push_truncated(self) -> Fault:
        return self.push(Fault(TRUNCATED))

    def push_corrupt_pixels(self) -> Fault:
        return self.push(Fault(CORRUPT_PIXELS))

    def push_trickle(self, seconds_per_byte: float) -> Fault:
        return self.push(Fault(TRICKLE, seconds=seconds_per_byte))

    def push_count(self, n: int) -> Fault:
        return self.push(Fault(COUNT, options={"n": n}))

    def image_count(self, fault: Fault | None, asked: int) -> int:
        """How many pictures an answer carries: ``asked``, unless a ``push_count`` fault says otherwise."""
        return int(fault.options["n"]) if fault is not None and fault.kind == COUNT else asked

    def push_response(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Fault:
        return self.push(Fault(RESPONSE, status=status, body=body, headers=dict(headers or {})))

    # -- helpers for subclasses --------------------------------------------------------------------
    async def record_generate(self, request: web.Request) -> Call:
        call = await Call.from_request(request)
        self.generate_calls.append(call)
        return call

    def take_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the fake is stopping."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as the
        # event is set (stop() does both), and the cancelled task would run on.
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._closing.wait()

    async def answer_generic_fault(self, request: web.Request, fault: Fault | None) -> web.StreamResponse | None:
        """Play the kinds every fake handles the same way; None means "go on with the normal answer".

        A delay is served here (the sleep) and then the normal answer follows.
        """
        if fault is None:
            return None
        if fault.kind == DELAY:
            await self.sleep(fault.seconds)
            return None
        if fault.kind == RESPONSE:
            return respond(fault.status, fault.body, fault.headers)
        if fault.kind == MALFORMED_JSON:
            return web.Response(status=200, text=MALFORMED_JSON_BODY, content_type="application/json")
        if fault.kind == TRICKLE:
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                for byte in b'{"images": ["' + b"A" * 600:
                    if self._closing.is_set():
                        break
                    await response.write(bytes([byte]))
                    await self.sleep(fault.seconds)
            return response
        if fault.kind == DISCONNECT:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()  # never reaches the client: the socket is gone
        return None

    def image(self, fault: Fault | None, width: int, height: int, seed: int) -> bytes:
        """The image body of a success, altered by an image fault (not an image, bomb, wrong size)."""
        kind = fault.kind if fault is not None else None
        if kind == NOT_IMAGE:
            return NOT_AN_IMAGE
        if kind == BOMB:
            return bomb_png()
        if kind == WRONG_SIZE:
            return png_bytes(max(8, width // 2), max(8, height // 2), seed)
        if kind == TRUNCATED:
            return truncated_jpeg(width, height, seed)
        if kind == CORRUPT_PIXELS:
            return corrupt_deflate_png(width, height, seed)
        return png_bytes(width, height, seed)

    def draw_seed(self) -> int:
        """A "random" seed in [1, 2**32 - 1] (deterministic across runs)."""
        return self.rng.randint(1, 2**32 - 1)

    async def start(self) -> Self:
        self._closing.clear()
        await super().start()
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def stop(self) -> None:
        self._closing.set()
        await super().stop()
