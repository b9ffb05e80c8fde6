"""``sdbot check``'s look at the chat tokens: each configured token is tried the way the bot signs in
(Telegram's ``getMe`` through python-telegram-bot, Discord's current user through discord.py's HTTP client),
so "check passed" speaks for every credential it names. Nothing is sent to any chat."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import aiohttp
import discord
from discord.http import HTTPClient, Route
from telegram import Bot
from telegram.error import TelegramError

from adapters.telegram.signin import quiet_request_log, sign_in_failure
from bot.config import Settings, redact_url

Outcome = Literal["ok", "refused", "unreachable", "bad_answer", "unset"]


@dataclass(frozen=True)
class TokenCheck:
    platform: str  # "Telegram", "Discord"
    variable: str  # the token's variable
    outcome: Outcome
    detail: str  # the bot's name when ok; else the address and the cause, for the operator

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "unset")


async def check_tokens(settings: Settings) -> list[TokenCheck]:
    return [await _telegram(settings), await _discord(settings)]


async def _telegram(settings: Settings) -> TokenCheck:
    token, variable = settings.telegram_bot_token, "TELEGRAM_BOT_TOKEN"
    if not token:
        return TokenCheck("Telegram", variable, "unset", "")
    api = settings.telegram_api_url.rstrip("/")
    where = redact_url(api)
    bot = Bot(token, base_url=f"{api}/bot", base_file_url=f"{api}/file/bot")
    quiet_request_log()
    try:
        async with bot:  # initialize() is getMe
            return TokenCheck("Telegram", variable, "ok", f"@{bot.username}")
    except (TelegramError, TypeError, KeyError, ValueError, AttributeError) as exc:
        kind, cause = sign_in_failure(exc)
        return TokenCheck("Telegram", variable, kind, where if kind == "refused" else f"{where}: {cause}")


async def _discord(settings: Settings) -> TokenCheck:
    token, variable = settings.discord_bot_token, "DISCORD_BOT_TOKEN"
    if not token:
        return TokenCheck("Discord", variable, "unset", "")
    http = HTTPClient(asyncio.get_running_loop())
    try:
        user = await http.static_login(token)
        return TokenCheck("Discord", variable, "ok", str(user.get("username", "?")))
    except discord.LoginFailure:
        return TokenCheck("Discord", variable, "refused", Route.BASE)
    except (aiohttp.ClientError, OSError) as exc:
        return TokenCheck("Discord", variable, "unreachable", f"{Route.BASE}: {type(exc).__name__}")
    except discord.DiscordServerError as exc:  # 5xx, after discord.py's own retries
        return TokenCheck("Discord", variable, "unreachable", f"{Route.BASE}: HTTP {exc.status}")
    except (discord.HTTPException, TypeError, KeyError, ValueError) as exc:
        return TokenCheck("Discord", variable, "bad_answer", f"{Route.BASE}: {type(exc).__name__}")
    finally:
        await http.close()


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return type(cause).__name__
