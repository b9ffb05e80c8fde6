"""``DiscordAdapter``: the Discord side of ``sdbot run`` (see :class:`adapters.base.Adapter`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import discord
from discord.http import Route

from adapters.discord import commands
from adapters.discord.admin import AdminHandlers
from adapters.discord.client import SdbotClient, ShardedSdbotClient
from adapters.discord.handlers import Handlers
from adapters.discord.refs import PLATFORM
from adapters.discord.route import TOKEN_LIFETIME
from adapters.discord.sink import PROGRESS_INTERVAL, DiscordSink
from bot.config import Settings
from bot.core import Core
from bot.draw.capabilities import SEED, Capabilities
from bot.errors import ConfigError, SdbotError
from bot.messages.i18n import Msg
from bot.process import redact

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "DISCORD_BOT_TOKEN"
AUTH_FAILED = 4004  # gateway close code: authentication failed
SHARDS_MAX = 1000
COMMAND_SYNC = "discord-command-sync"  # the lock of the one process syncing the commands


def parse_guild_ids(raw: str) -> tuple[int, ...]:
    """``DISCORD_GUILD_IDS``: ``123,456`` -> (123, 456); empty -> () (global commands)."""
    ids = []
    for item in raw.replace(" ", "").split(","):
        if not item:
            continue
        if not item.isdigit():
            shown = raw if len(raw) <= 60 else raw[:59] + "…"
            raise ConfigError(
                "config_invalid", variable="DISCORD_GUILD_IDS", value=shown, expected=Msg("config.expect.ids")
            )
        ids.append(int(item))
    return tuple(dict.fromkeys(ids))


def parse_shards(count_raw: str, ids_raw: str) -> tuple[int | None, list[int] | None]:
    """``DISCORD_SHARD_COUNT`` and ``DISCORD_SHARD_IDS``: (None, None) without sharding; ids without a count,
    a count out of 1-1000 or an id not below the count are ``config_invalid`` naming the variable."""
    count_raw, ids_raw = count_raw.strip(), ids_raw.replace(" ", "")
    if not count_raw:
        if ids_raw:
            raise ConfigError("config_missing", variable="DISCORD_SHARD_COUNT")
        return None, None
    if not count_raw.isdigit() or not 1 <= int(count_raw) <= SHARDS_MAX:
        raise ConfigError("config_invalid", variable="DISCORD_SHARD_COUNT", value=count_raw[:60],
                          expected=Msg("config.expect.int_range", {"min": 1, "max": SHARDS_MAX}))  # fmt: skip
    count = int(count_raw)
    items = [item for item in ids_raw.split(",") if item]
    if not all(item.isdigit() and int(item) < count for item in items):
        raise ConfigError("config_invalid", variable="DISCORD_SHARD_IDS", value=ids_raw[:60],
                          expected=Msg("config.expect.shard_ids", {"max": count - 1}))  # fmt: skip
    return count, sorted({int(item) for item in items}) or None


class DiscordAdapter:
    platform = PLATFORM

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        guild_ready_timeout: float = 2.0,
        token_lifetime: float = TOKEN_LIFETIME,
        progress_interval: float = PROGRESS_INTERVAL,
        ready_timeout: float = 60.0,
        shutdown_grace: float = 3.0,
    ) -> None:
        """The keyword options exist for tests and benchmarks: discord.py waits ``guild_ready_timeout`` after
        the last server arrives before it is ready; ``token_lifetime`` is Discord's 15 minutes; results being
        sent when the adapter stops get ``shutdown_grace`` seconds before the connection closes."""
        if not settings.discord_bot_token:
            raise ValueError("DiscordAdapter needs DISCORD_BOT_TOKEN")  # sdbot run only builds it when set
        self.core = core
        self.settings = settings
        self._token = settings.discord_bot_token
        redact.register(self._token)
        self.guild_ids = parse_guild_ids(settings.discord_guild_ids)
        self._ready_timeout = ready_timeout
        self._grace = shutdown_grace
        shard_count, shard_ids = parse_shards(settings.discord_shard_count, settings.discord_shard_ids)
        if shard_count is None:
            self.client: SdbotClient = SdbotClient(core, guild_ready_timeout=guild_ready_timeout)
        else:  # this process answers the servers of its shards; any process may deliver any job's pictures
            self.client = ShardedSdbotClient(
                core, guild_ready_timeout=guild_ready_timeout, shard_count=shard_count, shard_ids=shard_ids
            )
        self.sink = DiscordSink(self.client, progress_interval=progress_interval, nsfw_channels=settings.nsfw_channels)
        self.handlers = Handlers(core, settings, self.sink, token_lifetime=token_lifetime)
        self.client.handlers = self.handlers
        self.admin = AdminHandlers(core, settings)
        self._gateway: asyncio.Task[None] | None = None
        core.register_sink(PLATFORM, self.sink)

    async def prepare(self) -> None:
        """Declare the commands, log in (a refused token is a ``platform_auth_failed`` ConfigError), open the
        gateway and wait for READY."""
        commands.build(self.client.tree, self.handlers, self.admin, await self._capabilities())
        try:
            await self.client.login(self._token)
        except discord.LoginFailure:
            await self.client.close()
            raise self._auth_failed() from None
        except (aiohttp.ClientError, OSError) as exc:
            await self.client.close()
            log.error("Discord unreachable: %s", type(exc).__name__)
            raise self._unreachable() from None
        except discord.DiscordServerError as exc:  # 5xx, after discord.py's own retries: down, not a stranger
            await self.client.close()
            log.error("Discord unreachable: HTTP %s", exc.status)
            raise self._unreachable() from None
        except (discord.HTTPException, TypeError, KeyError, ValueError) as exc:  # not Discord's answer
            await self.client.close()
            log.error("Discord: the login answer was unexpected: %r", exc)
            raise ConfigError(
                "platform_bad_answer", variable=TOKEN_VARIABLE, platform="Discord", url=Route.BASE
            ) from None
        self._gateway = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait({self._gateway, ready}, timeout=self._ready_timeout, return_when="FIRST_COMPLETED")
        if ready in done:
            self._gateway.add_done_callback(_gateway_ended)
            log.info("Discord: logged in as %s, %s server(s)", self.client.user, len(self.client.guilds))
            return
        ready.cancel()
        error = self._gateway.exception() if self._gateway.done() else None
        await self.stop()
        if isinstance(error, discord.ConnectionClosed) and error.code == AUTH_FAILED:
            raise self._auth_failed()
        if error is not None:
            raise error
        log.error("the Discord gateway was not ready within %g s", self._ready_timeout)
        raise self._unreachable()

    async def start(self) -> None:
        """Sync the slash commands (to ``DISCORD_GUILD_IDS`` when set: instant; else globally), then answer.
        With several processes on one database the first to start syncs them; the same commands again from
        the others would only spend Discord's rate limit on command updates."""
        if await self.core.hold_alone(COMMAND_SYNC):
            await self._sync_commands()
        else:
            log.info("Discord: commands are synced by another process")
        self.handlers.serving.set()

    async def _sync_commands(self) -> None:
        tree = self.client.tree
        if not self.guild_ids:
            synced = await tree.sync()
            log.info("Discord: %s global command(s) synced", len(synced))
        for guild_id in self.guild_ids:
            guild = discord.Object(guild_id)
            tree.copy_global_to(guild=guild)
            try:
                synced = await tree.sync(guild=guild)
            except discord.Forbidden:
                log.error("Discord: cannot add commands to server %s: is the bot in it, invited with the "
                          "applications.commands scope?", guild_id)  # fmt: skip
                continue
            log.info("Discord: %s command(s) synced to server %s", len(synced), guild_id)

    async def stop(self) -> None:
        """Stop answering, let results under way finish (``shutdown_grace``), close. Results that come later
        wait for the core's shutdown, which leaves their jobs for the next start."""
        self.handlers.serving.clear()
        await self.sink.close(self._grace)
        await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._gateway, 10)
            self._gateway = None

    async def _capabilities(self) -> Capabilities:
        try:
            return await self.core.capabilities()
        except SdbotError as exc:
            # The choices are a convenience; the core validates against the real capabilities per request.
            log.warning("backend capabilities unavailable (%s): offering the default choices", exc.code)
            return SEED

    @staticmethod
    def _auth_failed() -> ConfigError:
        return ConfigError("platform_auth_failed", variable=TOKEN_VARIABLE, platform="Discord")

    @staticmethod
    def _unreachable() -> ConfigError:
        # Discord's address is not configurable; the variable names the adapter that could not start.
        return ConfigError("platform_unreachable", variable=TOKEN_VARIABLE, platform="Discord", url=Route.BASE)


def _gateway_ended(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.critical("Discord gateway connection ended: %s; the bot no longer receives commands", error)
