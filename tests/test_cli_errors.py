"""Issue 22, second pass: the operator's commands and ``sdbot draw --json`` as an outside tester ran them.

Each group has one test running the installed ``sdbot`` executable; the many small cases call
``bot.cli.main.main`` in-process (same code, no interpreter start-up per case).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.errors import ConfigError
from bot.process import redact
from bot.storage.sqlite import MIGRATIONS, SQLiteStorage
from tests.cli_support import SDBOT, sdbot


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``sdbot ARGS`` in-process with ``SDBOT_DB=tmp_path/sdbot.db``: returns (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDBOT_DB", str(tmp_path / "sdbot.db"))
    monkeypatch.setattr(redact, "configure_logging", lambda *args: None)  # process-wide; not these tests' subject

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def make_db(path: Path, migrations: int = len(MIGRATIONS)) -> None:
    """An sdbot database at schema version ``migrations``, closed (so WAL files are folded in and gone)."""

    async def build() -> None:
        await (await SQLiteStorage.open(path, migrations=MIGRATIONS[:migrations])).close()

    asyncio.run(build())


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# B. quota set: every argument checked before anything is written, the database included ----------------


def test_quota_set_with_an_invalid_argument_creates_no_database(tmp_path: Path) -> None:
    db = tmp_path / "new" / "sdbot.db"
    out = sdbot("quota", "set", "telegram:7", "9", "--rate", "1", "--pending", "abc", cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 2 and "--pending must be a whole number from 1 to" in out.stderr
    out = sdbot("quota", "set", "--lang", "zh", "telegram:7", "²", cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 2 and "IMAGES 必须是 0 到 999999999 之间的整数" in out.stderr
    out = sdbot("quota", "set", "slack:1", "5", cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 2 and "is not a user" in out.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["quota", "set", "telegram:7", "²"], "IMAGES must be a whole number from 0 to 999999999"),
        (["quota", "set", "telegram:7", "5", "--rate", "³"], "--rate must be a whole number from 0 to 999999999"),
        (["quota", "set", "telegram:7", "5", "--pending", "9" * 5000], "--pending must be a whole number from 1"),
        (["quota", "set", "telegram:7", "1" + "0" * 19], "IMAGES must be a whole number"),
        (["quota", "set", "foo", "5"], "is not a user (telegram:123, discord:456)"),
        (["quota", "set", "telegram:abc", "5"], "TARGET “telegram:abc”"),
        (["quota", "set", "telegram:²", "5"], "TARGET “telegram:²”"),
        (["quota", "set", "telegram:-100123", "5"], "with --chat, a group chat"),  # a chat, without --chat
        (["quota", "show", "discord:"], "is not a user"),
        (["quota", "reset", "--chat", "telegram:-x"], "is not a user"),
        (["prune", "--days", "²"], "--days must be a whole number from 1 to 36500"),
        (["prune", "--days", "99999999999"], "--days must be a whole number from 1 to 36500"),
        (["prune", "--days", "3000000", "--dry-run"], "you gave “3000000”"),
        (["prune", "--days", "0"], "--days must be a whole number from 1 to 36500"),
    ],
)
def test_invalid_arguments_are_one_clear_line_and_exit_2(cli, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    make_db(Path(os.environ["SDBOT_DB"]))
    before = snapshot(Path(os.environ["SDBOT_DB"]).parent)
    code, out, err = cli(*args)
    assert (code, out) == (2, "") and fragment in err, err
    assert "/admin" not in err and "this platform" not in err
    assert snapshot(Path(os.environ["SDBOT_DB"]).parent) == before  # nothing written


def test_invalid_target_in_chinese(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("quota", "show", "--lang", "zh", "telegram:abc")
    assert code == 2 and "不是有效的用户" in err and "TARGET“telegram:abc”" in err


def test_a_target_with_full_width_digits_is_the_same_user(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("quota", "set", "telegram:１２", "5")[0] == 0
    code, out, _ = cli("quota", "show", "telegram:12")
    assert code == 0 and "of 5 used" in out


# B. an aiosqlite connection that fails to open leaves no thread behind ---------------------------------


def unopenable(tmp_path: Path) -> Path:
    """A database path SQLite cannot open even as root: longer than its 512-byte path limit."""
    folder = tmp_path.joinpath(*["d" * 200] * 3)
    folder.mkdir(parents=True)
    return folder / "sdbot.db"


def test_a_failed_open_leaves_no_thread_running(tmp_path: Path) -> None:
    path = unopenable(tmp_path)

    async def attempt() -> None:
        with pytest.raises(ConfigError) as caught:
            await SQLiteStorage.open(path)
        assert caught.value.code == "db_unavailable"
        # aiosqlite stops its worker thread without waiting for it; the thread would then answer on a loop
        # that asyncio.run has closed ("Event loop is closed" tracebacks after the message).
        workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
        assert workers == []

    for _ in range(10):
        asyncio.run(attempt())


def test_a_database_that_cannot_be_opened_prints_only_the_message(tmp_path: Path) -> None:
    path = unopenable(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")}
    environment["SDBOT_DB"] = str(path)
    # Several at once: the stray thread's traceback came when the machine was busy.
    runs = [
        subprocess.Popen(
            [str(SDBOT), "quota", "set", "telegram:1", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=tmp_path,
        )
        for _ in range(4)
    ]
    for run in runs:
        _, err = run.communicate(timeout=60)
        assert run.returncode == 3 and "cannot be used: unable to open database file" in err
        assert "Traceback" not in err and "Exception" not in err and "Event loop" not in err, err


# B. commands that only read never write: no migration, damaged pages found -------------------------------


@pytest.mark.parametrize("command", [["stats"], ["quota", "show", "telegram:1"], ["prune", "--dry-run"]])
def test_commands_that_only_read_do_not_migrate_an_older_database(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    make_db(db, migrations=4)
    before = snapshot(tmp_path)
    out = sdbot(*command, cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 3, out.stderr
    assert f"The database {db} (SDBOT_DB) has schema version 4; this sdbot uses {len(MIGRATIONS)}" in out.stderr
    assert snapshot(tmp_path) == before  # not a byte written, no -wal or -shm left behind
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (4,)


def test_commands_that_only_read_write_nothing(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "sdbot.db"
    make_db(db)
    with closing(sqlite3.connect(db)) as con:  # a copy restored from a backup may be in rollback-journal mode
        con.execute("PRAGMA journal_mode = DELETE")
    before = snapshot(tmp_path)
    for command in (["stats"], ["quota", "show", "telegram:1"], ["quota", "show", "--chat", "telegram:-1"]):
        assert cli(*command)[0] == 0
    assert cli("prune", "--dry-run", "--days", "1")[0] == 0
    assert snapshot(tmp_path) == before
    make_db(tmp_path / "old.db", migrations=2)
    monkeypatch.setenv("SDBOT_DB", str(tmp_path / "old.db"))
    code, _, err = cli("stats", "--lang", "zh")
    assert code == 3 and "结构版本为 2" in err


def damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` of a real sdbot database with garbage."""
    with closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA journal_mode = DELETE")
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (size,) = con.execute("PRAGMA page_size").fetchone()
    with db.open("r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(bytes(range(256)) * (size // 256))


@pytest.mark.parametrize("command", [["stats"], ["quota", "show", "telegram:1"], ["prune", "--dry-run"]])
def test_damaged_pages_are_found_even_where_the_report_does_not_look(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    assert sdbot("quota", "set", "telegram:1", "5", cwd=tmp_path, SDBOT_DB=str(db)).returncode == 0
    damage_table(db, "jobs")  # today's stats read an index only: they would say "0 jobs"
    out = sdbot(*command, cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 3 and out.stdout == "", out.stdout
    assert f"The database {db} (SDBOT_DB) cannot be used" in out.stderr


# B. sdbot draw --json answers JSON on every path, argparse's own errors included -------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--lang", "fr"], "lang"), (["--out"], "out"), (["--lang"], "lang"), (["--dry-run=yes"], "dry-run")],
)
def test_draw_json_turns_argument_errors_into_json(cli, args: list[str], option: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("draw", "--json", *args, "--", "cat")
    assert (code, err) == (2, "")
    error = json.loads(out)["error"]
    assert (error["code"], error["option"]) == ("command_usage", option) and error["detail"]


def test_draw_json_argument_errors_subprocess(tmp_path: Path) -> None:
    out = sdbot("draw", "--json", "--lang", "fr", "cat", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == ""
    error = json.loads(out.stdout)["error"]
    assert (error["code"], error["option"]) == ("command_usage", "lang")
    assert error["message"].startswith("Usage: sdbot draw") and "fr" in error["detail"]
    zh = sdbot("draw", "--json", "--out", cwd=tmp_path, SDBOT_LANG="zh")
    assert zh.returncode == 2 and json.loads(zh.stdout)["error"]["message"].startswith("用法：sdbot draw")
    plain = sdbot("draw", "--lang", "fr", "cat", cwd=tmp_path)  # without --json: argparse's usual text
    assert plain.returncode == 2 and "invalid choice" in plain.stderr and plain.stdout == ""
