"""``sdbot migrate-db --to postgresql://...``: a community's SQLite data moved into an empty PostgreSQL database."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.cli.exit_codes import EXIT_CONFIG, EXIT_OK
from bot.config import Settings, database, is_database_url, shown_database
from bot.errors import ConfigError, db_unavailable
from bot.messages.i18n import LANGUAGES, Lang, Msg, render_error, resolve_language, t
from bot.storage import StorageError, open_storage
from bot.storage.postgres import PostgresStorage
from bot.storage.postgres.transfer import copy_all
from bot.storage.sqlite import SQLiteStorage


def add_parser(sub: Any) -> None:
    migrate = sub.add_parser("migrate-db", help="move SDBOT_DB's SQLite data into an empty PostgreSQL database")
    migrate.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host:5432/dbname")
    migrate.add_argument("--lang", choices=LANGUAGES, help="language of messages (default SDBOT_LANG)")
    migrate.set_defaults(handler=cmd_migrate_db)


async def cmd_migrate_db(args: argparse.Namespace, settings: Settings) -> int:
    """Copy everything (users and their languages, limits and bans, chats, usage, jobs, channels, the inbox) in
    one transaction: the target is left empty if anything fails. The bot must be stopped (``db_in_use``
    otherwise); afterwards point ``SDBOT_DB`` at the URL and start it."""
    lang: Lang = resolve_language(args.lang, None, settings.lang)
    source: SQLiteStorage | None = None
    target: PostgresStorage | None = None
    try:
        url = database("--to", args.to)
        if not is_database_url(url):
            expected = Msg("config.expect.postgresql")
            raise ConfigError("config_invalid", variable="--to", value=args.to[:60], expected=expected)
        if is_database_url(settings.db):
            shown = shown_database(settings.db)
            raise ConfigError("config_invalid", variable="SDBOT_DB", value=shown, expected=Msg("config.expect.sqlite"))
        opened = await open_storage(settings.db, create=False)
        assert isinstance(opened, SQLiteStorage)
        source = opened
        await source.hold()  # no bot writes the file while it is copied
        target = await PostgresStorage.open(str(url))
        copied = await copy_all(source, target)
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    except StorageError as exc:
        shown = target.shown if target is not None else shown_database(settings.db)
        print(render_error(db_unavailable(shown, exc), lang), file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for storage in (target, source):
            if storage is not None:
                await storage.close()
    print(t(lang, "cli.migrate.done", target=target.shown, **copied))
    return EXIT_OK
