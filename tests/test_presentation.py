"""Captions and re-encoding to platform limits, shared by both adapters."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from bot.backends import images
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.messages.presentation import caption, edit_command


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_caption_keeps_parameters_whole_and_fits(lang: str) -> None:
    request = DrawRequest("cat " * 400, negative_prompt="dog " * 200, seed=5, style="Anime", steps=30)
    text = caption(request, lang, limit=1024)  # type: ignore[arg-type]
    assert len(text) <= 1024
    last = text.splitlines()[-1]
    assert "5" in last and "30" in last and "Euler a" in last and "1024x1024" in last
    assert "…" in text


def test_short_caption_is_complete() -> None:
    request = DrawRequest("a cat", negative_prompt="dogs", seed=9, cfg_scale=7.5)
    assert caption(request, "en", limit=1024) == (
        "a cat\nNegative: dogs\nSeed 9 · Base · 1024x1024 · 20 steps · Euler a · CFG 7.5"
    )


def test_edit_command_reproduces_the_request() -> None:
    request = DrawRequest("a cat", negative_prompt="dogs", seed=9, cfg_scale=7.5, style="Pixel Art")
    text = edit_command(request)
    assert "--seed 9" in text and parse_request(text) == request


def png(width: int, height: int, noise: bool = False) -> bytes:
    img = (
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        if noise
        else Image.new("RGB", (width, height), (10, 20, 30))
    )
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_fit_leaves_acceptable_images_alone() -> None:
    data = png(64, 64)
    fitted = images.fit(data, max_bytes=10_000_000, max_side_sum=10_000, max_ratio=20)
    assert fitted.data is data and not fitted.reencoded


def test_fit_reencodes_oversize_files_under_the_limit() -> None:
    data = png(1024, 1024, noise=True)  # incompressible: ~3 MB
    fitted = images.fit(data, max_bytes=1_000_000)
    assert fitted.reencoded and len(fitted.data) <= 1_000_000
    with Image.open(io.BytesIO(fitted.data)) as img:
        assert img.format == "JPEG"


def test_fit_scales_sides_and_pads_ratio() -> None:
    fitted = images.fit(png(9000, 3000), max_bytes=10_000_000, max_side_sum=10_000, max_ratio=20)
    assert fitted.width + fitted.height <= 10_000
    fitted = images.fit(png(4200, 100), max_bytes=10_000_000, max_side_sum=10_000, max_ratio=20)
    assert fitted.width / fitted.height <= 20


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"not an image", "not_an_image"), (png(10, 10)[:40], "not_an_image")],
)
def test_inspect_refuses_garbage(data: bytes, reason: str) -> None:
    from bot.errors import BackendError

    with pytest.raises(BackendError) as info:
        images.inspect(data)
    assert info.value.code == "backend_bad_image" and info.value.params["reason"] == reason


def test_inspect_refuses_wrong_size_and_bombs() -> None:
    from bot.errors import BackendError

    with pytest.raises(BackendError) as info:
        images.inspect(png(10, 10), expected=(20, 20))
    assert info.value.params["reason"] == "wrong_size"
    bomb = Image.new("1", (8000, 8000))
    out = io.BytesIO()
    bomb.save(out, "PNG")
    with pytest.raises(BackendError) as info:
        images.inspect(out.getvalue())
    assert info.value.params["reason"] == "too_large"
