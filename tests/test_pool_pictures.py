"""A pool whose services differ in drawing from pictures and upscaling: such jobs go only to the services that can,
the pool offers them when any member can, and a member chosen with --model that cannot says so."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from bot.backends.pool import Member, PoolBackend
from bot.draw import picture
from bot.draw.validation import parse_request
from bot.errors import DrawError
from bot.jobs.breaker import Breaker
from bot.jobs.generation import generate
from tests.pipeline_support import GatedBackend


def pool() -> tuple[PoolBackend, GatedBackend, GatedBackend]:
    text, art = GatedBackend(), GatedBackend(pictures=True)
    members = [Member("text", text, 1, Breaker(5, 30)), Member("art", art, 1, Breaker(5, 30))]
    return PoolBackend(members), text, art


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "olive").save(out, "PNG")
    return out.getvalue()


async def test_pictures_and_upscales_go_to_the_member_that_can() -> None:
    backend, text, art = pool()
    caps = await backend.capabilities()
    assert caps.image_to_image and caps.upscale
    plain = parse_request("a cat", caps).with_seed(1)
    from_picture = parse_request("a cat --strength 0.4", caps, picture=(800, 800))
    from_picture = await picture.attach(from_picture, caps, png(800, 800), ref="r", original="800x800", kept=False)
    upscale = dataclasses.replace(plain, task="upscale", size="2048x2048", seed=2)
    upscale = await picture.attach(upscale, caps, png(1024, 1024), ref="r", original="1024x1024", kept=False,
                                   size="1024x1024")  # fmt: skip
    for request in (from_picture.with_seed(3), upscale, upscale):
        await backend.check_request(request)
        result = await generate(backend, request, user="u")
        assert result.drawn.service == "art"
    assert [r.task for r in art.started] == ["draw", "upscale", "upscale"] and text.started == []
    assert art.started[0].source is not None and art.started[0].strength == 0.4
    await generate(backend, plain, user="u")  # text-only: either may draw it
    assert len(text.started) + len(art.started) == 4


async def test_a_chosen_member_that_cannot_draw_from_pictures_says_so() -> None:
    backend, _, _ = pool()
    caps = await backend.capabilities()
    request = parse_request("a cat --model text", caps, picture=(640, 640))
    request = await picture.attach(request, caps, png(640, 640), ref="r", original="640x640", kept=False)
    with pytest.raises(DrawError) as refused:
        await backend.check_request(request)
    assert refused.value.code == "picture_unsupported" and refused.value.params["backend"] == "text"
    upscale = dataclasses.replace(request, task="upscale", size="1280x1280", strength=None)
    with pytest.raises(DrawError) as no_upscale:
        await backend.check_request(upscale)
    assert no_upscale.value.code == "upscale_unsupported"
