"""A local fake of Discord (REST API v10 + gateway websocket) that the real discord.py 2.x client talks to.

Start it, point discord.py at it, log in, then drive the bot as Discord would::

    async with FakeDiscord(token="tok") as dc:
        with dc.patch_discord():                 # Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY
            client = MyClient(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            await client.login("tok")
            task = asyncio.create_task(client.connect())
            await client.wait_until_ready()
            await client.tree.sync()              # PUT /applications/{app}/commands -> dc.commands
            rec = await dc.invoke_command("draw", {"prompt": "a cat"}, locale="zh-CN")
            await dc.wait_for(lambda: rec.followups)
            ...
            await client.close(); await task

Public API of ``FakeDiscord(token=..., ...)`` (constructor arguments are documented on the class):

- ``dc.url`` / ``dc.api_base`` (``{url}/api/v10``) / ``dc.gateway_url`` (``ws://127.0.0.1:PORT/gateway``).
- ``dc.patch_discord()``: context manager pointing discord.py at the fake and restoring it afterwards.
- ``dc.token``: the valid bot token; change it to simulate a rotated token (gateway then closes with 4004).
- ``dc.commands: list[dict]`` and ``dc.guild_commands: dict[int, list[dict]]``: the last bulk-overwritten
  commands as stored (with ``id``, ``application_id``, ``version``, localizations, options, choices);
  ``dc.command(name, guild_id=None)`` finds one.
- ``await dc.invoke_command(name, options, *, user_id, guild_id, channel_id, locale, guild_locale,
  permissions, dm)`` dispatches an APPLICATION_COMMAND ``INTERACTION_CREATE`` for a registered command
  (``"group sub"`` names reach subcommands; an ``(filename, bytes)`` value fills an attachment option)
  and returns its ``FakeInteraction``.
- ``await dc.click_button(custom_id, message, ...)`` / ``await dc.select(custom_id, values, message, ...)``
  dispatch MESSAGE_COMPONENT interactions for a component present on ``message`` (a ``FakeMessage``).
- ``await dc.submit_modal(interaction, values, ...)`` submits the form (modal) the bot opened in answer to
  ``interaction`` (MODAL_SUBMIT), text inputs by custom id (unnamed ones keep their pre-filled value);
  ``await dc.autocomplete(name, options, focused, ...)`` sends an AUTOCOMPLETE interaction whose answer
  lands in ``autocomplete_choices``. User (6) and channel (7) options take ids and fill ``resolved``.
- ``FakeInteraction``: ``payload`` (what was dispatched), ``callbacks`` (accepted callback ``Call`` s),
  ``response_type``, ``original`` (the ``@original`` ``FakeMessage``), ``followups``, ``modal``,
  ``autocomplete_choices``, ``expire()`` (make its token invalid now).
- ``FakeMessage``: ``id, channel_id, content, embeds, components, attachments (FakeAttachment with .data
  bytes), flags, ephemeral, loading, deleted, edits, custom_ids``. ``dc.messages`` holds every message by
  id, ``dc.channel_messages(channel_id)`` the visible (non-ephemeral, non-deleted) ones in order.
- ``dc.calls: list[Call]``: every API request (method, path without ``/api/v10``, query, json, files as
  ``{"files[0]": (filename, bytes)}``, status); ``dc.calls_to(method, path_regex)`` filters them.
- ``await dc.wait_for(predicate, timeout=5.0)``: returns the predicate's first truthy value; re-checked on
  every request the fake answers (and every 50 ms); raises ``TimeoutError`` listing the last calls.
- ``dc.fail_next(method, path_regex, status=429, retry_after=0.2, global_=False, count=1, body=None,
  headers=None, via=True)``: the next ``count`` matching requests get this answer instead (429s come with
  ``Retry-After``, ``X-RateLimit-*``, ``X-RateLimit-Scope`` and ``Via``); returns a ``Fault`` with ``hits``.
- ``dc.drop_answer(method, path_regex, count=1, carry_out=True)``: the next ``count`` matching requests are
  read whole and (``carry_out``) carried out, but their connection is closed instead of answered: Discord
  had the request (the pictures are in the chat) and its answer was lost on the way.
- ``dc.missing_permissions: set[int]``: channel ids where the bot lacks Send Messages/Attach Files:
  posting there answers 403 code 50013 (and ``app_permissions`` of interactions there say so).
- ``await dc.dispatch(event, data)``, ``await dc.request_reconnect()`` (op 7, the client then RESUMEs),
  ``dc.identifies`` / ``dc.resumes`` (payloads received), ``dc.is_connected``.

Discord behaviour reproduced: JSON answers carry ``Content-Type: application/json`` exactly; errors use
Discord's ``{"message", "code"}`` bodies; limits: 10 files, ``file_size_limit`` per file and
``request_size_limit`` per request (413 code 40005), content 2000 chars, 10 embeds, 5 action rows, empty
message (50006); interaction callbacks only within ``ack_deadline`` s (404 code 10062), once (400 code
40060); webhook (followup/original) tokens valid ``interaction_token_lifetime`` s (401 code 50027); the
first followup after a deferred (type 5) response replaces the loading message and inherits its
ephemerality; command payloads are validated like Discord does (names, lengths, locales, 25 options and
choices). Sharding: an IDENTIFY with ``shard: [id, count]`` opens that shard's session, whose READY and
GUILD_CREATEs hold only its guilds (``(guild_id >> 22) % count == id``, as Discord routes), and each guild's
events go to its shard's session (DMs to shard 0); ``identifies`` records each IDENTIFY. Not modelled:
MESSAGE_CREATE echoes of the bot's own messages, zlib compression (plain text frames, which discord.py
accepts), voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from tests.fakes.server import FakeServer

JSON = dict[str, Any]
T = TypeVar("T")

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
_SETTABLE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
DEFAULT_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
)
_DENIED_IN_RESTRICTED = SEND_MESSAGES | ATTACH_FILES | EMBED_LINKS

# Privileged gateway intents (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT).
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN, NUMBER, ATTACHMENT = 1, 2, 3, 4, 5, 10, 11
USER, CHANNEL = 6, 7
_OPTION_TYPES = range(1, 12)

# Interaction types and interaction callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
_ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {4, 5, 9},
    MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5, 6, 7},
}

LOCALES = frozenset(
    {"id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl"}
    | {"pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja"}
    | {"zh-TW", "ko"}
)

_snowflake_seq = itertools.count()
# Per-request storage for the parsed body; aiohttp >= 3.13 wants typed keys.
_CALL: Any = web.RequestKey("call", object) if hasattr(web, "RequestKey") else "call"
_UPLOADS: Any = web.RequestKey("uploads", object) if hasattr(web, "RequestKey") else "uploads"


def snowflake() -> int:
    """A fresh, increasing Discord-style id (timestamp in the high bits)."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_snowflake_seq) & 0x3FFFFF)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON answer with ``Content-Type: application/json`` exactly: discord.py parses nothing else."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=hdrs)


class ApiError(Exception):
    """Raised by handlers; becomes Discord's error body ``{"message", "code"[, "errors"]}``."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)


def _parse_json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc


def form_error(path: list[str | int], code: str, message: str) -> ApiError:
    """400 ``Invalid Form Body`` (50035) with ``errors`` nested along ``path``, as Discord reports them."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass
class Call:
    """One API request: ``path`` without ``/api/v10``; ``files`` maps form names to (filename, bytes)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    status: int = 0


@dataclass
class Fault:
    """A planned answer for the next ``remaining`` requests matching ``method`` and ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    remaining: int
    hits: int = 0


@dataclass
class FakeChannel:
    """A guild text channel (``type`` 0)."""

    id: int
    name: str = "general"
    type: int = 0
    nsfw: bool = False  # age-restricted


@dataclass
class FakeGuild:
    """A guild the bot is in; sent in GUILD_CREATE after READY."""

    id: int
    name: str = "Fake Guild"
    preferred_locale: str = "en-US"
    channels: list[FakeChannel] = field(default_factory=list)


@dataclass
class FakeAttachment:
    """A stored upload; ``url`` serves ``data`` back from the fake."""

    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> JSON:
        out: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            out["description"] = self.description
        if self.width is not None:
            out["width"], out["height"] = self.width, self.height
        return out


@dataclass(eq=False)
class FakeMessage:
    """A message as Discord stores it (channel post, interaction response or followup)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: JSON
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    edits: int = 0
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def custom_ids(self) -> list[str]:
        """Every ``custom_id`` in the message's components, depth first."""
        return [c["custom_id"] for c in _walk_components(self.components) if "custom_id" in c]

    def find_component(self, custom_id: str) -> JSON:
        for comp in _walk_components(self.components):
            if comp.get("custom_id") == custom_id:
                return comp
        raise LookupError(f"message {self.id} has no component {custom_id!r} (has {self.custom_ids})")

    def to_payload(self) -> JSON:
        out: JSON = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "embeds": self.embeds,
            "components": self.components,
            "attachments": [a.to_payload() for a in self.attachments],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            out["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            out["webhook_id"] = str(self.webhook_id)
            out["application_id"] = str(self.webhook_id)
        return out


def _walk_components(components: list[JSON]) -> Iterator[JSON]:
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            yield comp["accessory"]


@dataclass(eq=False)
class FakeInteraction:
    """One interaction the fake dispatched, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: JSON
    user_id: int
    channel_id: int
    guild_id: int | None
    message: FakeMessage | None = None  # the message a component sits on
    created_at: float = field(default_factory=time.monotonic)
    callbacks: list[Call] = field(default_factory=list)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    modal: JSON | None = None
    autocomplete_choices: list[JSON] | None = None
    expired: bool = False

    @property
    def response_type(self) -> int | None:
        """The callback type of the (single) accepted response, or ``None`` before it."""
        return self.callbacks[0].json["type"] if self.callbacks else None

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    def expire(self) -> None:
        """Make the interaction token invalid now (as if 15 minutes had passed)."""
        self.expired = True


@dataclass
class _Session:
    id: str
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    pending: list[JSON] = field(default_factory=list)
    valid: bool = True
    shard: tuple[int, int] | None = None  # (id, count) when identified as a shard


@dataclass
class _Upload:
    filename: str
    data: bytes
    content_type: str | None


@contextlib.contextmanager
def patch_discord(api_base: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py at a fake (REST base and default gateway) and restore both afterwards.

    In discord.py 2.7 only these two matter: ``Client.connect`` never asks ``GET /gateway``, it dials
    ``DiscordWebSocket.DEFAULT_GATEWAY``; ``Route.url`` is computed from ``Route.BASE`` when a route is
    created, so patch before the client makes requests.
    """
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE = old_base
        DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


class FakeDiscord(FakeServer):
    """The fake. See the module docstring for the helper API.

    Args:
        token: the only bot token accepted (REST ``Authorization: Bot <token>`` and gateway IDENTIFY).
        application_id: also the bot user's id, as for every modern Discord application.
        bot_name: the bot user's username.
        guilds: guilds the bot is in; default one guild ``GUILD_ID`` with one text channel ``CHANNEL_ID``.
        interaction_token_lifetime: seconds a webhook (followup/@original) token stays valid (Discord: 900).
        ack_deadline: seconds within which the interaction callback must arrive (Discord: 3).
        file_size_limit: per-file upload limit, also sent as ``attachment_size_limit`` (Discord: 10 MiB).
        request_size_limit: whole-request limit (Discord: 25 MiB).
        privileged_intents: privileged intents enabled for the app; asking for others closes with 4014.
        heartbeat_interval_ms: sent in HELLO.
    """

    GUILD_ID = 900_000_000_000_000_001
    CHANNEL_ID = 900_000_000_000_000_002
    USER_ID = 900_000_000_000_000_003

    def __init__(
        self,
        token: str = "fake-bot-token",
        *,
        application_id: int = 900_000_000_000_000_000,
        bot_name: str = "sdbot",
        guilds: list[FakeGuild] | None = None,
        interaction_token_lifetime: float = 15 * 60,
        ack_deadline: float = 3.0,
        file_size_limit: int = 10 * 1024 * 1024,
        request_size_limit: int = 25 * 1024 * 1024,
        privileged_intents: int = 0,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        super().__init__()
        self.token = token
        self.application_id = application_id
        self.bot_user: JSON = {
            "id": str(application_id),
            "username": bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
            "verified": True,
            "mfa_enabled": False,
        }
        if guilds is None:
            guilds = [FakeGuild(self.GUILD_ID, channels=[FakeChannel(self.CHANNEL_ID)])]
        self.guilds = guilds
        self.interaction_token_lifetime = interaction_token_lifetime
        self.ack_deadline = ack_deadline
        self.file_size_limit = file_size_limit
        self.request_size_limit = request_size_limit
        self.privileged_intents = privileged_intents
        self.heartbeat_interval_ms = heartbeat_interval_ms

        self.users: dict[int, JSON] = {}
        self.add_user(self.USER_ID, "alice")
        self.commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.drops: list[Fault] = []  # answers lost (drop_answer); status/body/headers unused
        self.interactions: dict[int, FakeInteraction] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.missing_permissions: set[int] = set()
        self.identifies: list[JSON] = []
        self.resumes: list[JSON] = []
        self._sessions: dict[str, _Session] = {}
        self._current: _Session | None = None
        self._shards: dict[int, _Session] = {}  # shard id -> its session (sharded bots)
        self._shard_count = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._blobs: dict[str, FakeAttachment] = {}  # every upload, served at its url
        self._expired: set[str] = set()  # attachment links that ran out (expire_attachment)
        self._changed = asyncio.Event()

        @web.middleware
        async def _api(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            if not request.path.startswith(API_PREFIX + "/"):
                return await handler(request)
            return await self._handle_api(request, handler)

        self.app.middlewares.append(_api)
        r = self.app.router
        p = API_PREFIX
        r.add_get("/gateway", self._gateway)
        r.add_get("/attachments/{channel}/{id}/{filename}", self._attachment)
        r.add_get(p + "/users/@me", self._users_me)
        r.add_get(p + "/oauth2/applications/@me", self._application_me)
        r.add_get(p + "/gateway", self._gateway_info)
        r.add_get(p + "/gateway/bot", self._gateway_info)
        r.add_route("*", p + "/applications/{app}/commands", self._global_commands)
        r.add_route("*", p + "/applications/{app}/guilds/{guild}/commands", self._guild_commands)
        r.add_post(p + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(p + "/webhooks/{app}/{token}", self._followup)
        r.add_route("*", p + "/webhooks/{app}/{token}/messages/{message}", self._webhook_message)
        r.add_get(p + "/channels/{channel}", self._get_channel)
        r.add_post(p + "/channels/{channel}/typing", self._typing)
        r.add_post(p + "/channels/{channel}/messages", self._channel_post)
        r.add_route("*", p + "/channels/{channel}/messages/{message}", self._channel_message)

    # ------------------------------------------------------------------ public helpers

    @property
    def api_base(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def is_connected(self) -> bool:
        """Whether a bot session is identified (or resumed) on an open gateway socket."""
        return self._current is not None and self._current.ws is not None

    def patch_discord(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py at this fake and restore it afterwards (see :func:`patch_discord`)."""
        return patch_discord(self.api_base, self.gateway_url)

    def add_user(self, user_id: int, username: str | None = None, global_name: str | None = None) -> JSON:
        """Register (or return) a human user; ``invoke_command`` creates unknown ones on the fly."""
        if user_id not in self.users:
            name = username or f"user{user_id % 10000}"
            self.users[user_id] = {
                "id": str(user_id),
                "username": name,
                "discriminator": "0",
                "global_name": global_name or name,
                "avatar": None,
                "public_flags": 0,
            }
        return self.users[user_id]

    def command(self, name: str, guild_id: int | None = None, type: int = 1) -> JSON:
        """The stored command called ``name`` (guild commands first when ``guild_id`` is given)."""
        pools = ([self.guild_commands.get(guild_id, [])] if guild_id else []) + [self.commands]
        for pool in pools:
            for cmd in pool:
                if cmd["name"] == name and cmd.get("type", 1) == type:
                    return cmd
        raise LookupError(f"command {name!r} is not registered (sync the CommandTree first)")

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method (``*`` for any) whose path matches ``path_regex`` (search)."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if method in ("*", c.method) and pattern.search(c.path)]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        """Messages everyone sees in the channel, oldest first (no ephemeral, loading or deleted ones)."""
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id and not m.deleted and not m.ephemeral and not m.loading
        ]

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.2,
        global_: bool = False,
        count: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        via: bool = True,
    ) -> Fault:
        """Answer the next ``count`` requests matching ``method`` (``*``: any) and ``path_regex``.

        ``path_regex`` is searched in the path without ``/api/v10`` (e.g. ``r"^/webhooks/"``). A 429 gets
        Discord's rate-limit body and headers; ``via=False`` drops ``Via: 1.1 google``, which discord.py
        reads as a Cloudflare ban (it raises instead of retrying). Other statuses get ``body`` or
        ``{"message": <reason>, "code": 0}``.
        """
        hdrs: dict[str, str] = {}
        if status == 429:
            if body is None:
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
            hdrs = {
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Scope": "global" if global_ else "user",
            }
            if global_:
                hdrs["X-RateLimit-Global"] = "true"
        elif body is None:
            body = {"message": HTTPStatus(status).phrase, "code": 0}
        if via:
            hdrs["Via"] = "1.1 google"
        hdrs.update(headers or {})
        fault = Fault(method.upper(), re.compile(path_regex), status, body, hdrs, count)
        self.faults.append(fault)
        return fault

    def drop_answer(self, method: str, path_regex: str, count: int = 1, carry_out: bool = True) -> Fault:
        """See the module docstring: the next ``count`` matching requests get no answer (connection closed),
        after being carried out when ``carry_out``, else before (read whole, then nothing happens)."""
        drop = Fault(method.upper(), re.compile(path_regex), 200 if carry_out else 0, None, {}, count)
        self.drops.append(drop)
        return drop

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy and return that value; ``TimeoutError`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{c.method} {c.path} -> {c.status}" for c in self.calls[-8:])
                raise TimeoutError(f"condition not met within {timeout}s; last calls: {recent or 'none'}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    def shard_of(self, guild_id: int | None) -> int:
        """The shard Discord gives ``guild_id``'s events (DMs: 0), for the shard count identified with."""
        return 0 if guild_id is None or not self._shard_count else (guild_id >> 22) % self._shard_count

    async def dispatch(self, event: str, data: JSON, session: _Session | None = None) -> None:
        """Send a DISPATCH (op 0) to the bot's session (``session``, else the guild's shard's, else the last
        one identified); queued for replay while it is reconnecting."""
        if session is None and self._shards:
            guild_id = data.get("guild_id")
            session = self._shards.get(self.shard_of(int(guild_id) if guild_id else None))
        session = session or self._current
        if session is None:
            raise RuntimeError("no bot session on the fake gateway (did the client connect?)")
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        if session.ws is None or session.ws.closed:
            session.pending.append(frame)
        else:
            await session.ws.send_json(frame)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and RESUMEs on ``resume_gateway_url``."""
        if self._current is None or self._current.ws is None:
            raise RuntimeError("no connected bot session")
        await self._current.ws.send_json({"op": 7, "d": None, "s": None, "t": None})

    async def invoke_command(
        self,
        name: str,
        options: JSON | None = None,
        *,
        user_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
        guild_locale: str | None = None,
        permissions: int = DEFAULT_PERMISSIONS,
        dm: bool = False,
    ) -> FakeInteraction:
        """Dispatch a slash command (type 2) for a registered command and return its record.

        ``name`` may be ``"group sub"`` for subcommands. Option values keep their Python types; the
        option types come from the registered command (choices and ranges are deliberately NOT enforced,
        like a modified client could send). An attachment option takes ``(filename, bytes)``.
        ``permissions`` is the member's whole permission bitfield, e.g. ``DEFAULT_PERMISSIONS | MANAGE_GUILD``.
        ``dm=True`` invokes from the user's DM with the bot (``user`` instead of ``member``, no guild).
        """
        guild = None if dm else self._guild(guild_id)
        first, *subs = name.split()
        cmd = self.command(first, guild.id if guild else None)
        resolved: JSON = {}
        channel_for_files = channel_id or (guild.channels[0].id if guild and guild.channels else 0)
        defs: list[JSON] = cmd.get("options", [])
        leaf_options = self._build_options(defs, subs, options or {}, resolved, channel_for_files, guild)
        data: JSON = {"id": cmd["id"], "name": cmd["name"], "type": cmd.get("type", 1)}
        if leaf_options:
            data["options"] = leaf_options
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return await self._interact(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            guild=guild,
            channel_id=channel_id,
            locale=locale,
            guild_locale=guild_locale,
            permissions=permissions,
        )

    def post_as_user(
        self,
        content: str = "",
        files: list[tuple[str, bytes]] | None = None,
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
    ) -> FakeMessage:
        """A member posts a message (with ``files`` as ``(filename, bytes)`` attachments) in a guild channel."""
        guild = self._guild(guild_id)
        channel = next((c for c in guild.channels if c.id == channel_id), None) if channel_id else guild.channels[0]
        if channel is None:
            raise LookupError(f"guild {guild.id} has no channel {channel_id}")
        user = self.add_user(user_id or self.USER_ID)
        message = FakeMessage(id=snowflake(), channel_id=channel.id, guild_id=guild.id, author=user, content=content)
        for filename, data in files or []:
            message.attachments.append(self._new_attachment(channel.id, _Upload(filename, data, None), filename, None))
        self.messages[message.id] = message
        return message

    async def invoke_message_command(
        self,
        name: str,
        target: FakeMessage,
        *,
        user_id: int | None = None,
        locale: str = "en-US",
        permissions: int = DEFAULT_PERMISSIONS,
    ) -> FakeInteraction:
        """A message context-menu command (type 3) on ``target``: ``data.target_id`` and the message in
        ``data.resolved.messages``, as Discord sends them."""
        guild = self._guild(target.guild_id) if target.guild_id else None
        cmd = self.command(name, type=3)
        data: JSON = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": 3,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): target.to_payload()}},
        }
        return await self._interact(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            guild=guild,
            channel_id=target.channel_id,
            locale=locale,
            guild_locale=None,
            permissions=permissions,
        )

    def expire_attachment(self, attachment: FakeAttachment) -> None:
        """The attachment's signed CDN link runs out: its ``url`` answers 404 from now on (a fresh link comes
        with the message, fetched again, while the message exists)."""
        self._expired.add(attachment.url)
        attachment.url = attachment.url.split("?")[0] + f"?ex={snowflake():x}"

    async def click_button(
        self,
        custom_id: str,
        message: FakeMessage,
        *,
        user_id: int | None = None,
        locale: str = "en-US",
        permissions: int = DEFAULT_PERMISSIONS,
    ) -> FakeInteraction:
        """Dispatch a MESSAGE_COMPONENT interaction (type 3) for the button ``custom_id`` on ``message``."""
        comp = message.find_component(custom_id)
        if comp.get("type") != 2:
            raise ValueError(f"component {custom_id!r} is not a button (type {comp.get('type')})")
        return await self._component(message, comp, {}, user_id, locale, permissions)

    async def select(
        self,
        custom_id: str,
        values: list[str],
        message: FakeMessage,
        *,
        user_id: int | None = None,
        locale: str = "en-US",
        permissions: int = DEFAULT_PERMISSIONS,
    ) -> FakeInteraction:
        """Dispatch a MESSAGE_COMPONENT interaction choosing ``values`` in the select menu ``custom_id``."""
        comp = message.find_component(custom_id)
        if comp.get("type") != 3:
            raise ValueError(f"component {custom_id!r} is not a string select (type {comp.get('type')})")
        return await self._component(message, comp, {"values": values}, user_id, locale, permissions)

    async def submit_modal(
        self,
        interaction: FakeInteraction,
        values: dict[str, str] | None = None,
        *,
        user_id: int | None = None,
        locale: str = "en-US",
        permissions: int = DEFAULT_PERMISSIONS,
    ) -> FakeInteraction:
        """Submit the modal the bot opened (callback type 9) in answer to ``interaction``: a MODAL_SUBMIT with
        every text input, ``values`` by custom id, others with their pre-filled ``value``."""
        modal = interaction.modal
        if modal is None:
            raise LookupError(f"interaction {interaction.id} opened no modal")
        values = values or {}
        rows: list[JSON] = []
        for row in modal["components"]:
            inner = [row["component"]] if row.get("type") == 18 else row.get("components", [])
            inputs = [
                {"type": 4, "custom_id": c["custom_id"], "value": values.get(c["custom_id"], c.get("value", ""))}
                for c in inner
                if c.get("type") == 4
            ]
            if row.get("type") == 18:
                rows.extend({"type": 18, "component": i} for i in inputs)
            else:
                rows.append({"type": 1, "components": inputs})
        guild = self._guild(interaction.guild_id) if interaction.guild_id else None
        return await self._interact(
            MODAL_SUBMIT,
            {"custom_id": modal["custom_id"], "components": rows},
            user_id=user_id or interaction.user_id,
            guild=guild,
            channel_id=interaction.channel_id,
            locale=locale,
            guild_locale=None,
            permissions=permissions,
            message=interaction.message,
        )

    async def autocomplete(
        self,
        name: str,
        options: JSON,
        focused: str,
        *,
        user_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Send an AUTOCOMPLETE interaction for command ``name`` while the user types ``options[focused]``;
        the bot's answer lands in the record's ``autocomplete_choices``."""
        guild = self._guild(guild_id)
        first, *subs = name.split()
        cmd = self.command(first, guild.id)
        channel = guild.channels[0].id if guild.channels else 0
        leaf = self._build_options(cmd.get("options", []), subs, options, {}, channel, guild)
        stack = list(leaf)
        while stack:
            option = stack.pop()
            if option["name"] == focused and "value" in option:
                option["focused"] = True
            stack.extend(option.get("options", []))
        data: JSON = {"id": cmd["id"], "name": cmd["name"], "type": cmd.get("type", 1), "options": leaf}
        return await self._interact(
            AUTOCOMPLETE,
            data,
            user_id=user_id,
            guild=guild,
            channel_id=None,
            locale=locale,
            guild_locale=None,
            permissions=DEFAULT_PERMISSIONS,
        )

    # ------------------------------------------------------------------ lifecycle

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake stopping")
        await super().stop()

    # ------------------------------------------------------------------ interactions

    def _guild(self, guild_id: int | None) -> FakeGuild:
        for guild in self.guilds:
            if guild_id in (None, guild.id):
                return guild
        raise LookupError(f"the bot is not in guild {guild_id}")

    def _find_channel(self, channel_id: int) -> tuple[FakeGuild, FakeChannel] | None:
        for guild in self.guilds:
            for channel in guild.channels:
                if channel.id == channel_id:
                    return guild, channel
        return None

    def _app_permissions(self, channel_id: int) -> int:
        perms = DEFAULT_PERMISSIONS
        if channel_id in self.missing_permissions:
            perms &= ~_DENIED_IN_RESTRICTED
        return perms

    def _build_options(
        self,
        defs: list[JSON],
        subs: list[str],
        values: JSON,
        resolved: JSON,
        channel_id: int,
        guild: FakeGuild | None = None,
    ) -> list[JSON]:
        if subs:
            sub = next((d for d in defs if d["name"] == subs[0]), None)
            if sub is None or sub.get("type") not in (SUB_COMMAND, SUB_COMMAND_GROUP):
                raise LookupError(f"no subcommand {subs[0]!r}")
            inner = self._build_options(sub.get("options", []), subs[1:], values, resolved, channel_id, guild)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        out: list[JSON] = []
        by_name = {d["name"]: d for d in defs}
        for key, value in values.items():
            if key not in by_name:
                raise LookupError(f"no option {key!r}; registered: {sorted(by_name)}")
            otype = by_name[key]["type"]
            if otype == ATTACHMENT:
                filename, blob = value
                att = self._new_attachment(channel_id, _Upload(filename, blob, None), filename, None)
                resolved.setdefault("attachments", {})[str(att.id)] = att.to_payload()
                value = str(att.id)
            elif otype == NUMBER and isinstance(value, int):
                value = float(value)
            elif otype == USER:
                user = self.add_user(int(value))
                value = user["id"]
                resolved.setdefault("users", {})[value] = user
                if guild is not None:
                    member = {k: v for k, v in self._member_payload(user).items() if k != "user"}
                    resolved.setdefault("members", {})[value] = {**member, "permissions": str(DEFAULT_PERMISSIONS)}
            elif otype == CHANNEL:
                found = self._find_channel(int(value))
                if found is None:
                    raise LookupError(f"no channel {value}")
                channel = found[1]
                value = str(channel.id)
                perms = str(self._app_permissions(channel.id))
                resolved.setdefault("channels", {})[value] = {**self._channel_payload(channel), "permissions": perms}
            elif otype not in (STRING, INTEGER, BOOLEAN, NUMBER):
                raise ValueError(f"option type {otype} is not supported by the fake")
            out.append({"name": key, "type": otype, "value": value})
        return out

    async def _component(
        self,
        message: FakeMessage,
        comp: JSON,
        extra: JSON,
        user_id: int | None,
        locale: str,
        permissions: int,
    ) -> FakeInteraction:
        if message.deleted:
            raise LookupError(f"message {message.id} was deleted")
        if comp.get("disabled"):
            raise ValueError(f"component {comp['custom_id']!r} is disabled")
        data = {"custom_id": comp["custom_id"], "component_type": comp["type"], **extra}
        guild = self._guild(message.guild_id) if message.guild_id else None
        return await self._interact(
            MESSAGE_COMPONENT,
            data,
            user_id=user_id,
            guild=guild,
            channel_id=message.channel_id,
            locale=locale,
            guild_locale=None,
            permissions=permissions,
            message=message,
        )

    async def _interact(
        self,
        itype: int,
        data: JSON,
        *,
        user_id: int | None,
        guild: FakeGuild | None,
        channel_id: int | None,
        locale: str,
        guild_locale: str | None,
        permissions: int,
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        await self.wait_for(lambda: self.is_connected)
        user = self.add_user(user_id or self.USER_ID)
        uid = int(user["id"])
        iid, token = snowflake(), f"aW50ZXJhY3Rpb246{secrets.token_urlsafe(48)}"
        payload: JSON = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "data": data,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.file_size_limit,
        }
        if guild is not None:
            channel = next((c for c in guild.channels if c.id == channel_id), None) if channel_id else None
            channel = channel or (guild.channels[0] if guild.channels else None)
            if channel is None:
                raise LookupError(f"guild {guild.id} has no channel {channel_id}")
            cid = channel.id
            payload.update(
                guild_id=str(guild.id),
                channel_id=str(cid),
                channel={**self._channel_payload(channel), "guild_id": str(guild.id)},
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild_locale or guild.preferred_locale,
                member={**self._member_payload(user), "permissions": str(permissions)},
                app_permissions=str(self._app_permissions(cid)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            cid = channel_id or (uid ^ 0x5A5A)  # a stable DM channel id per user
            payload.update(
                channel_id=str(cid),
                channel={"id": str(cid), "type": 1, "flags": 0, "recipients": [user], "last_message_id": None},
                user=user,
                app_permissions=str(self._app_permissions(cid)),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        if message is not None:
            payload["message"] = message.to_payload()
        record = FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            user_id=uid,
            channel_id=cid,
            guild_id=guild.id if guild else None,
            message=message,
        )
        self.interactions[iid] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    def _interaction_for_webhook(self, request: web.Request) -> FakeInteraction:
        if request.match_info["app"] != str(self.application_id):
            raise ApiError(404, 10015, "Unknown Webhook")
        token = request.match_info["token"]
        record = next((i for i in self.interactions.values() if i.token == token), None)
        lifetime_over = record is not None and (time.monotonic() - record.created_at > self.interaction_token_lifetime)
        if record is None or record.expired or lifetime_over:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not record.callbacks:
            raise ApiError(404, 10015, "Unknown Webhook")
        return record

    # ------------------------------------------------------------------ REST plumbing

    async def _handle_api(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :]
        call = Call(request.method, path, dict(request.query))
        self.calls.append(call)
        request[_CALL] = call
        request[_UPLOADS] = {}
        fault = None
        try:
            await self._read_body(request, call)
            fault = self._take_fault(request.method, path)
            drop = self._take_fault(request.method, path, self.drops) if fault is None else None
            if drop is not None:
                if drop.status:  # carried out: the answer alone is lost
                    await handler(request)
                call.status = -1
                self._changed.set()
                assert request.transport is not None
                request.transport.abort()  # the client reads the end of the connection, not an answer
                raise asyncio.CancelledError  # nothing is written back (aiohttp drops the request quietly)
            if fault is not None:
                response: web.StreamResponse = json_response(fault.body, fault.status, fault.headers)
            else:
                response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:  # no such route / method
            response = json_response({"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status)
        if fault is None:
            response.headers["Via"] = "1.1 google"  # Discord is behind Google's load balancers
        if response.status != 429:
            resource = request.match_info.route.resource
            bucket = hashlib.sha1(f"{request.method} {resource.canonical if resource else path}".encode())
            response.headers.update(
                {
                    "X-RateLimit-Bucket": bucket.hexdigest()[:16],
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "49",
                    "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                    "X-RateLimit-Reset-After": "1.000",
                }
            )
        call.status = response.status
        self._changed.set()
        return response

    async def _read_body(self, request: web.Request, call: Call) -> None:
        if request.content_length is not None and request.content_length > self.request_size_limit:
            raise ApiError(413, 40005, "Request entity too large")
        if request.content_type == "multipart/form-data":
            uploads: dict[str, _Upload] = {}
            total = 0
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    blob = value.file.read()
                    total += len(blob)
                    uploads[name] = _Upload(value.filename, blob, value.content_type)
                    call.files[name] = (value.filename, blob)
                elif name == "payload_json":
                    text = value if isinstance(value, str) else bytes(value).decode()
                    total += len(text)
                    call.json = _parse_json(text)
            if total > self.request_size_limit:
                raise ApiError(413, 40005, "Request entity too large")
            request[_UPLOADS] = uploads
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                call.json = _parse_json(raw)

    def _take_fault(self, method: str, path: str, faults: list[Fault] | None = None) -> Fault | None:
        for fault in self.faults if faults is None else faults:
            if fault.remaining > 0 and fault.method in ("*", method) and fault.pattern.search(path):
                fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise ApiError(401, 0, "401: Unauthorized")

    # ------------------------------------------------------------------ REST: identity and commands

    async def _users_me(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return json_response(self.bot_user)

    async def _application_me(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        owner = {"id": str(self.USER_ID - 1), "username": "owner", "discriminator": "0", "avatar": None}
        return json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": owner,
                "team": None,
                "bot": self.bot_user,
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "tags": [],
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        data: JSON = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            self._check_auth(request)
            limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
            data.update(shards=1, session_start_limit=limit)
        return json_response(data)

    async def _global_commands(self, request: web.Request) -> web.Response:
        return await self._commands(request, None)

    async def _guild_commands(self, request: web.Request) -> web.Response:
        guild_id = int(request.match_info["guild"])
        if not any(g.id == guild_id for g in self.guilds):
            raise ApiError(403, 50001, "Missing Access")
        return await self._commands(request, guild_id)

    async def _commands(self, request: web.Request, guild_id: int | None) -> web.Response:
        self._check_auth(request)
        if request.match_info["app"] != str(self.application_id):
            raise ApiError(403, 50001, "Missing Access")
        current = self.guild_commands.get(guild_id, []) if guild_id else self.commands
        if request.method == "GET":
            return json_response(current)
        if request.method != "PUT":
            raise ApiError(405, 0, "405: Method Not Allowed")
        payload = request[_CALL].json
        if not isinstance(payload, list):
            raise form_error([], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        if len(payload) > 100:
            raise form_error([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        stored: list[JSON] = []
        seen: set[tuple[int, str]] = set()
        for index, raw in enumerate(payload):
            _validate_command(raw, [index])
            key = (raw.get("type", 1), raw["name"])
            if key in seen:
                raise form_error([index, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate name")
            seen.add(key)
            old = next((c for c in current if (c.get("type", 1), c["name"]) == key), None)
            cmd = copy.deepcopy(raw)
            cmd.setdefault("type", 1)
            cmd.setdefault("description", "")  # context-menu commands: Discord answers with an empty one
            cmd.setdefault("options", [])
            cmd.setdefault("default_member_permissions", None)
            cmd.setdefault("nsfw", False)
            cmd.update(
                id=old["id"] if old else str(snowflake()),
                application_id=str(self.application_id),
                version=str(snowflake()),
            )
            if guild_id:
                cmd["guild_id"] = str(guild_id)
            stored.append(cmd)
        if guild_id:
            self.guild_commands[guild_id] = stored
        else:
            self.commands = stored
        return json_response(stored)

    # ------------------------------------------------------------------ REST: interactions and webhooks

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        call: Call = request[_CALL]
        record = self.interactions.get(int(request.match_info["id"]))
        if record is None or record.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.callbacks:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if record.expired or time.monotonic() - record.created_at > self.ack_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = call.json if isinstance(call.json, dict) else {}
        rtype = body.get("type")
        if rtype not in _ALLOWED_CALLBACKS.get(record.type, set()):
            raise form_error(["type"], "INTERACTION_CALLBACK_TYPE_INVALID", "Invalid interaction response type")
        data = body.get("data") or {}
        uploads: dict[str, _Upload] = request[_UPLOADS]
        message: FakeMessage | None = None
        if rtype == 4:
            message = self._create_message(record.channel_id, record.guild_id, data, uploads, record, 20)
        elif rtype == 5:
            loading = {"flags": data.get("flags", 0) & EPHEMERAL}
            message = self._create_message(record.channel_id, record.guild_id, loading, {}, record, 20, True)
        elif rtype in (6, 7):
            message = record.message
            if message is None:  # modal submit from a slash command: nothing to update
                raise form_error(["type"], "INTERACTION_CALLBACK_TYPE_INVALID", "No message to update")
            if rtype == 7:
                self._edit_message(message, data, uploads)
        elif rtype == 9:
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise form_error(["data", key], "BASE_TYPE_REQUIRED", "This field is required")
            record.modal = data
        elif rtype == 8:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise form_error(["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            record.autocomplete_choices = choices
        record.callbacks.append(call)
        record.original = message
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        info: JSON = {"id": str(record.id), "type": record.type}
        if message is not None:
            info.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
        resource: JSON = {"type": rtype}
        if message is not None and rtype in (4, 7):
            resource["message"] = message.to_payload()
        return json_response({"interaction": info, "resource": resource})

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        record = self._interaction_for_webhook(request)
        call: Call = request[_CALL]
        data = call.json if isinstance(call.json, dict) else {}
        uploads: dict[str, _Upload] = request[_UPLOADS]
        original = record.original
        if record.response_type == 5 and original is not None and original.loading and not record.followups:
            # The first followup to a deferred response replaces the loading message; its flags are ignored.
            def become_reply(m: FakeMessage) -> None:
                m.flags &= ~LOADING
                self._message_fields(m, data, uploads, keep=False)

            self._update(original, become_reply)
            message = original
        else:
            message = self._create_message(record.channel_id, record.guild_id, data, uploads, record, 0)
        record.followups.append(message)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.to_payload())
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        record = self._interaction_for_webhook(request)
        ref = request.match_info["message"]
        if ref == "@original":
            message = record.original
        else:
            message = next((m for m in record.followups if str(m.id) == ref), None)
        if message is None or message.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return await self._message_verb(request, message)

    async def _message_verb(self, request: web.Request, message: FakeMessage) -> web.StreamResponse:
        if request.method == "GET":
            return json_response(message.to_payload())
        if request.method == "DELETE":
            message.deleted = True
            return web.Response(status=204)
        if request.method == "PATCH":
            call: Call = request[_CALL]
            data = call.json if isinstance(call.json, dict) else {}
            self._edit_message(message, data, request[_UPLOADS])
            return json_response(message.to_payload())
        raise ApiError(405, 0, "405: Method Not Allowed")

    # ------------------------------------------------------------------ REST: channels

    def _channel_or_404(self, request: web.Request) -> tuple[FakeGuild, FakeChannel]:
        self._check_auth(request)
        found = self._find_channel(int(request.match_info["channel"]))
        if found is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return found

    async def _get_channel(self, request: web.Request) -> web.Response:
        guild, channel = self._channel_or_404(request)
        return json_response({**self._channel_payload(channel), "guild_id": str(guild.id)})

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel_or_404(request)
        return web.Response(status=204)

    async def _channel_post(self, request: web.Request) -> web.Response:
        guild, channel = self._channel_or_404(request)
        if channel.id in self.missing_permissions:
            raise ApiError(403, 50013, "Missing Permissions")
        call: Call = request[_CALL]
        data = call.json if isinstance(call.json, dict) else {}
        data = {**data, "flags": data.get("flags", 0) & ~EPHEMERAL}
        message = self._create_message(channel.id, guild.id, data, request[_UPLOADS], None, 0)
        return json_response(message.to_payload())

    async def _channel_message(self, request: web.Request) -> web.StreamResponse:
        _, channel = self._channel_or_404(request)
        message = self.messages.get(int(request.match_info["message"]))
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel.id:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method != "GET" and message.author["id"] != self.bot_user["id"]:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        if request.method != "GET" and channel.id in self.missing_permissions:
            raise ApiError(403, 50013, "Missing Permissions")
        return await self._message_verb(request, message)

    async def _attachment(self, request: web.Request) -> web.Response:
        att = self._blobs.get(request.match_info["id"])
        if att is None or f"{self.url}{request.path_qs}" in self._expired:
            raise web.HTTPNotFound(text="This content is no longer available.")
        return web.Response(body=att.data, content_type=att.content_type or "application/octet-stream")

    # ------------------------------------------------------------------ messages

    def _new_attachment(
        self, channel_id: int, upload: _Upload, filename: str, description: str | None
    ) -> FakeAttachment:
        att_id = snowflake()
        content_type = upload.content_type
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(filename)[0] or content_type
        width = height = None
        if content_type and content_type.startswith("image/"):
            with contextlib.suppress(Exception):
                from PIL import Image

                with Image.open(io.BytesIO(upload.data)) as img:
                    width, height = img.size
        url = f"{self.url}/attachments/{channel_id}/{att_id}/{filename}"
        att = FakeAttachment(att_id, filename, upload.data, url, content_type, description, width, height)
        self._blobs[str(att_id)] = att
        return att

    def _attachments(
        self, channel_id: int, data: JSON, uploads: dict[str, _Upload], keep: list[FakeAttachment]
    ) -> list[FakeAttachment]:
        for name, upload in uploads.items():
            if len(upload.data) > self.file_size_limit:
                raise ApiError(413, 40005, "Request entity too large")
            if not re.fullmatch(r"files\[\d+\]|file\d*", name):
                raise form_error([name], "UNKNOWN_FIELD", f"Unknown form field {name!r}")
        used: set[str] = set()
        result: list[FakeAttachment] = []
        refs = data.get("attachments")
        if refs is None:
            result = list(keep)
        else:
            existing = {str(a.id): a for a in keep}
            for index, ref in enumerate(refs):
                rid = str(ref.get("id"))
                upload = uploads.get(f"files[{rid}]")
                if upload is not None:
                    used.add(f"files[{rid}]")
                    filename = ref.get("filename") or upload.filename
                    result.append(self._new_attachment(channel_id, upload, filename, ref.get("description")))
                elif rid in existing:
                    result.append(existing[rid])
                else:
                    raise form_error(["attachments", index, "id"], "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        for name, upload in uploads.items():
            if name not in used:
                result.append(self._new_attachment(channel_id, upload, upload.filename, None))
        if len(result) > 10:
            raise form_error(["attachments"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        return result

    def _message_fields(self, message: FakeMessage, data: JSON, uploads: dict[str, _Upload], keep: bool) -> None:
        """Validate ``data`` and apply it to ``message`` (fields absent from ``data`` are left alone)."""
        if "content" in data:
            content = data["content"] or ""
            if len(content) > 2000:
                raise form_error(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
            message.content = content
        if "embeds" in data:
            embeds = data["embeds"] or []
            if len(embeds) > 10:
                raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            message.embeds = [{"type": "rich", **e} for e in embeds]
        if "components" in data:
            components = data["components"] or []
            if len(components) > 5 and not data.get("flags", 0) & IS_COMPONENTS_V2:
                raise form_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            message.components = components
        if "attachments" in data or uploads:
            message.attachments = self._attachments(
                message.channel_id, data, uploads, message.attachments if keep else []
            )
        names = {a.filename: a.url for a in message.attachments}
        for embed in message.embeds:
            for key in ("image", "thumbnail"):
                url = (embed.get(key) or {}).get("url", "")
                if url.startswith("attachment://") and url[13:] in names:
                    embed[key] = {**embed[key], "url": names[url[13:]], "proxy_url": names[url[13:]]}
        if not (message.content or message.embeds or message.attachments or message.components or message.loading):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _create_message(
        self,
        channel_id: int,
        guild_id: int | None,
        data: JSON,
        uploads: dict[str, _Upload],
        record: FakeInteraction | None,
        msg_type: int,
        loading: bool = False,
    ) -> FakeMessage:
        flags = data.get("flags", 0)
        message = FakeMessage(
            id=snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.bot_user,
            flags=(flags & _SETTABLE_FLAGS) | (LOADING if loading else 0),
            type=msg_type,
            webhook_id=self.application_id if record is not None else None,
            interaction_id=record.id if record is not None else None,
        )
        self._message_fields(message, data, uploads, keep=False)
        self.messages[message.id] = message
        return message

    def _edit_message(self, message: FakeMessage, data: JSON, uploads: dict[str, _Upload]) -> None:
        """PATCH semantics: given fields replace, absent ones stay; only SUPPRESS_EMBEDS can change."""

        def edit(m: FakeMessage) -> None:
            m.flags &= ~LOADING
            if "flags" in data:
                m.flags = (m.flags & ~SUPPRESS_EMBEDS) | (data["flags"] & SUPPRESS_EMBEDS)
            self._message_fields(m, data, uploads, keep=True)
            m.edits += 1
            m.edited_timestamp = _now_iso()

        self._update(message, edit)

    @staticmethod
    def _update(message: FakeMessage, change: Callable[[FakeMessage], None]) -> None:
        """Apply ``change`` to a copy and commit it only if it validates (Discord edits are atomic)."""
        candidate = copy.copy(message)
        change(candidate)
        message.__dict__.update(candidate.__dict__)

    # ------------------------------------------------------------------ gateway

    def _channel_payload(self, channel: FakeChannel) -> JSON:
        overwrites = []
        if channel.id in self.missing_permissions:
            overwrites.append({"id": self.bot_user["id"], "type": 1, "allow": "0", "deny": str(_DENIED_IN_RESTRICTED)})
        return {
            "id": str(channel.id),
            "type": channel.type,
            "name": channel.name,
            "position": 0,
            "parent_id": None,
            "topic": None,
            "nsfw": channel.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "permission_overwrites": overwrites,
            "flags": 0,
        }

    def _member_payload(self, user: JSON) -> JSON:
        return {
            "user": user,
            "roles": [],
            "nick": None,
            "avatar": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    def _guild_payload(self, guild: FakeGuild) -> JSON:
        everyone = {
            "id": str(guild.id),
            "name": "@everyone",
            "permissions": str(DEFAULT_PERMISSIONS),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        members = [self._member_payload(self.bot_user)] + [self._member_payload(u) for u in self.users.values()]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.USER_ID - 1),
            "preferred_locale": guild.preferred_locale,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "features": [],
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "channels": [self._channel_payload(c) for c in guild.channels],
            "threads": [],
            "members": members,
            "member_count": len(members),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "lazy": True,
            "unavailable": False,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "incidents_data": None,
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _Session | None = None
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
            await ws.send_json({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
                elif op == 2:
                    session = await self._identify(ws, d)
                elif op == 6:
                    session = await self._resume(ws, d)
                elif op == 8 and session is not None:
                    await self._members_chunk(d)
                self._changed.set()
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
                if ws.close_code in (1000, 1001):  # a clean close ends the session; 4000 etc. can resume
                    session.valid = False
            self._changed.set()
        return ws

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and token.removeprefix("Bot ") == self.token

    async def _identify(self, ws: web.WebSocketResponse, d: JSON) -> _Session | None:
        self.identifies.append(d)
        if not self._token_ok(d.get("token")):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        intents = d.get("intents")
        if not isinstance(intents, int):
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        session = _Session(secrets.token_hex(16), ws=ws)
        guilds = self.guilds
        if isinstance(d.get("shard"), list):
            shard_id, count = (int(n) for n in d["shard"])
            session.shard = (shard_id, count)
            self._shard_count = count
            self._shards[shard_id] = session
            guilds = [g for g in self.guilds if (g.id >> 22) % count == shard_id]
        self._sessions[session.id] = session
        self._current = session
        ready: JSON = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "session_type": "normal",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-gateway"],
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        await self.dispatch("READY", ready, session)
        for guild in guilds:
            await self.dispatch("GUILD_CREATE", self._guild_payload(guild), session)
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: JSON) -> _Session | None:
        self.resumes.append(d)
        if not self._token_ok(d.get("token")):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        session = self._sessions.get(d.get("session_id", ""))
        if session is None or not session.valid:
            await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
            return None
        session.ws = ws
        self._current = session
        if session.shard is not None:
            self._shards[session.shard[0]] = session
        pending, session.pending = session.pending, []
        for frame in pending:
            await ws.send_json(frame)
        await self.dispatch("RESUMED", {"_trace": ["fake-gateway"]}, session)
        return session

    async def _members_chunk(self, d: JSON) -> None:
        guild_id = int(d["guild_id"])
        query = (d.get("query") or "").lower()
        wanted = {str(u) for u in d.get("user_ids") or []}
        members = [self._member_payload(self.bot_user)] + [self._member_payload(u) for u in self.users.values()]
        if wanted:
            members = [m for m in members if m["user"]["id"] in wanted]
        elif query:
            members = [m for m in members if m["user"]["username"].lower().startswith(query)]
        limit = d.get("limit") or 0
        chunk: JSON = {
            "guild_id": str(guild_id),
            "members": members[:limit] if limit else members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)


# ---------------------------------------------------------------------- command validation


def _check_name(name: Any, path: list[str | int], chat_input: bool) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        raise form_error(path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    if chat_input and (name != name.lower() or not all(c.isalnum() or c in "-_" for c in name)):
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")


def _check_text(text: Any, path: list[str | int], low: int, high: int) -> None:
    if not isinstance(text, str) or not low <= len(text) <= high:
        raise form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _check_localizations(
    obj: JSON, key: str, path: list[str | int], check: Callable[[Any, list[str | int]], None]
) -> None:
    localized = obj.get(key)
    if localized is None:
        return
    if not isinstance(localized, dict):
        raise form_error([*path, key], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    for locale, value in localized.items():
        if locale not in LOCALES:
            raise form_error([*path, key, locale], "LOCALE_INVALID", f"Invalid locale {locale!r}")
        check(value, [*path, key, locale])


def _validate_command(cmd: Any, path: list[str | int]) -> None:
    """Reject what Discord rejects in a bulk overwrite: bad names, lengths, locales, too many options."""
    if not isinstance(cmd, dict):
        raise form_error(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    chat_input = cmd.get("type", 1) == 1
    _check_name(cmd.get("name"), [*path, "name"], chat_input)
    _check_localizations(cmd, "name_localizations", path, lambda v, p: _check_name(v, p, chat_input))
    if chat_input:
        _check_text(cmd.get("description"), [*path, "description"], 1, 100)
        _check_localizations(cmd, "description_localizations", path, lambda v, p: _check_text(v, p, 1, 100))
        _validate_options(cmd.get("options") or [], [*path, "options"])
    elif cmd.get("description") or cmd.get("options"):
        raise form_error([*path, "description"], "APPLICATION_COMMAND_CONTEXT_MENU", "Must be empty")


def _validate_options(options: list[JSON], path: list[str | int]) -> None:
    if len(options) > 25:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: set[str] = set()
    optional_seen = False
    for index, opt in enumerate(options):
        where = [*path, index]
        if opt.get("type") not in _OPTION_TYPES:
            raise form_error([*where, "type"], "BASE_TYPE_CHOICES", f"Value must be one of {list(_OPTION_TYPES)}.")
        _check_name(opt.get("name"), [*where, "name"], True)
        if opt["name"] in names:
            raise form_error([*where, "name"], "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", "Duplicate name")
        names.add(opt["name"])
        _check_localizations(opt, "name_localizations", where, lambda v, p: _check_name(v, p, True))
        _check_text(opt.get("description"), [*where, "description"], 1, 100)
        _check_localizations(opt, "description_localizations", where, lambda v, p: _check_text(v, p, 1, 100))
        if opt["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP):
            _validate_options(opt.get("options") or [], [*where, "options"])
            continue
        if opt.get("required"):
            if optional_seen:
                raise form_error(
                    [*where, "required"], "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Required options first"
                )
        else:
            optional_seen = True
        choices = opt.get("choices") or []
        if len(choices) > 25:
            raise form_error([*where, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for cindex, choice in enumerate(choices):
            _check_text(choice.get("name"), [*where, "choices", cindex, "name"], 1, 100)
            _check_localizations(
                choice, "name_localizations", [*where, "choices", cindex], lambda v, p: _check_text(v, p, 1, 100)
            )
            value = choice.get("value")
            if isinstance(value, str) and len(value) > 100:
                raise form_error([*where, "choices", cindex, "value"], "BASE_TYPE_MAX_LENGTH", "Too long")
