"""Large JSON answers: read in chunks, parsed a level at a time, long strings kept as views and decoded in
slices, with the same meaning as the standard library's reading."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from bot.backends.http import decode_b64, parse_json


def _plain(value: Any) -> Any:
    """``value`` with every view of a long string turned into the string."""
    if isinstance(value, memoryview):
        return bytes(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _chunks(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[at : at + size] for at in range(0, len(data), size)]


@pytest.mark.parametrize("pictures", [1, 4])
async def test_a_large_answer_means_what_json_loads_reads(pictures: int) -> None:
    images = [base64.b64encode(os.urandom(300_000 + i)).decode() for i in range(pictures)]
    answer = {
        "id": "as-1",
        "created": 1700000000,
        "data": [
            {"object": "image", "b64_image": b64, "index": i, "ok": True, "x": None} for i, b64 in enumerate(images)
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3.5},
        "note": '短い文字列 with "quotes" and \\ escapes',
    }
    body = json.dumps(answer).encode()
    parsed = await parse_json(_chunks(body))
    assert all(isinstance(item["b64_image"], memoryview) for item in parsed["data"])
    assert _plain(parsed) == json.loads(body)
    assert [decode_b64(item["b64_image"], "p") for item in parsed["data"]] == [base64.b64decode(b) for b in images]


async def test_a_long_string_with_escapes_is_read_as_a_string() -> None:
    text = "ab\\/cd" * 40_000  # a JSON writer may escape "/" in base64
    body = json.dumps({"images": [text.replace("\\/", "/")], "pad": "x" * 300_000}).encode().replace(b"/", b"\\/")
    parsed = await parse_json(_chunks(body))
    assert parsed["images"][0] == text.replace("\\/", "/")
    assert _plain(parsed) == json.loads(body)


@pytest.mark.parametrize("body", [b"", b"{", b'{"data": [1, 2', b'{"a": "' + b"x" * 400_000, b"[" * 300_000])
async def test_a_broken_answer_is_a_value_error_large_or_small(body: bytes) -> None:
    with pytest.raises(ValueError):
        await parse_json(_chunks(body))


def test_base64_from_a_view_decodes_like_from_a_string() -> None:
    data = os.urandom(500_000)
    text = base64.b64encode(data)
    assert decode_b64(memoryview(text), "p") == data == decode_b64(text.decode(), "p")
