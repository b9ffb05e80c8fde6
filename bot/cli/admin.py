"""``sdbot quota show|set|reset``, ``sdbot stats`` and ``sdbot prune``: the /admin operations from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.chats.directory import Directory
from bot.cli.exit_codes import EXIT_CONFIG, EXIT_INVALID, EXIT_OK
from bot.commands import Commands
from bot.config import COUNT_MAX, RETENTION_DAYS_MAX, Settings, shown_database
from bot.draw.params import is_whole_number, whole_number
from bot.errors import ConfigError, SdbotError, db_unavailable
from bot.jobs import retention
from bot.messages.i18n import LANGUAGES, Lang, render_error, resolve_language, t
from bot.quotas.admission import Quotas
from bot.quotas.rules import UserLimit
from bot.storage import Storage, StorageError, open_storage


def add_parsers(sub: Any, platforms: Collection[str]) -> None:
    """Register ``quota``, ``stats`` and ``prune`` on ``sdbot``'s subcommand parsers; ``platforms``: those a
    target may name (the installed adapters)."""
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
    quota.set_defaults(handler=cmd_quota, platforms=tuple(platforms))

    stats = sub.add_parser("stats", parents=[common], help="jobs and images today, failures, busiest users")
    stats.set_defaults(handler=cmd_stats)

    prune = sub.add_parser("prune", parents=[common], help="delete finished jobs older than SDBOT_JOB_RETENTION_DAYS")
    prune.add_argument("--days", help="keep this many days (at least 1) instead of SDBOT_JOB_RETENTION_DAYS")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.set_defaults(handler=cmd_prune)

    block = sub.add_parser("block", parents=[common], help="the block list: words and patterns /draw refuses")
    moves = block.add_subparsers(dest="action", required=True, metavar="ACTION")
    moves.add_parser("add", parents=[common], help="block words (matched however they are spelled)").add_argument(
        "words", nargs="+", help="the words, e.g. blood bath"
    )
    moves.add_parser(
        "regex", parents=[common], help="block a regular expression (searched in folded text)"
    ).add_argument("pattern", help="e.g. 'gore\\w*'")
    strict = moves.add_parser("strict", parents=[common], help="block words only where moderation is strict")
    strict.add_argument("words", nargs="+", help="the words")
    moves.add_parser("remove", parents=[common], help="remove a rule by its number").add_argument("rule")
    moves.add_parser("list", parents=[common], help="every rule, with its number")
    moves.add_parser("refusals", parents=[common], help="the last prompts refused: who, when, which rule")
    imports = moves.add_parser("import", parents=[common], help="add the words of a file, one per line (# comments)")
    imports.add_argument("file", type=Path)
    block.set_defaults(handler=cmd_block)


_SET_USAGE = "sdbot quota set [--chat] TARGET IMAGES [--rate N] [--pending N]"
_PRUNE_USAGE = "sdbot prune [--days N] [--dry-run]"


@dataclass(frozen=True, slots=True)
class QuotaArguments:
    """``sdbot quota`` as checked before the database is opened: nothing is written unless all of it is valid."""

    action: str
    scope: Literal["user", "chat"]
    key: str
    images: int | None = None
    limits: dict[UserLimit, int | None] = field(default_factory=dict)


def quota_arguments(args: argparse.Namespace) -> QuotaArguments:
    """Check every argument of ``sdbot quota show|set|reset``; raise the :class:`SdbotError` of the first wrong
    one (``invalid_target``, ``invalid_argument`` naming it with its range, or the CLI's ``command_usage``)."""
    scope: Literal["user", "chat"] = "chat" if args.chat else "user"
    key = target_key(args.target, args.platforms, chat=args.chat)
    if args.action != "set":
        return QuotaArguments(args.action, scope, key)
    if args.chat and (args.rate is not None or args.pending is not None):  # chats have only a daily cap
        raise SdbotError("command_usage", usage=_SET_USAGE)
    images = _limit("IMAGES", args.images, 0)
    limits: dict[UserLimit, int | None] = {}
    if not args.chat:
        limits["daily_images"] = images
        if args.rate is not None:
            limits["rate_per_minute"] = _limit("--rate", args.rate, 0)
        if args.pending is not None:
            limits["max_pending"] = _limit("--pending", args.pending, 1)
    return QuotaArguments(args.action, scope, key, images, limits)


def target_key(text: str, platforms: Collection[str], *, chat: bool) -> str:
    """``telegram:123`` / ``discord:456`` (with ``chat``, a group chat's negative Telegram id too) as stored;
    full-width digits are read as the same id. Else ``invalid_target``: the terminal has no "this platform"
    for a bare id, and a user key with a chat's id would set a limit that never applies."""
    platform, sep, ident = text.strip().partition(":")
    number = ident.removeprefix("-") if chat and platform.lower() == "telegram" else ident
    if not sep or platform.lower() not in platforms or not is_whole_number(number):
        raise SdbotError("invalid_target", value=text.strip() or "∅")
    return f"{platform.lower()}:{'-' if number != ident else ''}{int(number)}"


def _limit(argument: str, text: str, minimum: int) -> int | None:
    """A limit argument: ``default`` (None), or a whole number in ``minimum..COUNT_MAX``; else an error that
    names the argument and its range."""
    if text.strip().casefold() in ("default", "默认"):
        return None
    value = whole_number(text, minimum, COUNT_MAX)
    if value is None:
        raise SdbotError("invalid_argument", argument=argument, value=text, min=minimum, max=COUNT_MAX)
    return value


async def cmd_quota(args: argparse.Namespace, settings: Settings) -> int:
    lang: Lang = resolve_language(args.lang, None, settings.lang)
    try:
        given = quota_arguments(args)
    except SdbotError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_INVALID

    async def quota(storage: Storage) -> str:
        quotas = Quotas(storage, settings)
        commands = Commands(settings, quotas, storage, Directory(storage, lang))
        if given.action == "reset":
            return t(lang, "cmd.admin.reset", user=given.key, count=await quotas.reset_usage(given.scope, given.key))
        lines = []
        if given.action == "set":
            if given.scope == "chat":
                await quotas.set_chat_limit(given.key, given.images)
            else:  # every limit in one statement: all change, or none
                await quotas.set_user_limits(given.key, given.limits)
            lines.append(commands.limit_set_text(lang, given.key, given.images, chat=given.scope == "chat"))
        report = commands.chat_report if given.scope == "chat" else commands.quota_report
        lines.append(await report(lang, given.key))
        return "\n".join(lines)

    return await _with_store(settings, lang, quota, readonly=given.action == "show")


async def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    lang: Lang = resolve_language(args.lang, None, settings.lang)

    async def stats(storage: Storage) -> str:
        quotas = Quotas(storage, settings)
        return await Commands(settings, quotas, storage, Directory(storage, lang)).stats_report(lang)

    return await _with_store(settings, lang, stats, readonly=True)


async def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Delete (``--dry-run``: count) the finished jobs of the days before the retention window. Safe beside a
    running bot: each batch is one short statement (see :mod:`bot.jobs.retention`)."""

    lang: Lang = resolve_language(args.lang, None, settings.lang)
    days = settings.job_retention_days
    if args.days is not None:
        # The same range as SDBOT_JOB_RETENTION_DAYS: a longer window reaches before the calendar's year 1.
        chosen = whole_number(args.days, 1, RETENTION_DAYS_MAX)
        if chosen is None:
            error = SdbotError("invalid_days", value=args.days, min=1, max=RETENTION_DAYS_MAX, usage=_PRUNE_USAGE)
            print(render_error(error, lang), file=sys.stderr)
            return EXIT_INVALID
        days = chosen
    if not days:
        print(t(lang, "cli.prune.forever"))
        return EXIT_OK

    async def prune(storage: Storage) -> str:
        before = retention.cutoff_day(time.time(), days, settings.quota_tz)
        if args.dry_run:
            return t(lang, "cli.prune.dry_run", count=await storage.jobs.count_finished_before(before), day=before)
        pruned = await retention.prune(storage, before, pause=retention.PAUSE)
        return t(lang, "cli.prune.done", count=pruned, day=before)

    # Nothing to prune in a database that does not exist: even the real prune creates none.
    return await _with_store(settings, lang, prune, readonly=args.dry_run, create=False)


async def cmd_block(args: argparse.Namespace, settings: Settings) -> int:
    """The block list from the terminal: the same operations as ``/admin block`` in chat, by ``cli``."""
    lang: Lang = resolve_language(args.lang, None, settings.lang)
    if args.action == "import":
        try:
            lines = await asyncio.to_thread(args.file.read_text, encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            error = SdbotError("block_file", path=str(args.file), reason=getattr(exc, "strerror", None) or str(exc))
            print(render_error(error, lang), file=sys.stderr)
            return EXIT_INVALID
        listed = [line.split("#", 1)[0].strip() for line in lines.splitlines()]
        texts = [f"add {word}" for word in listed if word]
    else:
        words: str = " ".join(getattr(args, "words", []))
        value = {"add": words, "strict": words, "regex": str(getattr(args, "pattern", ""))}
        argument = value.get(args.action) or str(getattr(args, "rule", ""))
        texts = [" ".join(part for part in (args.action, argument) if part)]

    async def block(storage: Storage) -> str:
        commands = Commands(settings, Quotas(storage, settings), storage, Directory(storage, lang))
        return "\n".join([await commands.block("cli", text, lang) for text in texts])

    readonly = args.action in ("list", "refusals")
    return await _with_store(settings, lang, block, readonly=readonly)


async def _with_store(
    settings: Settings,
    lang: Lang,
    body: Callable[[Storage], Awaitable[str]],
    *,
    readonly: bool,
    create: bool = True,
) -> int:
    """Open ``SDBOT_DB``, read every page, print what ``body`` returns, close. Every failure is one line on
    stderr and an exit code, never a traceback: the database unusable (missing for a command that only reads,
    not a database, damaged pages anywhere, an older schema for a command that only reads) exits
    ``EXIT_CONFIG``. ``readonly`` (commands that only read): nothing is created, migrated or written.

    The whole file is checked first (as ``sdbot run`` does at start, see :func:`bot.storage.open_storage`):
    a report must not print "0 jobs" from an index while the table beside it is damaged."""

    try:
        storage = await open_storage(settings.db, create=create and not readonly, readonly=readonly)
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(await body(storage))
        return EXIT_OK
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    except SdbotError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_INVALID
    except StorageError as exc:  # damaged after the check, or locked past the busy timeout
        error = db_unavailable(shown_database(settings.db), exc)
        print(render_error(error, lang), file=sys.stderr)
        return EXIT_CONFIG
    finally:
        with contextlib.suppress(StorageError):
            await storage.close()
