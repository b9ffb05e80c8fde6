"""A local fake of the Telegram Bot API, faithful enough for the real python-telegram-bot to talk to.

Point PTB at it with ``ApplicationBuilder().token(tg.token).base_url(f"{tg.url}/bot")
.base_file_url(f"{tg.url}/file/bot")``. Every method is served at ``/bot<token>/<method>`` (POST or
GET; form-encoded, multipart or JSON bodies), answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": ..., "parameters": ...}`` with HTTP status N, and
enforces the documented limits with the real API's error descriptions.

Public API (``tg = FakeTelegram()``; ``async with tg: ...``)

Construction and identity
    ``FakeTelegram(token=DEFAULT_TOKEN, *, bot_username="sdbot_test_bot", bot_name="SD Bot")``;
    ``tg.url``, ``tg.token``, ``tg.bot_id``, ``tg.bot_username``.

Driving the bot (synchronous; updates go to getUpdates, or to the webhook once one is set)
    ``tg.send_text(user_id, text, chat_id=None, chat_type="private", language_code="en",
    reply_to=None, username=None, first_name=None, title=None) -> update``: a user writes ``text``;
    commands (``/draw``, ``/draw@BotName``) get ``bot_command`` entities. Group chats need a
    negative ``chat_id``. ``reply_to`` is a message dict or message id in the same chat.
    ``tg.press_button(user_id, message, data, chat_id=None) -> update``: a callback_query for a
    button that must exist on the message's current inline keyboard (``message`` is a message
    dict or an id).
    ``tg.enqueue(body) -> update``: any other update; ``update_id`` is filled in.
    ``tg.add_chat(chat_id, chat_type="private", title=None)``: make a chat known without a message.
    ``tg.block(user_id)`` / ``tg.unblock(user_id)``: the user blocks the bot (403 on sends).
    ``tg.migrate_group(chat_id, new_chat_id=None) -> new id``: the group becomes a supergroup;
    sends to the old id then fail with ``migrate_to_chat_id``.

Recording
    ``tg.calls``: every API call as a :class:`Call` (method, params with JSON decoded, files
    name -> bytes, ok/error/result). ``tg.calls_to(method)``; ``tg.updates`` (all enqueued).
    ``await tg.wait_for(method, predicate=None, timeout=5.0, ok=True) -> Call``: the first finished
    matching call not returned by an earlier ``wait_for`` (so repeated waits walk forward);
    ``ok=None`` accepts failed calls too. Raises ``TimeoutError`` listing what did arrive.
    ``tg.sent_messages(chat_id=None)``: current state (after edits) of the bot's live messages;
    ``tg.texts(chat_id)``; ``tg.message(chat_id, message_id)`` (any message, ``None`` once
    deleted); ``tg.deleted`` ((chat_id, message_id) pairs).
    ``tg.photos(chat_id)``: :class:`SentPhoto` per sendPhoto (bytes, real width/height, caption);
    ``tg.albums(chat_id)``: each sendMediaGroup as ``[(bytes, caption), ...]``;
    ``tg.documents(chat_id)``: :class:`SentDocument`; ``tg.callback_answers``: answerCallbackQuery
    params; ``tg.commands(scope=None, language_code="")`` and
    ``tg.visible_commands(chat_id, language_code="")`` (Telegram's scope fallback order);
    ``tg.webhook`` (url/secret or ``None``) and ``tg.webhook_deliveries`` ((update_id, status)).
    Note: when PTB's updater stops it abandons its long poll; the next getUpdates supersedes it and
    that abandoned call is recorded as a 409 (what the real server answers, to nobody). A crash
    inside the fake is answered and recorded as 500 ``Internal Server Error: fake crashed: ...``.

Fault injection
    ``tg.fail_next(method, error_code=429, description=None, retry_after=None, count=1, *,
    migrate_to_chat_id=None, chat_id=None)``: the next ``count`` calls of ``method`` (optionally
    only to ``chat_id``) fail. Descriptions default per code: 429 ``Too Many Requests: retry
    after N`` with ``parameters.retry_after`` (N defaults to 1), 403 ``Forbidden: bot was blocked
    by the user``, 400 with ``migrate_to_chat_id`` ``Bad Request: group chat was upgraded to a
    supergroup chat``.
    ``tg.slow_answer(method, seconds, count=1)``: the next ``count`` calls of ``method`` are carried out
    (an album is in the chat) but their answer leaves only ``seconds`` later: a slow link or a busy server.
    ``tg.drop_answer(method, count=1)``: the next ``count`` calls of ``method`` are carried out, then their
    connection is closed instead of answered (recorded with ``dropped=True``): the answer was lost on the way.

Webhooks
    After setWebhook the fake POSTs pending and new updates to the URL, one at a time, with the
    ``X-Telegram-Bot-Api-Secret-Token`` header, retrying failures every ``webhook_retry_delay``
    seconds; getUpdates then answers 409 like the real API. Set ``tg.deliver_via_webhook = False``
    to hold updates back (they count in getWebhookInfo's ``pending_update_count``).

Deliberate simplifications: one bot token; photos, documents and text only (sendMediaGroup accepts
photo and document items); files from URLs are refused (no network); text lengths are counted in
UTF-16 code units (never looser than Telegram); Markdown parsing is approximate, HTML parsing is
strict like Telegram's; a one-item sendMediaGroup is refused as the documentation says (the
wording of that one error is the fake's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.fakes.server import FakeServer

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForTests"

JSON = dict[str, Any]

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile: "Bad Request: file is too big" beyond (Bot API, getFile)
MAX_PHOTO_SIDES = 10_000
MAX_PHOTO_RATIO = 20
MAX_POLL_TIMEOUT = 50
PHOTO_SIDES = (90, 320, 800, 1280, 2560)  # the sizes Telegram keeps of an uploaded photo

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)
COMMAND_SCOPES = frozenset(
    [
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    ]
)
# Update kinds delivered when allowed_updates is not given (or empty), as documented.
NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Parameters that are plain strings on the wire: never JSON-decode them ("123" stays text).
STRING_PARAMS = frozenset(
    [
        "text",
        "caption",
        "parse_mode",
        "url",
        "secret_token",
        "callback_query_id",
        "language_code",
        "inline_message_id",
        "action",
        "ip_address",
        "file_id",
        "photo",
        "document",
        "business_connection_id",
        "message_effect_id",
        "title",
        "description",
        "name",
    ]
)


class ApiError(Exception):
    """An error answer: ``{"ok": false, "error_code": code, "description": ..., "parameters": ...}``."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


@dataclass
class Call:
    """One API call as the fake received and answered it."""

    method: str
    params: JSON
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    http_method: str = "POST"
    done: bool = False
    ok: bool = True
    error_code: int | None = None
    description: str | None = None
    result: Any = None
    dropped: bool = False  # carried out, then the connection closed without an answer (drop_answer)

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass
class SentPhoto:
    """A photo the bot sent, with the size read from the uploaded image."""

    chat_id: int
    message_id: int
    data: bytes
    width: int
    height: int
    caption: str | None
    media_group_id: str | None = None


@dataclass
class SentDocument:
    """A document the bot sent."""

    chat_id: int
    message_id: int
    data: bytes
    file_name: str
    caption: str | None
    media_group_id: str | None = None


@dataclass
class _StoredFile:
    """A file getFile and the download route can serve; thumbnails are rendered when first read."""

    file_id: str
    unique_id: str
    path: str
    source: bytes
    size: tuple[int, int] | None = None  # a photo's (width, height) as kept by Telegram
    original_size: tuple[int, int] | None = None
    rendered: bytes | None = None

    def content(self) -> bytes:
        """The bytes a download yields: the upload itself, or a JPEG of the smaller size."""
        if self.size is None or self.size == self.original_size:
            return self.source
        if self.rendered is None:
            with Image.open(io.BytesIO(self.source)) as image:
                out = io.BytesIO()
                image.convert("RGB").resize(self.size).save(out, "JPEG", quality=85)
            self.rendered = out.getvalue()
        return self.rendered


@dataclass
class _Fault:
    method: str
    error: ApiError
    remaining: int
    chat_id: int | str | None


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and length limits."""
    return len(text.encode("utf-16-le")) // 2


def _decode(key: str, value: Any) -> Any:
    """Undo PTB's form encoding: strings stay strings, everything else was sent as JSON text."""
    if not isinstance(value, str) or key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def read_params(request: web.Request) -> tuple[JSON, dict[str, bytes], dict[str, str]]:
    """Parameters (JSON decoded) and uploaded files of a Bot API request, whatever its encoding."""
    raw: JSON = dict(request.query)
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is not None:
                files[part.name] = bytes(await part.read())
                names[part.name] = part.filename
            else:
                raw[part.name] = await part.text()
    elif request.content_type == "application/json":
        body = await request.read()
        if body:
            decoded = json.loads(body)
            if not isinstance(decoded, dict):
                raise bad_request("parameters must be a JSON object")
            raw.update(decoded)
    elif request.can_read_body:
        raw.update(await request.post())
    return {key: _decode(key, value) for key, value in raw.items()}, files, names


# ---------------------------------------------------------------------------------------------
# Formatting: HTML (strict, like Telegram), MarkdownV2 and Markdown (approximate).


class _Formatted:
    """Plain text being built, with entities in UTF-16 offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.offset = 0
        self.entities: list[JSON] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.offset += utf16_len(text)

    def close(self, kind: str, start: int, **extra: Any) -> None:
        if self.offset > start:
            self.entities.append({"type": kind, "offset": start, "length": self.offset - start, **extra})

    def result(self) -> tuple[str, list[JSON]]:
        return "".join(self.parts), sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))


def _entity_error(detail: str) -> ApiError:
    return bad_request(f"can't parse entities: {detail}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR_RE = re.compile(r"([A-Za-z-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+))")
_HTML_ENTITY_RE = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _unescape(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _NAMED:
        return _NAMED[name]
    return chr(int(name[2:], 16) if name.startswith("#x") else int(name[1:]))


def parse_html(text: str) -> tuple[str, list[JSON]]:
    """Telegram's HTML: supported tags only, properly nested, ``<``/``>``/``&`` escaped elsewhere."""
    out = _Formatted()
    stack: list[tuple[str, int, JSON]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "&":
            match = _HTML_ENTITY_RE.match(text, i)
            out.add(_unescape(match) if match else "&")
            i = match.end() if match else i + 1
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        match = _TAG_RE.match(text, i)
        where = _byte_offset(text, i)
        if match is None:
            if ">" not in text[i:]:
                raise _entity_error(f"Unclosed start tag at byte offset {where}")
            name = re.match(r"</?([^\s>]*)", text[i:])
            raise _entity_error(f'Unsupported start tag "{name.group(1) if name else ""}" at byte offset {where}')
        closing, name, attr_text = match.group(1) == "/", match.group(2).lower(), match.group(3)
        i = match.end()
        if closing:
            if not stack:
                raise _entity_error(f"Unexpected end tag at byte offset {where}")
            open_name, start, attrs = stack.pop()
            if open_name != name:
                raise _entity_error(
                    f'Unmatched end tag at byte offset {where}, expected "</{open_name}>", found "</{name}>"'
                )
            if name == "a" and attrs.get("href"):
                out.close("text_link", start, url=attrs["href"])
            elif name == "tg-emoji":
                out.close("custom_emoji", start, custom_emoji_id=attrs.get("emoji-id", ""))
            elif name == "code" and stack and stack[-1][0] == "pre":
                lang = attrs.get("class", "").removeprefix("language-")
                if lang:
                    stack[-1][2]["language"] = lang
            elif name == "blockquote" and "expandable" in attrs:
                out.close("expandable_blockquote", start)
            elif name == "pre" and attrs.get("language"):
                out.close("pre", start, language=attrs["language"])
            elif name != "a":
                out.close(HTML_TAGS[name], start)
            continue
        if name not in HTML_TAGS:
            raise _entity_error(f'Unsupported start tag "{name}" at byte offset {where}')
        attrs = {
            m.group(1).lower(): _HTML_ENTITY_RE.sub(_unescape, next(g for g in m.groups()[1:] if g is not None))
            for m in _ATTR_RE.finditer(attr_text)
        }
        if re.search(r"\bexpandable\b", attr_text):
            attrs["expandable"] = ""
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _entity_error(f'Tag "span" must have class "tg-spoiler" at byte offset {where}')
        stack.append((name, out.offset, attrs))
    if stack:
        raise _entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = {"*": ("bold", "Bold"), "_": ("italic", "Italic"), "__": ("underline", "Underline")}
_MDV2_MARKERS |= {"~": ("strikethrough", "Strikethrough"), "||": ("spoiler", "Spoiler")}


def parse_markdown_v2(text: str) -> tuple[str, list[JSON]]:
    """MarkdownV2, approximately: reserved characters must be escaped, markers must be closed."""
    out = _Formatted()
    open_markers: dict[str, tuple[int, int]] = {}
    link: tuple[int, int] | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                raise _entity_error("Character '\\' is reserved and must be escaped with the preceding '\\'")
            out.add(text[i + 1])
            i += 2
            continue
        if char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = text.find(fence, i + len(fence))
            while end > 0 and text[end - 1] == "\\":
                end = text.find(fence, end + 1)
            if end < 0:
                kind = "Pre" if fence == "```" else "Code"
                raise _entity_error(f"Can't find end of {kind} entity at byte offset {_byte_offset(text, i)}")
            body = re.sub(r"\\([\\`])", r"\1", text[i + len(fence) : end])
            language = ""
            if fence == "```" and "\n" in body and " " not in body.split("\n", 1)[0]:
                language, body = body.split("\n", 1)
            start = out.offset
            out.add(body)
            if fence == "`":
                out.close("code", start)
            else:
                out.close("pre", start, **({"language": language} if language else {}))
            i = end + len(fence)
            continue
        marker = next((m for m in ("__", "||") if text.startswith(m, i)), char if char in "*_~" else None)
        if marker is not None:
            if marker in open_markers:
                out.close(_MDV2_MARKERS[marker][0], open_markers.pop(marker)[0])
            else:
                open_markers[marker] = (out.offset, _byte_offset(text, i))
            i += len(marker)
            continue
        if char == "[" and link is None:
            link = (out.offset, _byte_offset(text, i))
            i += 1
            continue
        if char == "]" and link is not None and text.startswith("(", i + 1):
            end = i + 2
            while end < len(text) and text[end] != ")":
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                raise _entity_error(f"Can't find end of a URL at byte offset {_byte_offset(text, i + 1)}")
            out.close("text_link", link[0], url=re.sub(r"\\(.)", r"\1", text[i + 2 : end]))
            link = None
            i = end + 1
            continue
        if char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a blockquote line; the fake keeps no entity for it
            continue
        if char in _MDV2_RESERVED:
            raise _entity_error(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
        out.add(char)
        i += 1
    if open_markers:
        marker, (_, where) = next(iter(open_markers.items()))
        raise _entity_error(f"Can't find end of {_MDV2_MARKERS[marker][1]} entity at byte offset {where}")
    if link is not None:
        raise _entity_error(f"Can't find end of TextUrl entity at byte offset {link[1]}")
    return out.result()


def parse_markdown(text: str) -> tuple[str, list[JSON]]:
    """Legacy Markdown, approximately: ``*bold*``, ``_italic_``, ```code```, ``[text](url)``."""
    out = _Formatted()
    kinds = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        marker = "```" if text.startswith("```", i) else char
        if marker in kinds or marker == "[":
            close = "](" if marker == "[" else marker
            end = text.find(close, i + len(marker))
            url_end = text.find(")", end + 2) if marker == "[" and end >= 0 else end
            if end < 0 or url_end < 0:
                raise _entity_error(f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}")
            start = out.offset
            out.add(text[i + len(marker) : end])
            if marker == "[":
                out.close("text_link", start, url=text[end + 2 : url_end])
                i = url_end + 1
            else:
                out.close(kinds[marker], start)
                i = end + len(marker)
            continue
        out.add(char)
        i += 1
    return out.result()


def format_text(text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[JSON]]:
    """What Telegram stores for ``text`` sent with ``parse_mode`` or explicit ``entities``."""
    if not parse_mode:
        return text, list(entities) if isinstance(entities, list) else []
    mode = parse_mode.lower()
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    raise bad_request(f"unsupported parse_mode {parse_mode!r}")


_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?=\s|$)")


def command_entities(text: str) -> list[JSON]:
    """The ``bot_command`` entities Telegram attaches to a user's text."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m.group())}
        for m in _COMMAND_RE.finditer(text)
    ]


def check_reply_markup(markup: Any) -> JSON | None:
    """Validate ``reply_markup``; returns it when it is an inline keyboard (the only kind echoed back)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return None
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
        if len(button) == 1:
            raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
            raise bad_request("BUTTON_URL_INVALID")
    return markup


def photo_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """The sizes Telegram keeps of a photo: thumbnails below the original, the largest at most 2560."""
    longest = max(width, height)
    sizes = []
    for side in PHOTO_SIDES:
        scale = min(1.0, side / longest)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size not in sizes:
            sizes.append(size)
        if scale == 1.0:
            break
    return sizes


def check_photo(data: bytes) -> tuple[int, int, str]:
    """Telegram's sendPhoto checks; returns the image's width, height and file extension."""
    if len(data) > MAX_PHOTO_BYTES:
        raise bad_request("file is too big")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            ext = (image.format or "jpg").lower()
    except (UnidentifiedImageError, OSError) as exc:
        raise bad_request("IMAGE_PROCESS_FAILED") from exc
    if width + height > MAX_PHOTO_SIDES or max(width, height) > MAX_PHOTO_RATIO * min(width, height):
        raise bad_request("PHOTO_INVALID_DIMENSIONS")
    return width, height, ext


# ---------------------------------------------------------------------------------------------


class FakeTelegram(FakeServer):
    """The fake Bot API server. See the module docstring for the helper API."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "sdbot_test_bot",
        bot_name: str = "SD Bot",
        webhook_retry_delay: float = 0.1,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.webhook_retry_delay = webhook_retry_delay
        self._deliver_via_webhook = True

        self.calls: list[Call] = []
        self.updates: list[JSON] = []
        self.deleted: list[tuple[int, int]] = []
        self.callback_answers: list[JSON] = []
        self.webhook_deliveries: list[tuple[int, int | None]] = []
        self.webhook: JSON | None = None

        self._queue: list[JSON] = []
        self._allowed_updates: list[str] | None = None
        self._update_ids = itertools.count(100_001)
        self._ids = itertools.count(1)
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._migrated: dict[int, int] = {}
        self._blocked: set[int] = set()
        self.chat_admins: dict[int, set[int]] = {}  # group chat id -> its administrators' user ids (getChatMember)
        self._messages: dict[int, dict[int, JSON]] = {}
        self._last_message_id: dict[int, int] = {}
        self._photos: list[SentPhoto] = []
        self._documents: list[SentDocument] = []
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._open_queries: set[str] = set()
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._faults: list[_Fault] = []
        self._slow: dict[str, list[float]] = {}
        self._dropped: dict[str, int] = {}  # method -> calls still to carry out and leave unanswered
        self._claimed: set[int] = set()
        self._wakers: set[asyncio.Event] = set()
        self._active_poll: object | None = None
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None

        # Method names are case-insensitive on the real server; calls are recorded by canonical name.
        self._methods: dict[str, tuple[str, Callable[[Call], Any]]] = {
            attr.removeprefix("_api_").lower(): (attr.removeprefix("_api_"), getattr(self, attr))
            for attr in dir(self)
            if attr.startswith("_api_")
        }
        self.app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        self._closing = False
        await super().start()
        self._session = aiohttp.ClientSession()
        self._webhook_task = asyncio.create_task(self._webhook_loop(), name="FakeTelegram webhook")
        return self

    async def stop(self) -> None:
        self._closing = True
        self._wake()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().stop()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    @property
    def deliver_via_webhook(self) -> bool:
        """Whether updates are pushed to the webhook once one is set (default ``True``)."""
        return self._deliver_via_webhook

    @deliver_via_webhook.setter
    def deliver_via_webhook(self, value: bool) -> None:
        self._deliver_via_webhook = value
        self._wake()

    # -- driving the bot ----------------------------------------------------------------------

    def enqueue(self, body: JSON) -> JSON:
        """Queue an update (``update_id`` is assigned) for getUpdates or the webhook."""
        update = {"update_id": next(self._update_ids), **body}
        self.updates.append(update)
        self._queue.append(update)
        self._wake()
        return update

    def redeliver(self, update: JSON) -> None:
        """Offer ``update`` again, as Telegram does at the next ``getUpdates`` with every update the bot has not
        confirmed yet (a bot that died before confirming sees them again after its restart)."""
        self._queue.append(update)
        self._wake()

    def add_chat(self, chat_id: int, chat_type: str = "private", title: str | None = None) -> JSON:
        """Make a chat known (as if it had talked to the bot) and return its Chat object."""
        if chat_type == "private":
            if chat_id <= 0:
                raise ValueError("private chat ids are the user's (positive) id")
            user = self._user(chat_id)
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
        elif chat_type in ("group", "supergroup"):
            if chat_id >= 0:
                raise ValueError("group and supergroup chat ids are negative")
            chat = {"id": chat_id, "type": chat_type, "title": title or f"Group {-chat_id}"}
        else:
            raise ValueError(f"unsupported chat type {chat_type!r}")
        self._chats[chat_id] = chat
        return chat

    def send_text(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        reply_to: JSON | int | None = None,
        username: str | None = None,
        first_name: str | None = None,
        title: str | None = None,
    ) -> JSON:
        """A user sends ``text``; returns the update (its ``["message"]`` is the message)."""
        user = self._user(user_id, username=username, first_name=first_name, language_code=language_code)
        if chat_type == "private":
            if chat_id not in (None, user_id):
                raise ValueError("a private chat's id is the user's id")
            chat_id = user_id
        elif chat_id is None:
            raise ValueError("group chats need an explicit negative chat_id")
        if chat_id in self._migrated:
            raise ValueError(f"chat {chat_id} was migrated to {self._migrated[chat_id]}")
        known = self._chats.get(chat_id)
        chat = known if known and known["type"] == chat_type else self.add_chat(chat_id, chat_type, title)
        message: JSON = {"chat": chat, "from": user, "text": text}
        entities = command_entities(text)
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._reply_target(chat_id, reply_to)
        return self.enqueue({"message": self._store(chat_id, message)})

    def send_picture(
        self,
        user_id: int,
        data: bytes,
        caption: str | None = None,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        reply_to: JSON | int | None = None,
        file_name: str | None = None,
        title: str | None = None,
    ) -> JSON:
        """A user sends a picture: a photo (Telegram keeps it at several sizes, the largest at most 2560 px, as
        JPEG), or with ``file_name`` the file itself as a document. ``caption`` gets its command entities as a
        text would. Returns the update. Sizes and formats are not checked as the bot's uploads are: users' apps
        send what they like (the bot must check)."""
        user = self._user(user_id, language_code=language_code)
        if chat_type == "private":
            chat_id = user_id
        elif chat_id is None:
            raise ValueError("group chats need an explicit negative chat_id")
        known = self._chats.get(chat_id)
        chat = known if known and known["type"] == chat_type else self.add_chat(chat_id, chat_type, title)
        message: JSON = {"chat": chat, "from": user}
        if file_name is None:
            message |= self._user_photo(data)
        else:
            stored = self._new_file("documents", data, file_name.rsplit(".", 1)[-1] if "." in file_name else "bin")
            mime = mimetypes.guess_type(file_name, strict=False)[0] or "application/octet-stream"
            message["document"] = {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "file_name": file_name,
                "mime_type": mime,
                "file_size": len(data),
            }
        if caption:
            message["caption"] = caption
            entities = command_entities(caption)
            if entities:
                message["caption_entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._reply_target(chat_id, reply_to)
        return self.enqueue({"message": self._store(chat_id, message)})

    def _user_photo(self, data: bytes) -> JSON:
        """A user's photo as Telegram keeps it: the sizes of :func:`photo_sizes`, each a JPEG."""
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        sizes = []
        for size in photo_sizes(width, height):
            stored = self._new_file("photos", data, "jpg", size=size, original_size=None)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "width": size[0],
                    "height": size[1],
                    "file_size": len(stored.content()),
                }
            )
        return {"photo": sizes}

    def press_button(self, user_id: int, message: JSON | int, data: str, chat_id: int | None = None) -> JSON:
        """A user presses the inline button with ``callback_data == data``; returns the update."""
        if isinstance(message, dict):
            chat_id, message_id = message["chat"]["id"], message["message_id"]
        else:
            chat_id, message_id = (user_id if chat_id is None else chat_id), message
        current = self.message(chat_id, message_id)
        if current is None:
            raise ValueError(f"message {message_id} in chat {chat_id} does not exist (any more)")
        rows = current.get("reply_markup", {}).get("inline_keyboard", [])
        if data not in {b.get("callback_data") for b in itertools.chain.from_iterable(rows)}:
            raise ValueError(f"message {message_id} has no button with callback_data {data!r}")
        query_id = str(next(self._ids) * 7919 + self.bot_id)
        self._open_queries.add(query_id)
        return self.enqueue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(user_id),
                    "message": copy.deepcopy(current),
                    "chat_instance": str(abs(hash((self.bot_id, chat_id)))),
                    "data": data,
                }
            }
        )

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends to their private chat fail with 403."""
        self._blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._blocked.discard(user_id)

    def migrate_group(self, chat_id: int, new_chat_id: int | None = None) -> int:
        """Upgrade a group to a supergroup; sends to the old id fail with ``migrate_to_chat_id``."""
        new_id = new_chat_id if new_chat_id is not None else -1_000_000_000_000 + chat_id
        old = self._chats.get(chat_id) or self.add_chat(chat_id, "group")
        self.add_chat(new_id, "supergroup", old.get("title"))
        self._migrated[chat_id] = new_id
        return new_id

    # -- fault injection ----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
        *,
        migrate_to_chat_id: int | None = None,
        chat_id: int | str | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (to ``chat_id``, if given) fail this way."""
        parameters: JSON = {}
        if error_code == 429 or retry_after is not None:
            parameters["retry_after"] = 1 if retry_after is None else retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {parameters['retry_after']}"
            elif error_code == 403:
                description = "Forbidden: bot was blocked by the user"
            elif migrate_to_chat_id is not None:
                description = "Bad Request: group chat was upgraded to a supergroup chat"
            else:
                description = {400: "Bad Request: fake failure", 409: "Conflict: fake failure"}.get(
                    error_code, "Internal Server Error"
                )
        error = ApiError(error_code, description, parameters or None)
        self._faults.append(_Fault(method.lower(), error, count, chat_id))

    def drop_answer(self, method: str, count: int = 1) -> None:
        """See the module docstring: the next ``count`` calls of ``method`` are carried out, never answered."""
        self._dropped[method.lower()] = self._dropped.get(method.lower(), 0) + count

    def slow_answer(self, method: str, seconds: float, count: int = 1) -> None:
        """See the module docstring: the next ``count`` calls of ``method`` answer ``seconds`` late."""
        self._slow.setdefault(method.lower(), []).extend([seconds] * count)

    # -- recording ----------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """Every call of ``method`` (case-insensitive), in arrival order."""
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the spec'd helper signature
        *,
        ok: bool | None = True,
    ) -> Call:
        """Wait for a finished call of ``method`` matching ``predicate`` and ``ok`` (``None``: any).

        Returns the earliest such call that no earlier ``wait_for`` returned, even if it arrived
        before this call began, so ``await wait_for("sendMessage")`` twice yields two messages.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index, call in enumerate(self.calls):
                if (
                    index not in self._claimed
                    and call.done
                    and call.method.lower() == method.lower()
                    and (ok is None or call.ok == ok)
                    and (predicate is None or predicate(call))
                ):
                    self._claimed.add(index)
                    return call
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                seen = ", ".join(f"{c.method}{'' if c.ok else f'!{c.error_code}'}" for c in self.calls[-20:])
                raise TimeoutError(f"no matching {method} call within {timeout}s; last calls: {seen}")
            with contextlib.suppress(TimeoutError):
                await self._sleep_until_woken(remaining)

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """The current state of a message (``None`` if it never existed or was deleted)."""
        return self._messages.get(chat_id, {}).get(message_id)

    def sent_messages(self, chat_id: int | None = None) -> list[JSON]:
        """The bot's live messages (after edits), oldest first, in one chat or all of them."""
        chats = [chat_id] if chat_id is not None else list(self._messages)
        return [
            m
            for cid in chats
            for m in self._messages.get(cid, {}).values()
            if m.get("from", {}).get("id") == self.bot_id
        ]

    def texts(self, chat_id: int) -> list[str]:
        """The current text of each live text message the bot sent to the chat."""
        return [m["text"] for m in self.sent_messages(chat_id) if "text" in m]

    def photos(self, chat_id: int | None = None) -> list[SentPhoto]:
        """Photos sent with sendPhoto (albums are in :meth:`albums`)."""
        return [p for p in self._photos if p.media_group_id is None and chat_id in (None, p.chat_id)]

    def albums(self, chat_id: int | None = None) -> list[list[tuple[bytes, str | None]]]:
        """Each sendMediaGroup as a list of (bytes, caption), in order."""
        groups: dict[str, list[tuple[bytes, str | None]]] = {}
        for item in sorted([*self._photos, *self._documents], key=lambda x: x.message_id):
            if item.media_group_id is not None and chat_id in (None, item.chat_id):
                groups.setdefault(item.media_group_id, []).append((item.data, item.caption))
        return list(groups.values())

    def documents(self, chat_id: int | None = None) -> list[SentDocument]:
        return [d for d in self._documents if chat_id in (None, d.chat_id)]

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """The command list set for exactly this scope and language (what getMyCommands answers)."""
        return list(self._commands.get((self._scope_key(scope), language_code), []))

    def visible_commands(self, chat_id: int, language_code: str = "") -> list[JSON]:
        """The menu a user with ``language_code`` sees in a chat, by Telegram's scope fallback."""
        chat = self._chats.get(chat_id, {"type": "private" if chat_id > 0 else "group"})
        general = "all_private_chats" if chat["type"] == "private" else "all_group_chats"
        scopes = [{"type": "chat", "chat_id": chat_id}, {"type": general}, {"type": "default"}]
        for scope in scopes:
            for lang in (language_code[:2], ""):
                key = (self._scope_key(scope), lang)
                if key in self._commands:
                    return list(self._commands[key])
        return []

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._answer(ApiError(401, "Unauthorized").body(), 401)
        name = request.match_info["method"]
        canonical, handler = self._methods.get(name.lower(), (name, None))
        call = Call(method=canonical, params={}, http_method=request.method)
        self.calls.append(call)
        try:
            try:
                call.params, call.files, call.file_names = await read_params(request)
            except (ValueError, aiohttp.ClientError) as exc:
                raise bad_request(f"can't parse request: {exc}") from exc
            if handler is None:
                raise ApiError(404, "Not Found")
            self._inject_fault(call)
            call.result = await handler(call)
            body, status = {"ok": True, "result": call.result}, 200
            delays = self._slow.get(canonical.lower())
            if delays:
                await asyncio.sleep(delays.pop(0))
            if self._dropped.get(canonical.lower()):
                self._dropped[canonical.lower()] -= 1
                call.dropped = True
                assert request.transport is not None
                request.transport.abort()  # the client reads the end of the connection, not an answer
                raise asyncio.CancelledError  # nothing is written back (aiohttp drops the request quietly)
        except ApiError as error:
            call.ok, call.error_code, call.description = False, error.code, error.description
            body, status = error.body(), error.code
        except Exception as exc:  # a bug in the fake or input it did not foresee: make it visible
            call.ok, call.error_code, call.description = False, 500, f"Internal Server Error: fake crashed: {exc!r}"
            body, status = ApiError(500, call.description).body(), 500
        finally:
            call.done = True
            self._wake()
        return self._answer(body, status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._answer(ApiError(401, "Unauthorized").body(), 401)
        path = request.match_info["path"]
        stored = self._files_by_path.get(path)
        if stored is None:
            return self._answer(ApiError(404, "Not Found").body(), 404)
        return web.Response(body=stored.content())

    @staticmethod
    def _answer(body: JSON, status: int) -> web.Response:
        return web.json_response(body, status=status)

    def _inject_fault(self, call: Call) -> None:
        for fault in self._faults:
            if fault.method == call.method.lower() and fault.chat_id in (None, call.chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                raise fault.error

    # -- waiting ------------------------------------------------------------------------------

    def _wake(self) -> None:
        for event in self._wakers:
            event.set()

    async def _sleep_until_woken(self, delay: float | None) -> None:
        """Sleep until something changes (a call finished, an update queued, shutdown) or timeout."""
        event = asyncio.Event()
        self._wakers.add(event)
        try:
            if delay is None:
                await event.wait()
            else:
                await asyncio.wait_for(event.wait(), delay)
        finally:
            self._wakers.discard(event)

    # -- state helpers ------------------------------------------------------------------------

    def _user(
        self,
        user_id: int,
        *,
        username: str | None = None,
        first_name: str | None = None,
        language_code: str | None = None,
    ) -> JSON:
        user = self._users.setdefault(
            user_id, {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}"}
        )
        if username is not None:
            user["username"] = username
        if first_name is not None:
            user["first_name"] = first_name
        if language_code is not None:
            user["language_code"] = language_code
        return dict(user)

    def _bot_user(self) -> JSON:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_name, "username": self.bot_username}

    def _store(self, chat_id: int, message: JSON) -> JSON:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        stored = {"message_id": message_id, "date": int(time.time()), **message}
        self._messages.setdefault(chat_id, {})[message_id] = stored
        return copy.deepcopy(stored)

    def _reply_target(self, chat_id: int, reply_to: JSON | int) -> JSON:
        message_id = reply_to["message_id"] if isinstance(reply_to, dict) else reply_to
        target = self.message(chat_id, message_id)
        if target is None:
            raise ValueError(f"no message {message_id} in chat {chat_id} to reply to")
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _chat_for_send(self, params: JSON) -> JSON:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise bad_request("chat_id is empty")
        if not isinstance(chat_id, int):
            raise bad_request("chat not found")
        if chat_id in self._migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self._migrated[chat_id]},
            )
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._chats:
            raise bad_request("chat not found")
        return self._chats[chat_id]

    def _bot_message(self, chat: JSON, params: JSON, content: JSON) -> JSON:
        """Store and return a message the bot sends: reply, keyboard and formatting applied."""
        message: JSON = {"from": self._bot_user(), "chat": chat, **content}
        markup = check_reply_markup(params.get("reply_markup"))
        if markup is not None:
            message["reply_markup"] = markup
        reply = params.get("reply_parameters") or {}
        reply_id = reply.get("message_id") if isinstance(reply, dict) else None
        reply_id = reply_id or params.get("reply_to_message_id")
        if reply_id:
            target = self.message(chat["id"], int(reply_id))
            if target is not None:
                message["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
            elif not (reply.get("allow_sending_without_reply") or params.get("allow_sending_without_reply")):
                raise bad_request("message to be replied not found")
        return self._store(chat["id"], message)

    @staticmethod
    def _caption(params: JSON, key: str = "caption") -> JSON:
        text = params.get(key)
        if text is None or text == "":
            return {}
        caption, entities = format_text(str(text), params.get("parse_mode"), params.get("caption_entities"))
        if utf16_len(caption) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        content: JSON = {"caption": caption}
        if entities:
            content["caption_entities"] = entities
        return content

    def _new_file(self, kind: str, data: bytes, ext: str, **sizes: Any) -> _StoredFile:
        n = next(self._ids)
        stored = _StoredFile(
            file_id=f"{kind[:2].upper()}fake{n:06d}{self.bot_id % 10_000:04d}",
            unique_id=f"u{n:08d}",
            path=f"{kind}/file_{n}.{ext}",
            source=data,
            **sizes,
        )
        self._files[stored.file_id] = self._files_by_path[stored.path] = stored
        return stored

    def _file_input(self, call: Call, value: Any, field_name: str) -> tuple[bytes, str] | _StoredFile:
        """Resolve a media parameter: an upload (directly or ``attach://``) or a known file_id."""
        if value is None and field_name in call.files:
            return call.files[field_name], call.file_names.get(field_name, field_name)
        if isinstance(value, str) and value.startswith("attach://"):
            name = value.removeprefix("attach://")
            if name not in call.files:
                raise bad_request(f"can't parse InputMedia: media not found for attach://{name}")
            return call.files[name], call.file_names.get(name, name)
        if isinstance(value, str) and value in self._files:
            return self._files[value]
        if value is None:
            raise bad_request(f'parameter "{field_name}" is required')
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _photo_content(self, source: tuple[bytes, str] | _StoredFile) -> tuple[JSON, bytes, int, int]:
        """The ``photo`` list of a message, plus the bytes and real size of the image."""
        data = source.source if isinstance(source, _StoredFile) else source[0]
        width, height, ext = check_photo(data)
        sizes = []
        for size in photo_sizes(width, height):
            stored = self._new_file("photos", data, ext, size=size, original_size=(width, height))
            file_size = len(data) if size == (width, height) else size[0] * size[1] // 10
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "width": size[0],
                    "height": size[1],
                    "file_size": file_size,
                }
            )
        return {"photo": sizes}, data, width, height

    def _document_content(self, source: tuple[bytes, str] | _StoredFile) -> tuple[JSON, bytes, str]:
        if isinstance(source, _StoredFile):
            data, name = source.content(), source.path.rsplit("/", 1)[-1]
        else:
            data, name = source
        if len(data) > MAX_DOCUMENT_BYTES:
            raise bad_request("file is too big")
        if not data:
            raise bad_request("file must be non-empty")
        ext = name.rsplit(".", 1)[-1] if "." in name else "bin"
        stored = self._new_file("documents", data, ext)
        mime = mimetypes.guess_type(name, strict=False)[0]
        document = {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_name": name}
        document |= {"mime_type": mime or "application/octet-stream", "file_size": len(data)}
        return {"document": document}, data, name

    def _editable(self, params: JSON) -> JSON:
        if params.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        message = (
            self.message(chat_id, message_id) if isinstance(chat_id, int) and isinstance(message_id, int) else None
        )
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return message

    def _apply_edit(self, message: JSON, changes: JSON, params: JSON) -> JSON:
        markup = check_reply_markup(params.get("reply_markup"))
        before = {k: message.get(k) for k in (*changes, "reply_markup")}
        after = {**changes, "reply_markup": markup}
        if before == after:
            raise bad_request(NOT_MODIFIED)
        for key, value in after.items():
            if value is None or value == []:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope or {"type": "default"}, sort_keys=True)

    # -- API methods --------------------------------------------------------------------------

    async def _api_getMe(self, call: Call) -> JSON:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_logOut(self, call: Call) -> bool:
        return True

    async def _api_close(self, call: Call) -> bool:
        return True

    async def _api_getUpdates(self, call: Call) -> list[JSON]:
        params = call.params
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), MAX_POLL_TIMEOUT)
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"] or []) or None
        if offset > 0:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        elif offset < 0:
            self._queue = self._queue[offset:]

        # A newer getUpdates ends an older one that is still waiting, as on the real server.
        poll = self._active_poll = object()
        self._wake()
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                if self._active_poll is not poll:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only one bot "
                        "instance is running",
                    )
                ready = self._ready_updates(limit)
                remaining = deadline - asyncio.get_running_loop().time()
                if ready or self._closing or remaining <= 0:
                    return copy.deepcopy(ready)
                with contextlib.suppress(TimeoutError):
                    await self._sleep_until_woken(remaining)
        finally:
            if self._active_poll is poll:
                self._active_poll = None

    def _ready_updates(self, limit: int) -> list[JSON]:
        """Pending updates the bot subscribed to (others are dropped, as Telegram does)."""
        self._queue = [u for u in self._queue if self._wanted(u)]
        return self._queue[:limit]

    def _wanted(self, update: JSON) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self._allowed_updates is None:
            return kind not in NOT_DEFAULT_UPDATES
        return kind in self._allowed_updates

    async def _api_setWebhook(self, call: Call) -> bool:
        params = call.params
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        if url and not re.match(r"https?://[^/\s]+", url):
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
        if params.get("drop_pending_updates"):
            self._queue.clear()
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"] or []) or None
        self.webhook = {"url": url, "secret_token": secret, "max_connections": params.get("max_connections", 40)}
        if not url:
            self.webhook = None
        self._wake()
        return True

    async def _api_deleteWebhook(self, call: Call) -> bool:
        if call.params.get("drop_pending_updates"):
            self._queue.clear()
        self.webhook = None
        return True

    async def _api_getWebhookInfo(self, call: Call) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._queue)}
        if self.webhook is not None:
            info |= {"url": self.webhook["url"], "max_connections": self.webhook["max_connections"]}
            if self._allowed_updates is not None:
                info["allowed_updates"] = self._allowed_updates
            if "last_error_message" in self.webhook:
                info["last_error_date"] = self.webhook["last_error_date"]
                info["last_error_message"] = self.webhook["last_error_message"]
        return info

    async def _webhook_loop(self) -> None:
        """Push queued updates to the webhook one at a time, retrying failures."""
        while not self._closing:
            webhook = self.webhook
            ready = self._ready_updates(1) if webhook is not None and self.deliver_via_webhook else []
            if not ready or webhook is None or self._session is None:
                await self._sleep_until_woken(None)
                continue
            update = ready[0]
            headers = {}
            if webhook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = str(webhook["secret_token"])
            status: int | None = None
            try:
                async with self._session.post(
                    webhook["url"], json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    status = response.status
                    error = f"Wrong response from the webhook: {response.status} {response.reason}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"Connection failed: {exc}"
            self.webhook_deliveries.append((update["update_id"], status))
            if status is not None and 200 <= status < 300:
                if self._queue and self._queue[0] is update:
                    self._queue.pop(0)
            else:
                webhook |= {"last_error_date": int(time.time()), "last_error_message": error}
                await asyncio.sleep(self.webhook_retry_delay)

    async def _api_setMyCommands(self, call: Call) -> bool:
        params = call.params
        commands = params.get("commands") or []
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            description = str(command.get("description", "")) if isinstance(command, dict) else ""
            if not name:
                raise bad_request("command must be non-empty")
            if len(name) > 32:
                raise bad_request("command length must not exceed 32")
            if not re.fullmatch(r"[a-z0-9_]+", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not description:
                raise bad_request("command description must be non-empty")
            if len(description) > 256:
                raise bad_request("command description length must not exceed 256")
        scope_key, language = self._command_target(params)
        self._commands[(scope_key, language)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _command_target(self, params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in COMMAND_SCOPES:
            raise bad_request("can't parse BotCommandScope JSON object")
        if scope["type"].startswith("chat") and "chat_id" not in scope:
            raise bad_request("chat not found")
        language = str(params.get("language_code") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return self._scope_key(scope), language

    async def _api_getMyCommands(self, call: Call) -> list[JSON]:
        return list(self._commands.get(self._command_target(call.params), []))

    async def _api_deleteMyCommands(self, call: Call) -> bool:
        self._commands.pop(self._command_target(call.params), None)
        return True

    async def _api_sendMessage(self, call: Call) -> JSON:
        params = call.params
        chat = self._chat_for_send(params)
        text, entities = format_text(str(params.get("text") or ""), params.get("parse_mode"), params.get("entities"))
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        content: JSON = {"text": text}
        if entities:
            content["entities"] = entities
        return self._bot_message(chat, params, content)

    async def _api_sendPhoto(self, call: Call) -> JSON:
        params = call.params
        chat = self._chat_for_send(params)
        caption = self._caption(params)
        content, data, width, height = self._photo_content(self._file_input(call, params.get("photo"), "photo"))
        if params.get("has_spoiler") in (True, "true", "True"):  # a message then says "has_media_spoiler"
            content["has_media_spoiler"] = True
        message = self._bot_message(chat, params, {**content, **caption})
        self._photos.append(SentPhoto(chat["id"], message["message_id"], data, width, height, caption.get("caption")))
        return message

    async def _api_sendDocument(self, call: Call) -> JSON:
        params = call.params
        chat = self._chat_for_send(params)
        caption = self._caption(params)
        content, data, name = self._document_content(self._file_input(call, params.get("document"), "document"))
        message = self._bot_message(chat, params, {**content, **caption})
        self._documents.append(SentDocument(chat["id"], message["message_id"], data, name, caption.get("caption")))
        return message

    async def _api_sendMediaGroup(self, call: Call) -> list[JSON]:
        params = call.params
        chat = self._chat_for_send(params)
        media = params.get("media")
        if "media" not in params:
            raise bad_request('parameter "media" is required')
        if not isinstance(media, list):
            raise bad_request("can't parse media JSON object")
        if not media:
            raise bad_request("there are no messages to send")
        if len(media) > 10:
            raise bad_request("too many messages to send as an album")
        if len(media) < 2:
            raise bad_request("too few messages to send as an album: 2-10 are needed")
        kinds = {item.get("type") if isinstance(item, dict) else None for item in media}
        for kind in kinds:
            if kind not in ("photo", "document"):
                raise bad_request(f"can't parse InputMedia: type \"{kind}\" can't be used in sendMediaGroup")
        if "document" in kinds and len(kinds) > 1:
            raise bad_request("document can't be mixed with other media types")

        prepared = []
        for item in media:
            source = self._file_input(call, item.get("media"), "media")
            caption = self._caption(item)
            if item["type"] == "photo":
                content, data, width, height = self._photo_content(source)
                if item.get("has_spoiler") is True:
                    content["has_media_spoiler"] = True
                prepared.append((content, caption, SentPhoto(0, 0, data, width, height, caption.get("caption"))))
            else:
                content, data, name = self._document_content(source)
                prepared.append((content, caption, SentDocument(0, 0, data, name, caption.get("caption"))))

        group_id = str(10**16 + next(self._ids))
        messages = []
        for content, caption, record in prepared:
            grouped = {**content, **caption, "media_group_id": group_id}
            message = self._bot_message(chat, {**params, "reply_markup": None}, grouped)
            record.chat_id, record.message_id, record.media_group_id = chat["id"], message["message_id"], group_id
            if isinstance(record, SentPhoto):
                self._photos.append(record)
            else:
                self._documents.append(record)
            messages.append(message)
        return messages

    async def _api_sendChatAction(self, call: Call) -> bool:
        self._chat_for_send(call.params)
        if call.params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _api_editMessageText(self, call: Call) -> JSON:
        params = call.params
        message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        text, entities = format_text(str(params.get("text") or ""), params.get("parse_mode"), params.get("entities"))
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("MESSAGE_TOO_LONG")
        return self._apply_edit(message, {"text": text, "entities": entities or None}, params)

    async def _api_editMessageCaption(self, call: Call) -> JSON:
        params = call.params
        message = self._editable(params)
        if "photo" not in message and "document" not in message:
            raise bad_request("there is no caption in the message to edit")
        caption = self._caption(params)
        changes = {"caption": caption.get("caption"), "caption_entities": caption.get("caption_entities")}
        return self._apply_edit(message, changes, params)

    async def _api_editMessageReplyMarkup(self, call: Call) -> JSON:
        return self._apply_edit(self._editable(call.params), {}, call.params)

    async def _api_deleteMessage(self, call: Call) -> bool:
        chat_id, message_id = call.params.get("chat_id"), call.params.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int) or self.message(chat_id, message_id) is None:
            raise bad_request("message to delete not found")
        del self._messages[chat_id][message_id]
        self.deleted.append((chat_id, message_id))
        return True

    async def _api_answerCallbackQuery(self, call: Call) -> bool:
        query_id = str(call.params.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        if len(str(call.params.get("text") or "")) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        self.callback_answers.append(dict(call.params))
        return True

    async def _api_getChatMember(self, call: Call) -> JSON:
        """A ChatMember: ``creator`` in a private chat (its user), ``administrator`` for ``chat_admins``, else
        ``member``; "chat not found" for an unknown chat."""
        chat_id, user_id = call.params.get("chat_id"), call.params.get("user_id")
        if not isinstance(chat_id, int) or chat_id not in self._chats:
            raise bad_request("chat not found")
        if not isinstance(user_id, int):
            raise bad_request("user not found")
        user = self._user(user_id)
        if chat_id == user_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in self.chat_admins.get(chat_id, set()):
            return {
                "status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                "can_manage_chat": True, "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False, "can_change_info": True,
                "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
                "can_delete_stories": False,
            }  # fmt: skip
        return {"status": "member", "user": user}

    async def _api_getFile(self, call: Call) -> JSON:
        stored = self._files.get(str(call.params.get("file_id") or ""))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.content()) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.content()),
            "file_path": stored.path,
        }
