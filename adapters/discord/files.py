"""Images -> Discord attachments: each under the per-file limit, at most 10 and 25 MiB per message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.backends.base import GeneratedImage
from bot.backends.images import fit

MAX_FILES = 10
MAX_REQUEST_BYTES = 25 * 1024 * 1024
# payload_json (content, components) and the multipart headers travel in the same request as the files.
REQUEST_OVERHEAD = 64 * 1024
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


def per_file_limit(filesize_limit: int) -> int:
    return min(filesize_limit, MAX_REQUEST_BYTES - REQUEST_OVERHEAD)


def fits(images: Sequence[GeneratedImage], filesize_limit: int) -> bool:
    """Whether every image can be sent as it is (then :func:`prepare` does no Pillow work at all)."""
    return all(len(image.data) <= per_file_limit(filesize_limit) for image in images)


def prepare(images: Sequence[GeneratedImage], *, job_id: int, filesize_limit: int) -> list[list[Upload]]:
    """Every image as an upload that fits ``filesize_limit`` (re-encoded only when it does not), grouped
    into messages Discord accepts. Discord takes any dimensions and aspect ratio, so only bytes matter."""
    per_file = per_file_limit(filesize_limit)
    uploads = []
    for index, image in enumerate(images, start=1):
        data, fmt = image.data, image.format
        if len(data) > per_file:
            fitted = fit(data, max_bytes=per_file)
            data, fmt = fitted.data, fitted.format
        uploads.append(Upload(f"sdbot-{job_id}-{index}.{_EXTENSIONS.get(fmt, 'png')}", data))
    return batches(uploads)


def batches(
    uploads: Sequence[Upload], *, max_files: int = MAX_FILES, max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD
) -> list[list[Upload]]:
    """Consecutive groups of at most ``max_files`` uploads and ``max_bytes`` together, in order."""
    groups: list[list[Upload]] = []
    size = 0
    for upload in uploads:
        if not groups or len(groups[-1]) >= max_files or size + len(upload.data) > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(upload)
        size += len(upload.data)
    return groups


def spoilered(groups: list[list[Upload]], flags: Sequence[bool]) -> list[list[Upload]]:
    """``groups`` with the uploads whose flag is set (in order) under Discord's spoiler cover (a ``SPOILER_``
    file name)."""
    marks = iter(flags)
    return [[Upload(f"SPOILER_{u.filename}", u.data) if next(marks) else u for u in group] for group in groups]
