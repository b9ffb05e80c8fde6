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
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot import retention
from bot.commands import Commands, limit_arg
from bot.config import Settings
from bot.errors import ConfigError, SdbotError
from bot.i18n import LANGUAGES, Lang, render_error, resolve_language, t
from bot.jobs import JobStore
from bot.people import Directory, parse_key
from bot.quotas import Quotas
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
    from bot.cli import EXIT_CONFIG, EXIT_INVALID, EXIT_OK  # bot.cli imports this module

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
    store = await _open_store(settings, lang)
    if store is None:
        return EXIT_CONFIG
    try:
        before = retention.cutoff_day(time.time(), days, settings.quota_tz)
        if args.dry_run:
            print(t(lang, "cli.prune.dry_run", count=await retention.count(store, before), day=before))
        else:
            pruned = await retention.prune(store, before, pause=retention.PAUSE)
            print(t(lang, "cli.prune.done", count=pruned, day=before))
        return EXIT_OK
    finally:
        await store.close()


async def _stats(commands: Commands, _quotas: Quotas, lang: Lang, _args: argparse.Namespace) -> str:
    return await commands.stats_report(lang)


async def _quota(commands: Commands, quotas: Quotas, lang: Lang, args: argparse.Namespace) -> str:
    key = parse_key(args.target)
    scope = "chat" if args.chat else "user"
    if args.action == "reset":
        return t(lang, "cmd.admin.reset", user=key, count=await quotas.reset_usage(scope, key))
    lines = []
    if args.action == "set":
        if args.chat and (args.rate or args.pending):  # chats have only a daily cap
            raise SdbotError("command_usage", usage=_SET_USAGE)
        images = limit_arg(args.images)
        try:
            if args.chat:
                await quotas.set_chat_limit(key, images)
            else:
                await quotas.set_user_limit(key, "daily_images", images)
                if args.rate:
                    await quotas.set_user_limit(key, "rate_per_minute", limit_arg(args.rate))
                if args.pending:
                    await quotas.set_user_limit(key, "max_pending", limit_arg(args.pending))
        except ValueError:  # --pending 0
            raise SdbotError("command_usage", usage=_SET_USAGE) from None
        lines.append(commands.limit_set_text(lang, key, images, chat=args.chat))
    lines.append(await (commands.chat_report(lang, key) if args.chat else commands.quota_report(lang, key)))
    return "\n".join(lines)


async def _run(args: argparse.Namespace, settings: Settings, action: Action) -> int:
    from bot.cli import EXIT_CONFIG, EXIT_INVALID, EXIT_OK  # bot.cli imports this module

    lang: Lang = resolve_language(args.lang, None, settings.lang)
    store = await _open_store(settings, lang)
    if store is None:
        return EXIT_CONFIG
    try:
        quotas = Quotas(store, settings)
        commands = Commands(settings, quotas, JobStore(store), Directory(store))
        print(await action(commands, quotas, lang, args))
        return EXIT_OK
    except SdbotError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_INVALID
    finally:
        await store.close()


async def _open_store(settings: Settings, lang: Lang) -> Store | None:
    """``SDBOT_DB``, or None once the reason it cannot be opened is printed (the caller exits with
    ``EXIT_CONFIG``)."""
    try:
        return await Store.open(settings.db)
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return None
