"""``sdbot quota show|set|reset``, ``sdbot stats`` and ``sdbot prune``: the /admin operations from the terminal.

They open ``SDBOT_DB`` directly (safe while the bot runs: every change is one atomic statement) and print
the same texts as the chat commands, in ``--lang`` or ``SDBOT_LANG``::

    sdbot quota show telegram:123                 # usage today, limits, reset time
    sdbot quota set telegram:123 50               # 50 images per day (0 = no limit, default = SDBOT_DAILY_IMAGES)
    sdbot quota set telegram:123 default --rate 10 --pending 3
    sdbot quota set --chat telegram:-100123 200   # a group chat's / Discord server's daily cap
    sdbot quota reset telegram:123                # give back today's images
    sdbot stats
    sdbot prune --dry-run                         # how many finished jobs SDBOT_JOB_RETENTION_DAYS would delete
    sdbot prune --days 30                         # delete finished jobs of the days before 30 days ago
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from bot import retention
from bot.commands import Commands
from bot.config import COUNT_MAX, Settings
from bot.errors import ConfigError, SdbotError
from bot.exit_codes import EXIT_CONFIG, EXIT_INVALID, EXIT_OK
from bot.i18n import LANGUAGES, Lang, render_error, resolve_language, t
from bot.jobs import JobStore
from bot.people import Directory, parse_key
from bot.quotas import Quotas, UserLimit
from bot.store import Store


def add_parsers(sub: Any) -> None:
    """Register ``quota``, ``stats`` and ``prune`` on ``sdbot``'s subcommand parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lang", choices=LANGUAGES, help="language of messages (default SDBOT_LANG)")
    target = argparse.ArgumentParser(add_help=False, parents=[common])
    target.add_argument("--chat", action="store_true", help="TARGET is a group chat / Discord server, not a user")
    target.add_argument("target", metavar="TARGET", help="telegram:123 or discord:456 (chats: telegram:-100123)")

    quota = sub.add_parser("quota", help="show or change daily image quotas")
    actions = quota.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("show", parents=[target], help="usage today, limits and reset time")
    change = actions.add_parser("set", parents=[target], help="override a daily image limit")
    change.add_argument("images", help="images per day; 0 = no limit; 'default' = the configured default")
    change.add_argument("--rate", help="requests per minute (0 = no limit, or 'default'); users only")
    change.add_argument("--pending", help="queued + running jobs (at least 1, or 'default'); users only")
    actions.add_parser("reset", parents=[target], help="give back the images used today")
    quota.set_defaults(handler=cmd_quota)

    stats = sub.add_parser("stats", parents=[common], help="jobs and images today, failures, busiest users")
    stats.set_defaults(handler=cmd_stats)

    prune = sub.add_parser("prune", parents=[common], help="delete finished jobs older than SDBOT_JOB_RETENTION_DAYS")
    prune.add_argument("--days", help="keep this many days (at least 1) instead of SDBOT_JOB_RETENTION_DAYS")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.set_defaults(handler=cmd_prune)


Action = Callable[[Commands, Quotas, Lang, argparse.Namespace], Awaitable[str]]
_SET_USAGE = "sdbot quota set [--chat] TARGET IMAGES [--rate N] [--pending N]"
_PRUNE_USAGE = "sdbot prune [--days N] [--dry-run]"


async def cmd_quota(args: argparse.Namespace, settings: Settings) -> int:
    return await _run(args, settings, _quota)


async def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    return await _run(args, settings, _stats)


async def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Delete (``--dry-run``: count) the finished jobs of the days before the retention window. Safe beside a
    running bot: each batch is one short statement (see :mod:`bot.retention`)."""

    lang: Lang = resolve_language(args.lang, None, settings.lang)
    days = settings.job_retention_days
    if args.days is not None:
        days = int(args.days) if args.days.strip().isdigit() else 0
        if days < 1:
            print(render_error(SdbotError("command_usage", usage=_PRUNE_USAGE), lang), file=sys.stderr)
            return EXIT_INVALID
    if not days:
        print(t(lang, "cli.prune.forever"))
        return EXIT_OK

    async def prune(store: Store) -> str:
        before = retention.cutoff_day(time.time(), days, settings.quota_tz)
        if args.dry_run:
            return t(lang, "cli.prune.dry_run", count=await retention.count(store, before), day=before)
        pruned = await retention.prune(store, before, pause=retention.PAUSE)
        return t(lang, "cli.prune.done", count=pruned, day=before)

    return await _with_store(settings, lang, prune, create=not args.dry_run)


async def _stats(commands: Commands, _quotas: Quotas, lang: Lang, _args: argparse.Namespace) -> str:
    return await commands.stats_report(lang)


async def _quota(commands: Commands, quotas: Quotas, lang: Lang, args: argparse.Namespace) -> str:
    key = parse_key(args.target)
    scope: Literal["user", "chat"] = "chat" if args.chat else "user"
    if args.action == "reset":
        return t(lang, "cmd.admin.reset", user=key, count=await quotas.reset_usage(scope, key))
    lines = []
    if args.action == "set":
        if args.chat and (args.rate is not None or args.pending is not None):  # chats have only a daily cap
            raise SdbotError("command_usage", usage=_SET_USAGE)
        # Every argument is checked before anything is written, and a user's limits change in one statement.
        images = _limit("IMAGES", args.images, 0)
        if args.chat:
            await quotas.set_chat_limit(key, images)
        else:
            limits: dict[UserLimit, int | None] = {"daily_images": images}
            if args.rate is not None:
                limits["rate_per_minute"] = _limit("--rate", args.rate, 0)
            if args.pending is not None:
                limits["max_pending"] = _limit("--pending", args.pending, 1)
            await quotas.set_user_limits(key, limits)
        lines.append(commands.limit_set_text(lang, key, images, chat=args.chat))
    lines.append(await (commands.chat_report(lang, key) if args.chat else commands.quota_report(lang, key)))
    return "\n".join(lines)


def _limit(argument: str, text: str, minimum: int) -> int | None:
    """A limit argument: ``default`` (None), or a whole number in ``minimum..COUNT_MAX``; else an error that
    names the argument and its range."""
    word = text.strip().casefold()
    if word in ("default", "默认"):
        return None
    if word.isdigit() and minimum <= int(word) <= COUNT_MAX:
        return int(word)
    raise SdbotError("invalid_argument", argument=argument, value=text, min=minimum, max=COUNT_MAX)


async def _run(args: argparse.Namespace, settings: Settings, action: Action) -> int:
    lang: Lang = resolve_language(args.lang, None, settings.lang)

    async def act(store: Store) -> str:
        quotas = Quotas(store, settings)
        commands = Commands(settings, quotas, JobStore(store), Directory(store))
        return await action(commands, quotas, lang, args)

    reads_only = args.command == "stats" or getattr(args, "action", None) == "show"
    return await _with_store(settings, lang, act, create=not reads_only)


async def _with_store(settings: Settings, lang: Lang, body: Callable[[Store], Awaitable[str]], *, create: bool) -> int:
    """Open ``SDBOT_DB``, print what ``body`` returns, close. Every failure is one line on stderr and an exit
    code, never a traceback: the database unusable (missing for a command that only reads, not a database,
    damaged pages) exits ``EXIT_CONFIG``, invalid arguments ``EXIT_INVALID``. Commands that only read pass
    ``create=False``: they never create the file or its folder."""

    try:
        store = await Store.open(settings.db, create=create)
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(await body(store))
        return EXIT_OK
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    except SdbotError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_INVALID
    except sqlite3.Error as exc:  # pages damaged past what opening the file reads
        error = ConfigError("db_unavailable", variable="SDBOT_DB", path=str(settings.db), reason=str(exc))
        print(render_error(error, lang), file=sys.stderr)
        return EXIT_CONFIG
    finally:
        with contextlib.suppress(sqlite3.Error):
            await store.close()
